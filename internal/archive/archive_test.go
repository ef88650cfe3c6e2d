package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/snapshot-job/snapshot-job/internal/testenv"
)

// logBuffer collects warnings so tests can assert on them.
func logBuffer() (*slog.Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	return slog.New(slog.NewTextHandler(&buf, nil)), &buf
}

func archiveOf(t *testing.T, dir string, opts WriteOptions) ([]byte, Stats) {
	t.Helper()
	var buf bytes.Buffer
	st, err := Write(t.Context(), &buf, dir, opts)
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	return buf.Bytes(), st
}

func TestRoundTrip(t *testing.T) {
	for _, level := range []string{"fastest", "default", "better", "best"} {
		t.Run(level, func(t *testing.T) {
			src, dst := t.TempDir(), filepath.Join(t.TempDir(), "restore")
			testenv.MakeTree(t, src)
			data, wst := archiveOf(t, src, WriteOptions{Level: level})
			vst, err := Verify(t.Context(), bytes.NewReader(data), VerifyOptions{})
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			xst, err := Extract(t.Context(), bytes.NewReader(data), dst, ExtractOptions{Token: "t1"})
			if err != nil {
				t.Fatalf("Extract: %v", err)
			}
			if wst != vst || wst != xst {
				t.Errorf("stats differ: write %+v verify %+v extract %+v", wst, vst, xst)
			}
			if wst.Files != 13 || wst.HardLinks != 2 || wst.Symlinks != 4 {
				t.Errorf("write stats %+v: want 13 files, 2 hard links, 4 symlinks", wst)
			}
			testenv.CompareTrees(t, src, dst, nil)
			// The sparse file must not have been written out in full.
			var st syscall.Stat_t
			if err := syscall.Stat(filepath.Join(dst, "sparse.img"), &st); err != nil {
				t.Fatal(err)
			}
			if st.Blocks*512 > 1<<20 {
				t.Errorf("sparse.img takes %d bytes on disk, want it sparse", st.Blocks*512)
			}
			assertNoStaging(t, dst)
		})
	}
}

func assertNoStaging(t *testing.T, dir string) {
	t.Helper()
	matches, _ := filepath.Glob(filepath.Join(dir, StagingPrefix+"*"))
	if len(matches) > 0 {
		t.Errorf("staging left behind: %q", matches)
	}
}

// The object must stay plain tar+zstd that standard tools read.
func TestReadableByTarAndZstd(t *testing.T) {
	if _, err := exec.LookPath("zstd"); err != nil {
		t.Skip("zstd CLI not installed")
	}
	src := t.TempDir()
	testenv.MakeTree(t, src)
	data, _ := archiveOf(t, src, WriteOptions{})
	cmd := exec.Command("sh", "-c", "zstd -dc | tar -tf -")
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("zstd -d | tar -t: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "names/čaj ☕ 日本.pcap") || !strings.Contains(string(out), "d29/bottom.txt") {
		t.Errorf("tar -t output misses entries:\n%s", out)
	}
}

