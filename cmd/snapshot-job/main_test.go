package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/snapshot-job/snapshot-job/internal/testenv"
)

func TestRoundTripThroughFileStore(t *testing.T) {
	src := t.TempDir()
	testenv.MakeTree(t, src)
	e, store := fileEnv(t, src)

	r := runJob(t, e) // no argument: SNAPSHOT_MODE defaults to backup
	expect(t, r, 0)
	files := storeFiles(t, store)
	if len(files) != 1 || !strings.HasPrefix(files[0], "snapshots/kubeshark-") || !strings.HasSuffix(files[0], ".tar.zst") {
		t.Fatalf("store holds %q, want one snapshots/kubeshark-<time>.tar.zst", files)
	}
	key := files[0]
	var term map[string]any
	b, err := os.ReadFile(e["SNAPSHOT_TERMINATION_LOG"])
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &term); err != nil || term["key"] != key || term["exit_code"] != 0.0 || term["outcome"] != "stored" {
		t.Errorf("termination message %s (%v)", b, err)
	}
	if strings.Count(strings.TrimSpace(string(b)), "\n") != 0 {
		t.Errorf("termination message is not one line: %q", b)
	}

	r = runJob(t, e.with("SNAPSHOT_LOG_FORMAT", "text"), "list")
	expect(t, r, 0)
	if !strings.Contains(r.stdout, "KEY") || !strings.Contains(r.stdout, key) {
		t.Errorf("list table:\n%s", r.stdout)
	}
	r = runJob(t, e, "list")
	var listed []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &listed); err != nil || len(listed) != 1 || listed[0]["key"] != key {
		t.Errorf("list JSON %q: %v", r.stdout, err)
	}

	expect(t, runJob(t, e, "verify"), 0)

	dst := filepath.Join(t.TempDir(), "restore")
	r = runJob(t, e.with("SNAPSHOT_RESTORE_DIR", dst), "restore")
	expect(t, r, 0)
	testenv.CompareTrees(t, src, dst, nil)

	// A second restore into the now full target: refused, skipped, or
	// merged as asked.
	expect(t, runJob(t, e.with("SNAPSHOT_RESTORE_DIR", dst), "restore"), 8, "SNAPSHOT_RESTORE_IF_NOT_EMPTY")
	expect(t, runJob(t, e.with("SNAPSHOT_RESTORE_DIR", dst, "SNAPSHOT_RESTORE_IF_NOT_EMPTY", "skip"), "restore"), 0)
	os.Remove(filepath.Join(dst, "node-1", "events.json"))
	expect(t, runJob(t, e.with("SNAPSHOT_RESTORE_DIR", dst, "SNAPSHOT_RESTORE_IF_NOT_EMPTY", "overwrite", "SNAPSHOT_RESTORE_KEY", key), "restore"), 0)
	testenv.CompareTrees(t, src, dst, func(rel string) bool { return rel == "node-1" }) // node-1's mtime moved with the delete
}

func TestVersion(t *testing.T) {
	for _, r := range []jobResult{runJob(t, env{}, "version"), runJob(t, env{"SNAPSHOT_MODE": "version"})} {
		if r.code != 0 || !strings.HasPrefix(r.stdout, "snapshot-job ") || !strings.Contains(r.stdout, "go1.") {
			t.Fatalf("version: %s", r)
		}
	}
}

// Upstream ConfigMaps carry a bucket or an account but no provider key:
// the one provider whose settings are present is used, and logged.
func TestProviderDetected(t *testing.T) {
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "a.pcap"), []byte("a"), 0o644)
	e, store := fileEnv(t, src)
	r := runJob(t, e.with("SNAPSHOT_CLOUD_PROVIDER", ""))
	expect(t, r, 0)
	found := false
	for _, l := range r.lines {
		if l["msg"] == "storage provider detected from the settings present (SNAPSHOT_CLOUD_PROVIDER is unset)" && l["provider"] == "file" {
			found = true
		}
	}
	if !found {
		t.Errorf("no log line names the detected provider:\n%s", r.stderr)
	}
	if n := len(storeFiles(t, store)); n != 1 {
		t.Errorf("store holds %d files, want the snapshot", n)
	}
}

