package main

import (
	bin "encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/snapshot-job/snapshot-job/internal/testenv"
)

// filesTree makes a tree with fixed modes and times, and a 12 MiB file
// that does not compress, so that the object is far larger than what
// files reads of it.
func filesTree(t *testing.T, src string) {
	t.Helper()
	stamp := time.Date(2026, 11, 25, 1, 2, 3, 0, time.UTC)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(src, "node-1", "pcapdump"), 0o755))
	writeBig(t, filepath.Join(src, "node-1", "pcapdump", "big.pcap"), 12<<20)
	must(os.Chmod(filepath.Join(src, "node-1", "pcapdump", "big.pcap"), 0o640))
	must(os.WriteFile(filepath.Join(src, "node-1", "a b.json"), []byte("{}\n"), 0o600))
	must(os.Symlink("node-1/pcapdump/big.pcap", filepath.Join(src, "latest")))
	for _, p := range []string{"node-1/pcapdump/big.pcap", "node-1/a b.json", "node-1/pcapdump", "node-1"} {
		must(os.Chtimes(filepath.Join(src, p), stamp, stamp))
	}
	tv := unix.NsecToTimeval(stamp.UnixNano())
	must(unix.Lutimes(filepath.Join(src, "latest"), []unix.Timeval{tv, tv}))
}

const wantFiles = `TYPE      MODE            SIZE  MTIME                 PATH
symlink   0777               0  2026-11-25T01:02:03Z  latest -> node-1/pcapdump/big.pcap
dir       0755               0  2026-11-25T01:02:03Z  node-1
file      0600               3  2026-11-25T01:02:03Z  node-1/a b.json
dir       0755               0  2026-11-25T01:02:03Z  node-1/pcapdump
file      0640        12582912  2026-11-25T01:02:03Z  node-1/pcapdump/big.pcap
`

const wantFilesJSON = `{"path":"latest","type":"symlink","size":0,"mode":"0777","mtime":"2026-11-25T01:02:03Z","link":"node-1/pcapdump/big.pcap"}
{"path":"node-1","type":"dir","size":0,"mode":"0755","mtime":"2026-11-25T01:02:03Z"}
{"path":"node-1/a b.json","type":"file","size":3,"mode":"0600","mtime":"2026-11-25T01:02:03Z"}
{"path":"node-1/pcapdump","type":"dir","size":0,"mode":"0755","mtime":"2026-11-25T01:02:03Z"}
{"path":"node-1/pcapdump/big.pcap","type":"file","size":12582912,"mode":"0640","mtime":"2026-11-25T01:02:03Z"}
`

// filesTests run the files verb on every store: exact output as a table
// and as JSON lines.
func filesTests(t *testing.T, c cloud) {
	t.Run("Files", func(t *testing.T) {
		src := t.TempDir()
		filesTree(t, src)
		e, _ := c.setup(t, src)
		expect(t, runJob(t, e), 0)
		r := runJob(t, e.with("SNAPSHOT_LOG_FORMAT", "text"), "files")
		expect(t, r, 0)
		if r.stdout != wantFiles {
			t.Errorf("files printed\n%s\nwant\n%s", r.stdout, wantFiles)
		}
		for _, e := range []env{e.with("SNAPSHOT_LOG_FORMAT", "json"), e.with("SNAPSHOT_LOG_FORMAT", "text")} {
			args := []string{"files"}
			if e["SNAPSHOT_LOG_FORMAT"] == "text" {
				args = append(args, "--json")
			}
			r = runJob(t, e, args...)
			expect(t, r, 0)
			if r.stdout != wantFilesJSON {
				t.Errorf("files %q printed\n%s\nwant\n%s", args, r.stdout, wantFilesJSON)
			}
		}
	})
}

func TestFileStoreFiles(t *testing.T) { filesTests(t, fileCloud{}) }