func TestWriteSkipsSpecialFilesWithoutOpening(t *testing.T) {
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "a.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Opening a FIFO for reading blocks until a writer comes: the test
	// would hang if Write opened it.
	if err := syscall.Mkfifo(filepath.Join(src, "pipe"), 0o644); err != nil {
		t.Fatal(err)
	}
	log, buf := logBuffer()
	data, st := archiveOf(t, src, WriteOptions{Logger: log})
	if st.Skipped != 1 || st.Files != 1 {
		t.Errorf("stats %+v, want 1 file and 1 skipped", st)
	}
	if !strings.Contains(buf.String(), "skipped a special file") || !strings.Contains(buf.String(), "path=pipe") {
		t.Errorf("no warning naming the FIFO:\n%s", buf)
	}
	dst := t.TempDir()
	if _, err := Extract(t.Context(), bytes.NewReader(data), dst, ExtractOptions{Token: "t1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(dst, "pipe")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("FIFO restored: %v", err)
	}
}

func TestWriteSkipsLostAndFound(t *testing.T) {
	src := t.TempDir()
	if err := os.MkdirAll(filepath.Join(src, "lost+found"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "lost+found", "x"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(src, "node", "lost+found"), 0o700); err != nil {
		t.Fatal(err)
	}
	_, st := archiveOf(t, src, WriteOptions{})
	if st.Files != 0 || st.Dirs != 2 { // node/ and node/lost+found/
		t.Errorf("stats %+v: only the root's lost+found is left out", st)
	}
}

// A file that grows while read is stored at the
// size its header promised, with a warning.
func TestFileChangingSizeDuringRead(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(f *os.File) error
		warn   string
	}{
		{"grows", func(f *os.File) error { _, err := f.Write(bytes.Repeat([]byte("more"), 1<<20)); return err }, "file grew"},
		{"shrinks", func(f *os.File) error { return f.Truncate(1000) }, "file shrank"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := t.TempDir()
			p := filepath.Join(src, "live.pcap")
			orig := bytes.Repeat([]byte("pcap"), 3<<20/4) // 3 MiB: the copy reads 1 MiB at a time
			if err := os.WriteFile(p, orig, 0o644); err != nil {
				t.Fatal(err)
			}
			f, err := os.OpenFile(p, os.O_RDWR|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			log, buf := logBuffer()
			var out bytes.Buffer
			var changeErr error
			st, err := Write(t.Context(), &out, src, WriteOptions{Logger: log, afterHeader: func(string) { changeErr = tc.change(f) }})
			if err != nil {
				t.Fatalf("Write: %v", err)
			}
			if changeErr != nil {
				t.Fatal(changeErr)
			}
			if st.Changed != 1 || !strings.Contains(buf.String(), tc.warn) {
				t.Fatalf("stats %+v, log:\n%s", st, buf)
			}
			dst := t.TempDir()
			if _, err := Extract(t.Context(), bytes.NewReader(out.Bytes()), dst, ExtractOptions{Token: "t1"}); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(filepath.Join(dst, "live.pcap"))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(orig) {
				t.Fatalf("restored %d bytes, want the %d of the header", len(got), len(orig))
			}
			if !bytes.Equal(got[:1000], orig[:1000]) {
				t.Fatal("restored content differs at the start")
			}
		})
	}
}

func TestWriteMissingSource(t *testing.T) {
	_, err := Write(t.Context(), io.Discard, filepath.Join(t.TempDir(), "nope"), WriteOptions{})
	if !errors.Is(err, ErrSource) {
		t.Fatalf("err = %v, want ErrSource", err)
	}
	f := filepath.Join(t.TempDir(), "file")
	os.WriteFile(f, nil, 0o644)
	if _, err := Scan(t.Context(), f, WriteOptions{}); !errors.Is(err, ErrSource) {
		t.Fatalf("Scan(file): err = %v, want ErrSource", err)
	}
}

func TestWriteUnreadableFile(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads everything")
	}
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "secret"), []byte("x"), 0o000)
	_, err := Write(t.Context(), io.Discard, src, WriteOptions{})
	if !errors.Is(err, ErrSource) || !strings.Contains(err.Error(), "secret") {
		t.Fatalf("err = %v, want ErrSource naming the file", err)
	}
}

func TestWriteReturnsDestinationError(t *testing.T) {
	src := t.TempDir()
	testenv.MakeTree(t, src)
	boom := errors.New("store went away")
	_, err := Write(t.Context(), failWriter{boom}, src, WriteOptions{})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the destination's error", err)
	}
}

type failWriter struct{ err error }

func (f failWriter) Write([]byte) (int, error) { return 0, f.err }