func TestConfigErrors(t *testing.T) {
	src := t.TempDir()
	good, _ := fileEnv(t, src)
	for _, tc := range []struct {
		name  string
		env   env
		args  []string
		words []string
	}{
		{"no provider", good.with("SNAPSHOT_CLOUD_PROVIDER", "", "SNAPSHOT_FILE_DIR", ""), nil, []string{"SNAPSHOT_CLOUD_PROVIDER", "is required", "s3, azblob, gcs, file"}},
		{"two providers' settings", good.with("SNAPSHOT_CLOUD_PROVIDER", "", "SNAPSHOT_AWS_BUCKET", "snaps"), nil, []string{"SNAPSHOT_CLOUD_PROVIDER", "exactly one of"}},
		{"unknown provider", good.with("SNAPSHOT_CLOUD_PROVIDER", "gcp"), nil, []string{"SNAPSHOT_CLOUD_PROVIDER", `"gcp"`}},
		{"gcs without a bucket", good.with("SNAPSHOT_CLOUD_PROVIDER", "gcs"), nil, []string{"SNAPSHOT_GCS_BUCKET", "is required"}},
		{"bad size", good.with("SNAPSHOT_PART_SIZE", "huge"), nil, []string{"SNAPSHOT_PART_SIZE", "16MiB"}},
		{"bad duration", good.with("SNAPSHOT_RETENTION_MAX_AGE", "one month"), nil, []string{"SNAPSHOT_RETENTION_MAX_AGE", "30d"}},
		{"bad level", good.with("SNAPSHOT_COMPRESSION_LEVEL", "max"), nil, []string{"SNAPSHOT_COMPRESSION_LEVEL", "fastest, default, better, best"}},
		{"no file dir", good.with("SNAPSHOT_FILE_DIR", ""), nil, []string{"SNAPSHOT_FILE_DIR"}},
		{"unknown verb", good, []string{"backpu"}, []string{"unknown verb", "backup"}},
		{"bad mode", good.with("SNAPSHOT_MODE", "sync"), nil, []string{"SNAPSHOT_MODE"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expect(t, runJob(t, tc.env, tc.args...), 2, tc.words...)
		})
	}
}

func TestUnknownVariableWarns(t *testing.T) {
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644)
	e, _ := fileEnv(t, src)
	r := runJob(t, e.with("SNAPSHOT_COMPRESION_LEVEL", "best"))
	expect(t, r, 0)
	if !strings.Contains(r.stderr, "SNAPSHOT_COMPRESION_LEVEL is ignored; did you mean SNAPSHOT_COMPRESSION_LEVEL?") {
		t.Errorf("no warning:\n%s", r.stderr)
	}
}

func TestSecretsNotLogged(t *testing.T) {
	e, _ := fileEnv(t, t.TempDir())
	r := runJob(t, e.with("SNAPSHOT_CLOUD_PROVIDER", "s3", "SNAPSHOT_AWS_ACCESS_KEY", "AKIASECRETVALUE", "SNAPSHOT_AWS_SECRET_KEY", "hunter2-secret",
		"SNAPSHOT_AWS_BUCKET", "", "SNAPSHOT_AZBLOB_STORAGE_KEY", "azkey-secret", "SNAPSHOT_LOG_LEVEL", "debug"))
	for _, s := range []string{"hunter2-secret", "azkey-secret", "AKIASECRETVALUE"} {
		if strings.Contains(r.stderr+r.stdout, s) {
			t.Errorf("secret %q in output:\n%s", s, r)
		}
	}
}

func TestMissingSourceDir(t *testing.T) {
	e, store := fileEnv(t, filepath.Join(t.TempDir(), "not-mounted"))
	expect(t, runJob(t, e), 4, "SNAPSHOT_SOURCE_DIR", "not-mounted")
	if f := storeFiles(t, store); len(f) != 0 {
		t.Errorf("store holds %q", f)
	}
}

func TestMissingStoreDir(t *testing.T) {
	src := t.TempDir()
	e, _ := fileEnv(t, src)
	expect(t, runJob(t, e.with("SNAPSHOT_FILE_DIR", filepath.Join(src, "nope"))), 3, "SNAPSHOT_FILE_DIR")
}

func TestNothingToRestore(t *testing.T) {
	e, _ := fileEnv(t, t.TempDir())
	dst := t.TempDir()
	expect(t, runJob(t, e.with("SNAPSHOT_RESTORE_DIR", dst), "restore"), 8, "SNAPSHOT_RESTORE_IF_MISSING", "snapshots/")
	expect(t, runJob(t, e.with("SNAPSHOT_RESTORE_DIR", dst, "SNAPSHOT_RESTORE_IF_MISSING", "ok"), "restore"), 0)
	expect(t, runJob(t, e, "verify"), 8)
	// An exact key that does not exist is a mistake, whatever IF_MISSING says.
	expect(t, runJob(t, e.with("SNAPSHOT_RESTORE_DIR", dst, "SNAPSHOT_RESTORE_IF_MISSING", "ok", "SNAPSHOT_RESTORE_KEY", "snapshots/kubeshark-20200101T000000Z.tar.zst"), "restore"), 8)
}

// readOnlyDir returns a directory the job cannot write: a read-only tmpfs
// when running as root (root ignores modes), else a 0555 directory.
func readOnlyDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if os.Geteuid() != 0 {
		os.Chmod(dir, 0o555)
		t.Cleanup(func() { os.Chmod(dir, 0o755) })
		return dir
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mounting a read-only tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	return dir
}

func TestUnwritableTarget(t *testing.T) {
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644)
	e, _ := fileEnv(t, src)
	expect(t, runJob(t, e), 0)
	expect(t, runJob(t, e.with("SNAPSHOT_RESTORE_DIR", readOnlyDir(t)), "restore"), 4, "SNAPSHOT_RESTORE_DIR")
}

