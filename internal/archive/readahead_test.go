package archive

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"
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

func (h *hintLog) hint(p string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.paths = append(h.paths, p)
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

func TestReadAheadStaysAWindowAhead(t *testing.T) {
	src, files := readAheadTree(t, 3*readAheadFiles)
	var log hintLog
	ra := startReadAhead(t.Context(), src, log.hint)
	defer ra.stop()

	// The archiver has finished nothing: exactly the first window.
	if got := log.waitFor(readAheadFiles); !slices.Equal(got, files[:readAheadFiles]) {
		t.Fatalf("hinted %d files %q..., want the first %d regular files", len(got), got[:min(3, len(got))], readAheadFiles)
	}
	time.Sleep(100 * time.Millisecond)
	if got := log.sorted(); len(got) != readAheadFiles {
		t.Fatalf("hinted %d files while the archiver stood still, want %d", len(got), readAheadFiles)
	}

	// Each finished file moves the window by one.
	for range 10 {
		ra.fileDone()
	}
	if got := log.waitFor(readAheadFiles + 10); !slices.Equal(got, files[:readAheadFiles+10]) {
		t.Fatalf("after 10 files hinted %d, want the first %d", len(got), readAheadFiles+10)
	}

	// Files the archiver passed before they were hinted are skipped; the
	// window then runs from where the archiver is.
	for range 100 {
		ra.fileDone()
	}
	want := slices.Concat(files[:readAheadFiles+10], files[110:110+readAheadFiles])
	if got := log.waitFor(len(want)); !slices.Equal(got, want) {
		t.Fatalf("after 110 files hinted %d, want %d: the first %d and %d from the 110th", len(got), len(want), readAheadFiles+10, readAheadFiles)
	}

	ra.stop()
	n := len(log.sorted())
	time.Sleep(50 * time.Millisecond)
	if len(log.sorted()) != n {
		t.Fatal("hints after stop")
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

// stop returns only when no hint is running: Write's caller may remove or
// unmount the source next.
func TestReadAheadStopWaitsForHints(t *testing.T) {
	src, _ := readAheadTree(t, 10)
	started, release := make(chan struct{}, readAheadFiles), make(chan struct{})
	ra := startReadAhead(t.Context(), src, func(string) {
		started <- struct{}{}
		<-release
	})
	<-started
	stopped := make(chan struct{})
	go func() { ra.stop(); close(stopped) }()
	select {
	case <-stopped:
		t.Fatal("stop returned while a hint was still running")
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	<-stopped
}