func TestWriteCancelled(t *testing.T) {
	src := t.TempDir()
	testenv.MakeTree(t, src)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := Write(ctx, io.Discard, src, WriteOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestScanMatchesWrite(t *testing.T) {
	src := t.TempDir()
	testenv.MakeTree(t, src)
	sc, err := Scan(t.Context(), src, WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, st := archiveOf(t, src, WriteOptions{})
	// Each multiply-linked file counts once, with its size, as Write
	// stores it.
	if sc != st {
		t.Errorf("Scan %+v vs Write %+v", sc, st)
	}
	if st.HardLinks != 2 {
		t.Errorf("Write %+v: want the tree's 2 hard links", st)
	}
}

// --- reading damaged and hostile archives ---

func TestHostileArchives(t *testing.T) {
	for name, data := range testenv.HostileArchives(t) {
		t.Run(name, func(t *testing.T) {
			if _, err := Verify(t.Context(), bytes.NewReader(data), VerifyOptions{}); !errors.Is(err, ErrUnsafe) {
				t.Errorf("Verify: err = %v, want ErrUnsafe", err)
			}
			parent := t.TempDir()
			target := filepath.Join(parent, "target")
			os.MkdirAll(target, 0o755)
			os.WriteFile(filepath.Join(target, "keep.txt"), []byte("existing"), 0o644)
			before := testenv.ReadTree(t, parent, nil)
			_, err := Extract(t.Context(), bytes.NewReader(data), target, ExtractOptions{Overwrite: true, Token: "t1"})
			if !errors.Is(err, ErrUnsafe) {
				t.Fatalf("Extract: err = %v, want ErrUnsafe", err)
			}
			after := testenv.ReadTree(t, parent, nil)
			if !mapsEqual(before, after) {
				t.Errorf("target changed:\nbefore %v\nafter  %v", before, after)
			}
			for _, p := range []string{"/tmp/evil", filepath.Join(parent, "evil"), "/etc/evil"} {
				if _, err := os.Lstat(p); err == nil {
					t.Errorf("%s was written", p)
				}
			}
		})
	}
}

func mapsEqual[K comparable, V comparable](a, b map[K]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestBenignOddArchives(t *testing.T) {
	// What tar -C dir . produces: a "./" root entry and "./" prefixes;
	// plus a symlink to an absolute path, which is data, not an attack.
	data := testenv.TarZst(t, testenv.Dir("./"), testenv.Dir("./a/"), testenv.File("./a/f", "x"), testenv.Symlink("./abs", "/etc/passwd"), testenv.Hardlink("./a/h", "./a/f"))
	dst := t.TempDir()
	if _, err := Extract(t.Context(), bytes.NewReader(data), dst, ExtractOptions{Token: "t1"}); err != nil {
		t.Fatal(err)
	}
	if target, err := os.Readlink(filepath.Join(dst, "abs")); err != nil || target != "/etc/passwd" {
		t.Errorf("abs -> %q, %v", target, err)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "a", "h")); err != nil || string(b) != "x" {
		t.Errorf("hard link: %q, %v", b, err)
	}
}

func TestDamagedArchives(t *testing.T) {
	src := t.TempDir()
	testenv.MakeTree(t, src)
	good, _ := archiveOf(t, src, WriteOptions{})

	var tb bytes.Buffer // plain tar with a known entry layout
	tw := tar.NewWriter(&tb)
	for _, n := range []string{"a", "b"} {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: n, Size: 600, Mode: 0o644})
		tw.Write(bytes.Repeat([]byte(n), 600))
	}
	tw.Close()
	plain := tb.Bytes()

	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 0x01

	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"byte flipped in the middle", flipped},
		{"cut in the middle", good[:len(good)/2]},
		{"cut one byte short", good[:len(good)-1]},
		{"tar cut at an entry boundary", testenv.Zst(t, plain[:1536])},      // a's header+data, then nothing
		{"tar without end marker", testenv.Zst(t, plain[:len(plain)-1024])}, // entries complete, marker missing
		{"tar with one end block", testenv.Zst(t, plain[:len(plain)-512])},
		{"garbage after end marker", testenv.Zst(t, append(bytes.Clone(plain), []byte("junk")...))},
		{"not zstd", []byte("this is not an archive at all, just text")},
		{"empty", nil},
		{"gzip", []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Verify(t.Context(), bytes.NewReader(tc.data), VerifyOptions{}); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Verify: err = %v, want ErrCorrupt", err)
			}
			target := t.TempDir()
			os.WriteFile(filepath.Join(target, "keep.txt"), []byte("existing"), 0o644)
			before := testenv.ReadTree(t, target, nil)
			fi, _ := os.Stat(target)
			if _, err := Extract(t.Context(), bytes.NewReader(tc.data), target, ExtractOptions{Overwrite: true, Token: "t1"}); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Extract: err = %v, want ErrCorrupt", err)
			}
			if after := testenv.ReadTree(t, target, nil); !mapsEqual(before, after) {
				t.Errorf("target changed:\nbefore %v\nafter  %v", before, after)
			}
			if fi2, _ := os.Stat(target); !fi2.ModTime().Equal(fi.ModTime()) {
				t.Errorf("target mtime changed from %s to %s", fi.ModTime(), fi2.ModTime())
			}
		})
	}
	// The untouched plain tar is fine: the checks above fail for the
	// damage, not for the layout.
	if _, err := Verify(t.Context(), bytes.NewReader(testenv.Zst(t, plain)), VerifyOptions{}); err != nil {
		t.Fatalf("intact plain tar: %v", err)
	}
}

