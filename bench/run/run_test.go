package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/snapshot-job/snapshot-job/internal/testenv"
)

func TestParseTimeFile(t *testing.T) {
	for _, tc := range []struct {
		in   string
		rss  int64
		cpu  float64
		fail bool
	}{
		{in: "123456 1.50 0.25\n", rss: 123456, cpu: 1.75},
		// GNU time without -q puts a status line first; the figures are
		// always the last line.
		{in: "Command exited with non-zero status 1\n2048 0.00 0.01\n", rss: 2048, cpu: 0.01},
		{in: "", fail: true},
		{in: "abc 1 2", fail: true},
		{in: "1 2", fail: true},
	} {
		rss, cpu, err := parseTimeFile([]byte(tc.in))
		if tc.fail {
			if err == nil {
				t.Errorf("parseTimeFile(%q) = %d, %v; want an error", tc.in, rss, cpu)
			}
			continue
		}
		if err != nil || rss != tc.rss || cpu < tc.cpu-1e-9 || cpu > tc.cpu+1e-9 {
			t.Errorf("parseTimeFile(%q) = %d, %v, %v; want %d, %v", tc.in, rss, cpu, err, tc.rss, tc.cpu)
		}
	}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		in := slices.Clone(tc.in)
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
		if !slices.Equal(in, tc.in) {
			t.Errorf("median reordered its input: %v", tc.in)
		}
	}
}

// TestPipelineMeasuresEveryStage runs a real pipeline the way measure
// does and checks that every stage reports its own figures and that the
// shell fails when any stage fails (pipefail).
func TestPipelineMeasuresEveryStage(t *testing.T) {
	timeBin, err := exec.LookPath("/usr/bin/time")
	if err != nil {
		t.Fatal("GNU time is missing: apt-get install time")
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "out file") // a space, to exercise quoting
	c := command{stages: []stage{{"printf", "a'b\n"}, {"cat"}, {"wc", "-c"}}, stdout: out}
	files := []string{filepath.Join(dir, "t0"), filepath.Join(dir, "t1"), filepath.Join(dir, "t2")}
	argv := c.argv(timeBin, files)
	if argv[0] != "bash" || !slices.Contains(argv, "pipefail") {
		t.Fatalf("a pipeline runs under bash -o pipefail: %q", argv)
	}
	if b, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%q: %v: %s", argv, err, b)
	}
	if b, _ := os.ReadFile(out); strings.TrimSpace(string(b)) != "4" {
		t.Errorf("pipeline output %q, want 4 (the bytes of a'b and a newline)", b)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatalf("stage figures: %v", err)
		}
		if rss, _, err := parseTimeFile(b); err != nil || rss <= 0 {
			t.Errorf("%s: %q: rss %d, %v", f, b, rss, err)
		}
	}
	if got, want := c.String(), `printf 'a'\''b`+"\n"+`' | cat | wc -c > '`+out+`'`; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}

	failing := command{stages: []stage{{"false"}, {"cat"}}}
	argv = failing.argv(timeBin, files[:2])
	if err := exec.Command(argv[0], argv[1:]...).Run(); err == nil {
		t.Error("a failing first stage must fail the pipeline")
	}

	single := command{stages: []stage{{"true"}}}
	if argv := single.argv(timeBin, files[:1]); argv[0] != timeBin {
		t.Errorf("a single process runs under GNU time directly, not a shell: %q", argv)
	}
}

func TestParseEnv(t *testing.T) {
	got, err := parseEnv(" SNAPSHOT_UPLOAD_CONCURRENCY=8  SNAPSHOT_PART_SIZE=32MiB GOMEMLIMIT=150MiB")
	if err != nil || !slices.Equal(got, []string{"SNAPSHOT_UPLOAD_CONCURRENCY=8", "SNAPSHOT_PART_SIZE=32MiB", "GOMEMLIMIT=150MiB"}) {
		t.Errorf("parseEnv = %q, %v", got, err)
	}
	for _, bad := range []string{"SNAPSHOT_X", "=1", "AWS_REGION=x", "GOPATH=/x"} {
		if _, err := parseEnv(bad); err == nil {
			t.Errorf("parseEnv(%q) accepted it", bad)
		}
	}
}

func TestParseSizes(t *testing.T) {
	got, err := parseSizes("1GiB, 4GiB")
	if err != nil || len(got) != 2 || got[0].bytes != 1<<30 || got[1].bytes != 4<<30 || got[1].label != "4GiB" {
		t.Errorf("parseSizes = %+v, %v", got, err)
	}
	for _, bad := range []string{"", "1MiB", "lots"} {
		if _, err := parseSizes(bad); err == nil {
			t.Errorf("parseSizes(%q) accepted it", bad)
		}
	}
}