func TestCorruptSnapshot(t *testing.T) {
	src := t.TempDir()
	testenv.MakeTree(t, src)
	e, store := fileEnv(t, src)
	expect(t, runJob(t, e), 0)
	key := storeFiles(t, store)[0]
	p := filepath.Join(store, key)
	b, _ := os.ReadFile(p)
	b[len(b)/2] ^= 0x10
	os.WriteFile(p, b, 0o644)

	expect(t, runJob(t, e, "verify"), 7, "SNAPSHOT_RESTORE_KEY")
	dst := t.TempDir()
	os.WriteFile(filepath.Join(dst, "existing"), []byte("keep me"), 0o644)
	before := testenv.ReadTree(t, dst, nil)
	expect(t, runJob(t, e.with("SNAPSHOT_RESTORE_DIR", dst, "SNAPSHOT_RESTORE_IF_NOT_EMPTY", "overwrite"), "restore"), 7)
	if after := testenv.ReadTree(t, dst, nil); !sameTree(before, after) {
		t.Errorf("target changed by a failed restore: %v", after)
	}
}

func sameTree(a, b map[string]testenv.Entry) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestHostileSnapshots(t *testing.T) {
	for name, data := range testenv.HostileArchives(t) {
		t.Run(name, func(t *testing.T) {
			e, store := fileEnv(t, t.TempDir())
			key := "snapshots/kubeshark-20261126T031500Z.tar.zst"
			os.MkdirAll(filepath.Join(store, "snapshots"), 0o755)
			os.WriteFile(filepath.Join(store, key), data, 0o644)
			expect(t, runJob(t, e, "verify"), 7, "unsafe")
			parent := t.TempDir()
			dst := filepath.Join(parent, "restore")
			r := runJob(t, e.with("SNAPSHOT_RESTORE_DIR", dst), "restore")
			expect(t, r, 7, "unsafe")
			if entries, _ := os.ReadDir(parent); len(entries) != 0 {
				t.Errorf("restore left %v", entries)
			}
			for _, p := range []string{"/tmp/evil", filepath.Join(store, "evil"), filepath.Join(parent, "evil")} {
				if _, err := os.Lstat(p); err == nil {
					os.Remove(p)
					t.Errorf("%s was written", p)
				}
			}
		})
	}
}

func TestSigtermDuringBackup(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			src := t.TempDir()
			writeBig(t, filepath.Join(src, "capture.pcap"), 64<<20)
			e, store := fileEnv(t, src)
			j := startJob(t, e.with("SNAPSHOT_COMPRESSION_LEVEL", "best"))
			j.waitFor(t, "progress")
			code := j.signal(t, sig)
			want := 143
			if sig == syscall.SIGINT {
				want = 130
			}
			if code != want {
				t.Fatalf("exit %d, want %d\n%s", code, want, j.stderr.String())
			}
			if f := storeFiles(t, store); len(f) != 0 {
				t.Errorf("store holds %q after an interrupted backup", f)
			}
			lines := parseLines(j.stderr.String())
			last := lines[len(lines)-1]
			if last["level"] != "ERROR" || !strings.Contains(last["hint"].(string), "run the job again") {
				t.Errorf("last line %v", last)
			}
		})
	}
}

func TestSigtermDuringRestore(t *testing.T) {
	src := t.TempDir()
	writeBig(t, filepath.Join(src, "capture.pcap"), 96<<20)
	for i := range 200 {
		os.WriteFile(filepath.Join(src, "f"+strings.Repeat("x", i%50)+string(rune('a'+i%26))), []byte("small"), 0o644)
	}
	e, _ := fileEnv(t, src)
	expect(t, runJob(t, e), 0)
	parent := t.TempDir()
	dst := filepath.Join(parent, "restore")
	os.Mkdir(dst, 0o755)
	j := startJob(t, e.with("SNAPSHOT_RESTORE_DIR", dst, "SNAPSHOT_PROGRESS_INTERVAL", "100ms"), "restore")
	j.waitFor(t, "restore started")
	if code := j.signal(t, syscall.SIGTERM); code != 143 {
		t.Fatalf("exit %d, want 143\n%s", code, j.stderr.String())
	}
	entries, _ := os.ReadDir(dst)
	if len(entries) != 0 {
		t.Errorf("target holds %v after an interrupted restore", entries)
	}
}

func TestSpecialFilesInSourceAreSkipped(t *testing.T) {
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "a.pcap"), []byte("data"), 0o644)
	if err := syscall.Mkfifo(filepath.Join(src, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	e, _ := fileEnv(t, src)
	r := runJob(t, e)
	expect(t, r, 0)
	if !strings.Contains(r.stderr, "skipped a special file") {
		t.Errorf("no warning for the FIFO:\n%s", r.stderr)
	}
	dst := filepath.Join(t.TempDir(), "r")
	expect(t, runJob(t, e.with("SNAPSHOT_RESTORE_DIR", dst), "restore"), 0)
	entries, _ := os.ReadDir(dst)
	var names []string
	for _, en := range entries {
		if en.Name() != testenv.LockName {
			names = append(names, en.Name())
		}
	}
	if !slices.Equal(names, []string{"a.pcap"}) {
		t.Errorf("restored %q", names)
	}
}