// Errors of the stream itself are the store's, not corruption.
func TestSourceErrorsPassThrough(t *testing.T) {
	src := t.TempDir()
	testenv.MakeTree(t, src)
	good, _ := archiveOf(t, src, WriteOptions{})
	boom := errors.New("connection reset")
	r := io.MultiReader(bytes.NewReader(good[:len(good)/2]), errReader{boom})
	_, err := Verify(t.Context(), r, VerifyOptions{})
	if !errors.Is(err, boom) || errors.Is(err, ErrCorrupt) {
		t.Fatalf("err = %v, want the reader's error and not ErrCorrupt", err)
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func TestExtractIntoNonEmptyTarget(t *testing.T) {
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "node-1"), 0o755)
	os.WriteFile(filepath.Join(src, "node-1", "a.pcap"), []byte("new a"), 0o644)
	os.WriteFile(filepath.Join(src, "top.json"), []byte("new top"), 0o644)
	data, _ := archiveOf(t, src, WriteOptions{})

	t.Run("refused without overwrite", func(t *testing.T) {
		dst := t.TempDir()
		os.WriteFile(filepath.Join(dst, "top.json"), []byte("old top"), 0o644)
		before := testenv.ReadTree(t, dst, nil)
		_, err := Extract(t.Context(), bytes.NewReader(data), dst, ExtractOptions{Token: "t1"})
		if !errors.Is(err, ErrTarget) {
			t.Fatalf("err = %v, want ErrTarget", err)
		}
		// The clash is found before anything moves.
		if after := testenv.ReadTree(t, dst, nil); !mapsEqual(before, after) {
			t.Errorf("target changed:\nbefore %v\nafter  %v", before, after)
		}
		if !strings.Contains(err.Error(), "top.json already exists") || !strings.Contains(err.Error(), "nothing was changed") {
			t.Errorf("message: %v", err)
		}
		assertNoStaging(t, dst)
	})
	t.Run("overwrite merges", func(t *testing.T) {
		dst := t.TempDir()
		os.MkdirAll(filepath.Join(dst, "node-1"), 0o755)
		os.WriteFile(filepath.Join(dst, "node-1", "a.pcap"), []byte("old a"), 0o644)
		os.WriteFile(filepath.Join(dst, "node-1", "b.pcap"), []byte("old b"), 0o644)
		os.MkdirAll(filepath.Join(dst, "top.json"), 0o755) // a dir where the archive has a file
		if _, err := Extract(t.Context(), bytes.NewReader(data), dst, ExtractOptions{Overwrite: true, Token: "t1"}); err != nil {
			t.Fatal(err)
		}
		for p, want := range map[string]string{"node-1/a.pcap": "new a", "node-1/b.pcap": "old b", "top.json": "new top"} {
			if b, err := os.ReadFile(filepath.Join(dst, p)); err != nil || string(b) != want {
				t.Errorf("%s = %q, %v; want %q", p, b, err, want)
			}
		}
		assertNoStaging(t, dst)
	})
}

func TestTargetEmpty(t *testing.T) {
	dir := t.TempDir()
	if ok, err := TargetEmpty(dir); !ok || err != nil {
		t.Fatalf("fresh dir: %v %v", ok, err)
	}
	if ok, err := TargetEmpty(filepath.Join(dir, "missing")); !ok || err != nil {
		t.Fatalf("missing dir: %v %v", ok, err)
	}
	os.Mkdir(filepath.Join(dir, "lost+found"), 0o700)
	os.Mkdir(filepath.Join(dir, StagingPrefix+"123"), 0o700)
	if ok, err := TargetEmpty(dir); !ok || err != nil {
		t.Fatalf("dir with lost+found and staging: %v %v", ok, err)
	}
	os.WriteFile(filepath.Join(dir, ".hidden"), nil, 0o644)
	if ok, _ := TargetEmpty(dir); ok {
		t.Fatal("dir with a hidden file counted as empty")
	}
}

