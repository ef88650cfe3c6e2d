package archive

import (
	"archive/tar"
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/snapshot-job/snapshot-job/internal/testenv"
)

// A device or FIFO whose header gives it a size is followed by that many
// bytes, which GNU tar passes over; as the last entry it must not make
// the archive look truncated.
func TestSkippedTypeWithBody(t *testing.T) {
	file := testenv.TarOf(t, testenv.File("a", "x"))
	file = file[:len(file)-1024] // without its end marker
	for _, typ := range []byte{tar.TypeFifo, tar.TypeChar, tar.TypeBlock} {
		for _, body := range [][]byte{bytes.Repeat([]byte("B"), 1000), make([]byte, 1024)} {
			raw := slices.Concat(file, testenv.RawHeader("special", typ, int64(len(body))), testenv.Padded(body), make([]byte, 1024))
			data := testenv.Zst(t, raw)
			log, buf := logBuffer()
			st, err := Verify(t.Context(), bytes.NewReader(data), VerifyOptions{Logger: log})
			if err != nil || st.Files != 1 || st.Skipped != 1 || !strings.Contains(buf.String(), "skipped an entry of a type that is never restored") {
				t.Fatalf("type %c: Verify %+v %v\n%s", typ, st, err, buf)
			}
			dst := t.TempDir()
			if _, err := Extract(t.Context(), bytes.NewReader(data), dst, ExtractOptions{Token: "t1", noSync: true}); err != nil {
				t.Fatalf("type %c: Extract: %v", typ, err)
			}
			if entries, _ := os.ReadDir(dst); len(entries) != 1 || entries[0].Name() != "a" {
				t.Fatalf("restored %v", entries)
			}
		}
	}
}

// Times after 2262 do not fit in int64 nanoseconds; they must come back
// as they were, on files, directories and symlinks.
func TestTimesAfter2262(t *testing.T) {
	when := time.Date(2300, 6, 7, 8, 9, 10, 123456789, time.UTC)
	var entries []testenv.TarEntry
	for _, e := range []testenv.TarEntry{testenv.Dir("d/"), testenv.File("d/f", "x"), testenv.Symlink("d/l", "f")} {
		e.Header.ModTime, e.Header.AccessTime, e.Header.Format = when, when, tar.FormatPAX
		entries = append(entries, e)
	}
	data := testenv.TarZst(t, entries...)
	dst := t.TempDir()
	if _, err := Extract(t.Context(), bytes.NewReader(data), dst, ExtractOptions{Token: "t1", noSync: true}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"d", "d/f", "d/l"} {
		var st syscall.Stat_t
		if err := syscall.Lstat(filepath.Join(dst, p), &st); err != nil {
			t.Fatal(err)
		}
		if got := time.Unix(st.Mtim.Sec, st.Mtim.Nsec).UTC(); !got.Equal(when) {
			t.Errorf("%s: mtime %s, want %s", p, got, when)
		}
	}
}

// lost+found at the root and names of snapshot-job's own are never
// written, whatever is below them; Verify says the same as Extract.
func TestNamesNeverRestored(t *testing.T) {
	data := testenv.TarZst(t,
		testenv.File("lost+found", "a file where the volume has its directory"),
		testenv.File("lost+found/x", "x"),
		testenv.Dir("node/"),
		testenv.Dir("node/lost+found/"), // only the root's is the filesystem's
		testenv.File("node/.snapshot-job-lock", "x"),
		testenv.File(".snapshot-job-restore-x/y", "x"),
		testenv.Symlink(".snapshot-job-aside-x-1", "/"),
		testenv.File(".snapshot-job-aside-x-1/evil", "x"),
		testenv.Hardlink("node/link", "lost+found/x"),
		testenv.File("node/f", "kept"),
	)
	vlog, vbuf := logBuffer()
	vst, err := Verify(t.Context(), bytes.NewReader(data), VerifyOptions{Logger: vlog})
	if err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	os.Mkdir(filepath.Join(dst, "lost+found"), 0o700)
	xlog, xbuf := logBuffer()
	xst, err := Extract(t.Context(), bytes.NewReader(data), dst, ExtractOptions{Token: "t1", Logger: xlog, noSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if vst != xst || xst.Skipped != 7 || xst.Files != 1 || xst.Dirs != 2 {
		t.Errorf("stats: verify %+v, extract %+v", vst, xst)
	}
	skips := func(s string) []string {
		var out []string
		for _, l := range strings.Split(s, "\n") {
			if strings.Contains(l, "skipped an entry") {
				out = append(out, l[strings.Index(l, "msg="):])
			}
		}
		return out
	}
	if v, x := skips(vbuf.String()), skips(xbuf.String()); len(v) != 7 || !slices.Equal(v, x) {
		t.Errorf("warnings differ:\nverify  %q\nextract %q", v, x)
	}
	got := testenv.ReadTree(t, dst, nil)
	var names []string
	for k := range got {
		names = append(names, k)
	}
	slices.Sort(names)
	if want := []string{"lost+found", "node", "node/f", "node/lost+found"}; !slices.Equal(names, want) {
		t.Errorf("restored %q, want %q", names, want)
	}
}

func TestEmptyIgnoresReservedNames(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"lost+found", ".snapshot-job-lock", StagingPrefix + "x", ReservedPrefix + "aside-x-1"} {
		os.Mkdir(filepath.Join(dir, n), 0o700)
	}
	if ok, err := TargetEmpty(dir); !ok || err != nil {
		t.Fatalf("Empty = %v, %v", ok, err)
	}
	os.Mkdir(filepath.Join(dir, "node-1"), 0o700)
	if ok, err := TargetEmpty(dir); ok || err != nil {
		t.Fatalf("Empty = %v, %v", ok, err)
	}
	f := filepath.Join(t.TempDir(), "file")
	os.WriteFile(f, nil, 0o644)
	if _, err := TargetEmpty(f); !errors.Is(err, ErrTarget) {
		t.Fatalf("TargetEmpty(file) err = %v", err)
	}
	_ = fs.ErrNotExist
}
