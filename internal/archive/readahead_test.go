package archive

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/snapshot-job/snapshot-job/internal/testenv"
)

// readAheadTree makes n regular files over two directories, plus a FIFO
// and a symlink that must never be hinted, and returns the files' paths
// in the archiver's order.
func readAheadTree(t *testing.T, n int) (string, []string) {
	t.Helper()
	src := t.TempDir()
	var files []string
	for i := range n {
		p := filepath.Join(src, fmt.Sprintf("node-%d", i%2), fmt.Sprintf("f%04d.pcap", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, p)
	}
	if err := syscall.Mkfifo(filepath.Join(src, "node-0", "f0000.pipe"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("f0002.pcap", filepath.Join(src, "node-0", "f0001.link")); err != nil {
		t.Fatal(err)
	}
	slices.Sort(files)
	return src, files
}

type hintLog struct {
	mu    sync.Mutex
	paths []string
}

func (h *hintLog) hint(rel string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.paths = append(h.paths, rel)
}

func (h *hintLog) sorted() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Sorted(slices.Values(h.paths))
}

// waitFor polls until the log holds n hints; it returns what it holds.
func (h *hintLog) waitFor(n int) []string {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if got := h.sorted(); len(got) >= n {
			return got
		}
	}
	return h.sorted()
}

// The read-ahead hints what the walk queues for the archiver: the regular
// files right after the one being archived, readAheadFiles of them, and
// nothing else (no FIFO, no symlink, nothing further on).
func TestReadAheadHintsTheQueuedFiles(t *testing.T) {
	src, files := readAheadTree(t, 3*readAheadFiles)
	rels := make([]string, len(files))
	for i, f := range files {
		rels[i], _ = filepath.Rel(src, f)
	}
	var log hintLog
	stalled, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	done := make(chan error, 1)
	go func() {
		_, err := Write(t.Context(), io.Discard, src, WriteOptions{hint: log.hint, afterHeader: func(rel string) {
			once.Do(func() { close(stalled); <-release })
		}})
		done <- err
	}()
	<-stalled
	// The archiver stands on the first file: the next readAheadFiles are
	// queued and hinted; the first may or may not have been.
	got := log.waitFor(readAheadFiles)
	time.Sleep(100 * time.Millisecond)
	got = log.sorted()
	want := rels[1 : 1+readAheadFiles]
	if len(got) == readAheadFiles+1 {
		want = rels[:1+readAheadFiles]
	}
	if !slices.Equal(got, want) {
		t.Fatalf("hinted %d files %q..., want the %d after the one being archived", len(got), got[:min(3, len(got))], readAheadFiles)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, h := range log.sorted() {
		if !strings.HasSuffix(h, ".pcap") {
			t.Errorf("hinted %s, which is not a regular file", h)
		}
	}
}

// The walk is the archiver's: each directory is opened once by Write and
// once by Scan, whatever the read-ahead does.
func TestWriteWalksOnce(t *testing.T) {
	src := t.TempDir()
	testenv.MakeTree(t, src)
	for _, ra := range []bool{true, false} {
		opened := map[string]int{}
		opts := WriteOptions{openedDir: func(rel string) { opened[rel]++ }}
		if !ra {
			opts.hint = func(string) {} // hints that go nowhere: no read-ahead
		}
		archiveOf(t, src, opts)
		sc := map[string]int{}
		if _, err := Scan(t.Context(), src, WriteOptions{openedDir: func(rel string) { sc[rel]++ }}); err != nil {
			t.Fatal(err)
		}
		dirs := 1 // the root
		for _, e := range testenv.ReadTree(t, src, nil) {
			if e.Type == "dir" {
				dirs++
			}
		}
		for name, m := range map[string]map[string]int{"Write": opened, "Scan": sc} {
			if len(m) != dirs {
				t.Errorf("%s (read-ahead %v) opened %d directories, the tree has %d", name, ra, len(m), dirs)
			}
			for rel, n := range m {
				if n != 1 {
					t.Errorf("%s (read-ahead %v) opened %q %d times", name, ra, rel, n)
				}
			}
		}
	}
}

func openFiles(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(fds)
}

// Write must not return while a read-ahead worker still holds a file of
// the source open (the caller may unmount or delete it next).
func TestWriteLeavesNoFileOpen(t *testing.T) {
	src, _ := readAheadTree(t, 500)
	before := openFiles(t)
	for range 5 {
		archiveOf(t, src, WriteOptions{})
		if after := openFiles(t); after != before {
			t.Fatalf("%d files open after Write, %d before", after, before)
		}
	}
}

// Write returns only when no hint is running: its caller may remove or
// unmount the source next.
func TestWriteWaitsForHints(t *testing.T) {
	src, _ := readAheadTree(t, 10)
	started, release := make(chan struct{}, 100), make(chan struct{})
	done := make(chan error, 1)
	var once sync.Once
	go func() {
		_, err := Write(t.Context(), io.Discard, src, WriteOptions{
			hint: func(string) {
				started <- struct{}{}
				<-release
			},
			// Held on the first file until a hint runs, so that the
			// files queued behind it are hinted, not passed.
			afterHeader: func(string) { once.Do(func() { started <- <-started }) },
		})
		done <- err
	}()
	select {
	case <-done:
		t.Fatal("Write returned while a hint was still running")
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