// Another run's staging directory is not this run's business: only
// Recover, under the volume lock, may judge it abandoned.
func TestExtractLeavesOtherStaging(t *testing.T) {
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644)
	data, _ := archiveOf(t, src, WriteOptions{})
	dst := t.TempDir()
	other := filepath.Join(dst, StagingPrefix+"other")
	os.MkdirAll(filepath.Join(other, "half"), 0o700)
	if _, err := Extract(t.Context(), bytes.NewReader(data), dst, ExtractOptions{Token: "mine"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(other, "half")); err != nil {
		t.Fatalf("the other run's staging directory was touched: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dst, StagingPrefix+"mine")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("this run's staging directory is left: %v", err)
	}
}

func TestExtractNeedsToken(t *testing.T) {
	for _, tok := range []string{"", "UPPER", "a-b", "a/b", strings.Repeat("a", 65)} {
		dst := filepath.Join(t.TempDir(), "r")
		if _, err := Extract(t.Context(), bytes.NewReader(nil), dst, ExtractOptions{Token: tok}); err == nil || !strings.Contains(err.Error(), "token") {
			t.Errorf("token %q: err = %v", tok, err)
		}
		if _, err := os.Stat(dst); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("token %q: target created", tok)
		}
	}
}

func TestExtractUnwritableTarget(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root writes everywhere")
	}
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644)
	data, _ := archiveOf(t, src, WriteOptions{})
	dst := t.TempDir()
	os.Chmod(dst, 0o555)
	defer os.Chmod(dst, 0o755)
	if _, err := Extract(t.Context(), bytes.NewReader(data), dst, ExtractOptions{Token: "t1"}); !errors.Is(err, ErrTarget) {
		t.Fatalf("err = %v, want ErrTarget", err)
	}
}

func TestExtractCancelled(t *testing.T) {
	src := t.TempDir()
	testenv.MakeTree(t, src)
	data, _ := archiveOf(t, src, WriteOptions{})
	dst := t.TempDir()
	ctx, cancel := context.WithCancel(t.Context())
	r := &cancelAfter{r: bytes.NewReader(data), n: int64(len(data) / 2), cancel: cancel}
	_, err := Extract(ctx, r, dst, ExtractOptions{Token: "t1"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	entries, _ := os.ReadDir(dst)
	if len(entries) != 0 {
		t.Fatalf("target not empty after a cancelled restore: %v", entries)
	}
}

type cancelAfter struct {
	r      io.Reader
	n      int64
	cancel context.CancelFunc
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n -= int64(n)
	if c.n <= 0 {
		c.cancel()
	}
	return n, err
}

var _ = time.Now

func TestFileVanishesBeforeOpen(t *testing.T) {
	src := t.TempDir()
	for _, n := range []string{"a.pcap", "b.pcap", "c.pcap"} {
		os.WriteFile(filepath.Join(src, n), []byte(n), 0o644)
	}
	log, buf := logBuffer()
	var out bytes.Buffer
	st, err := Write(t.Context(), &out, src, WriteOptions{Logger: log, beforeOpen: func(rel string) {
		if rel == "b.pcap" {
			os.Remove(filepath.Join(src, rel)) // rotated away by the capture tool
		}
	}})
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	if st.Files != 2 || st.Skipped != 1 || !strings.Contains(buf.String(), "vanished") {
		t.Fatalf("stats %+v, log:\n%s", st, buf)
	}
	dst := t.TempDir()
	if _, err := Extract(t.Context(), bytes.NewReader(out.Bytes()), dst, ExtractOptions{Token: "t1"}); err != nil {
		t.Fatal(err)
	}
	if names := testenv.ReadTree(t, dst, nil); len(names) != 2 {
		t.Fatalf("restored %v", names)
	}
}

func TestFileTurnsUnreadableBeforeOpen(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads everything; cmd/snapshot-job tests this as UID 65532")
	}
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "a.pcap"), []byte("a"), 0o644)
	_, err := Write(t.Context(), io.Discard, src, WriteOptions{beforeOpen: func(rel string) {
		os.Chmod(filepath.Join(src, rel), 0)
	}})
	if !errors.Is(err, ErrSource) || !strings.Contains(err.Error(), "a.pcap") {
		t.Fatalf("err = %v, want ErrSource naming the file", err)
	}
}