func TestZstdRatio(t *testing.T) {
	log := "*** Zstandard CLI (64-bit) v1.5.4, by Yann Collet ***\n/*stdin*\\            : 74.53%   (   256 MiB =>    191 MiB, /*stdout*\\)\n"
	m := zstdRatioRE.FindAllStringSubmatch(log, -1)
	if len(m) != 1 || m[0][1] != "74.53" {
		t.Errorf("ratio from %q: %q", log, m)
	}
}

func TestBaseEnvDropsToolSettings(t *testing.T) {
	t.Setenv("AWS_PROFILE", "someone")
	t.Setenv("AWS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
	t.Setenv("SNAPSHOT_PART_SIZE", "5MiB")
	t.Setenv("RCLONE_S3_CHUNK_SIZE", "64M")
	t.Setenv("RESTIC_COMPRESSION", "max")
	env := baseEnv()
	for _, kv := range env {
		for _, p := range []string{"AWS_PROFILE=", "SNAPSHOT_", "RCLONE_", "RESTIC_"} {
			if strings.HasPrefix(kv, p) {
				t.Errorf("baseEnv keeps %s", kv)
			}
		}
	}
	if !slices.Contains(env, "AWS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt") {
		t.Error("baseEnv must keep AWS_CA_BUNDLE: the tools must cope with it")
	}
	b := &bench{srv: &testenv.VersityProcess{}, work: t.TempDir()}
	for _, kv := range b.rcloneEnv() {
		if strings.HasPrefix(kv, "AWS_CA_BUNDLE=") {
			t.Error("rclone 1.60 fails with AWS_CA_BUNDLE set; its env must drop it")
		}
	}
}

func TestThousands(t *testing.T) {
	for in, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1073741824: "1,073,741,824"} {
		if got := thousands(in); got != want {
			t.Errorf("thousands(%d) = %q, want %q", in, got, want)
		}
	}
}

func TestParseBenchNs(t *testing.T) {
	out := `goos: linux
goarch: amd64
pkg: github.com/snapshot-job/snapshot-job/internal/archive
BenchmarkWriteIndex/with-2         	       5	 818123456 ns/op	  82.10 MB/s
BenchmarkWriteIndex/without-2      	       5	 797000000 ns/op	  84.20 MB/s
BenchmarkWriteIndex/with-2         	       5	 820000000 ns/op	  81.90 MB/s
PASS
ok  	github.com/snapshot-job/snapshot-job/internal/archive	30.1s
`
	got, err := parseBenchNs(out)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got["with"], []float64{818123456, 820000000}) || !slices.Equal(got["without"], []float64{797000000}) || len(got) != 2 {
		t.Errorf("parseBenchNs = %v", got)
	}
	if _, err := parseBenchNs("BenchmarkX-2 5 abc ns/op"); err == nil {
		t.Error("a malformed ns/op figure must fail")
	}
}

func TestParseAgeKeyFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "key.txt")
	content := "# created: 2026-12-02T18:00:00Z\n# public key: age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq\nAGE-SECRET-KEY-1QYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGP\n"
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	r, id, err := parseAgeKeyFile(p)
	if err != nil || r != "age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq" || id != "AGE-SECRET-KEY-1QYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGP" {
		t.Errorf("parseAgeKeyFile = %q, %q, %v", r, id, err)
	}
	os.WriteFile(p, []byte("# public key: age1x\n"), 0o600)
	if _, _, err := parseAgeKeyFile(p); err == nil {
		t.Error("a file without the secret key line must fail")
	}
}

func TestFilesExcerpt(t *testing.T) {
	var log []string
	log = append(log, "$ snapshot-job files")
	for i := range 20 {
		log = append(log, fmt.Sprintf(`{"path":"node-00/f%d","size":1}`, i))
	}
	log = append(log, `{"time":"t","level":"INFO","msg":"files finished"}`)
	got := strings.Split(filesExcerpt(strings.Join(log, "\n")+"\n"), "\n")
	if len(got) != 17 || got[0] != `{"path":"node-00/f0","size":1}` || got[14] != `{"path":"node-00/f14","size":1}` || got[16] != `{"time":"t","level":"INFO","msg":"files finished"}` {
		t.Errorf("filesExcerpt = %q", got)
	}
	if got := logLine("a\n{\"msg\":\"snapshot restored\",\"n\":1}\nb\n", `"snapshot restored"`); got != `{"msg":"snapshot restored","n":1}` {
		t.Errorf("logLine = %q", got)
	}
}