// startCountingProxy puts a testenv.CountingProxy in front of target
// until the test ends: what the job fetched, as the network saw it.
func startCountingProxy(t *testing.T, target string) *testenv.CountingProxy {
	t.Helper()
	p, err := testenv.StartCountingProxy(target, "", "", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// s3FilesFetchesTail proves through a counting proxy in front of
// versitygw that files reads only the tail of the object.
func s3FilesFetchesTail(t *testing.T, fx *s3Fixture) {
	src := t.TempDir()
	filesTree(t, src)
	e, bucket := fx.setup(t, src)
	expect(t, runJob(t, e), 0)
	keys := fx.keys(t, bucket, "snapshots/")
	if len(keys) != 1 {
		t.Fatalf("keys %q", keys)
	}
	proxy := startCountingProxy(t, fx.v.Endpoint)
	r := runJob(t, e.with("SNAPSHOT_AWS_ENDPOINT", proxy.URL, "SNAPSHOT_LOG_FORMAT", "text"), "files")
	expect(t, r, 0)
	if r.stdout != wantFiles {
		t.Errorf("files printed\n%s\nwant\n%s", r.stdout, wantFiles)
	}
	// The object is over 12 MiB; the tail read is 64 KiB, and a List
	// answer is a few KiB.
	c := proxy.Counts()
	t.Logf("files fetched %d bytes in %d requests through the proxy", c.Bytes, c.Requests)
	if n := c.Bytes; n > 80<<10 {
		t.Errorf("files fetched %d bytes through the proxy, want at most 80 KiB", n)
	}
	if !strings.Contains(r.stderr, "indexed=true") {
		t.Errorf("log does not say the index was used:\n%s", r.stderr)
	}
}

// files on a prefix without snapshots, on a key that does not exist and
// on a damaged index: the exit codes of the contract.
func TestFilesExitCodes(t *testing.T) {
	src := t.TempDir()
	e, _ := fileCloud{}.setup(t, src)
	expect(t, runJob(t, e, "files"), 8, "no snapshot to list the files of")
	expect(t, runJob(t, e.with("SNAPSHOT_RESTORE_KEY", "snapshots/kubeshark-20260101T000000Z.tar.zst"), "files"), 8)
	os.WriteFile(filepath.Join(src, "a.pcap"), []byte("a"), 0o644)
	expect(t, runJob(t, e), 0)
	objs, _ := filepath.Glob(filepath.Join(e["SNAPSHOT_FILE_DIR"], "snapshots", "*.tar.zst"))
	if len(objs) != 1 {
		t.Fatalf("objects %q", objs)
	}
	b, _ := os.ReadFile(objs[0])
	b[len(b)-9] ^= 0x7f // the footer's frame count
	os.WriteFile(objs[0], b, 0o644)
	expect(t, runJob(t, e, "files"), 7)
}

// verify on a snapshot whose seek table lies about a frame: the built
// binary exits 7 naming the frame and the field. The entries are changed
// so that the table still adds up, so only the frames themselves tell.
func TestVerifyTamperedSeekTable(t *testing.T) {
	src := t.TempDir()
	filesTree(t, src)
	e, _ := fileCloud{}.setup(t, src)
	expect(t, runJob(t, e), 0)
	objs, _ := filepath.Glob(filepath.Join(e["SNAPSHOT_FILE_DIR"], "snapshots", "*.tar.zst"))
	if len(objs) != 1 {
		t.Fatalf("objects %q", objs)
	}
	orig, err := os.ReadFile(objs[0])
	if err != nil {
		t.Fatal(err)
	}
	expect(t, runJob(t, e, "verify"), 0)
	frames := int(bin.LittleEndian.Uint32(orig[len(orig)-9:]))
	if frames < 3 {
		t.Fatalf("%d frames: the test wants two data frames and the index", frames)
	}
	// entry i's field at byte off (0 compressed size, 4 decompressed
	// size, 8 checksum) lies here.
	field := func(b []byte, i, off int) []byte {
		return b[len(b)-9-12*frames+12*i+off:]
	}
	add := func(b []byte, i, off int, d int32) {
		p := field(b, i, off)
		bin.LittleEndian.PutUint32(p, bin.LittleEndian.Uint32(p)+uint32(d))
	}
	cases := map[string]struct {
		tamper func([]byte)
		want   string
	}{
		"compressed size":   {func(b []byte) { add(b, 0, 0, 1); add(b, 1, 0, -1) }, "frame 0: the table says compressed size"},
		"decompressed size": {func(b []byte) { add(b, 0, 4, -1); add(b, 1, 4, 1) }, "frame 0: the table says decompressed size"},
		"checksum":          {func(b []byte) { field(b, 1, 8)[0] ^= 1 }, "frame 1: the table says checksum"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			b := slices.Clone(orig)
			tc.tamper(b)
			if err := os.WriteFile(objs[0], b, 0o644); err != nil {
				t.Fatal(err)
			}
			expect(t, runJob(t, e, "verify"), 7, "seek table", tc.want)
		})
	}
}
