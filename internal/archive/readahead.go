package archive

import (
	"context"
	"io/fs"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// Read-ahead bounds. The archiver reads one file at a time, and on a cold
// cache each small file costs a disk round trip before compression can go
// on. Asking the kernel for the next files' first bytes keeps several
// reads in flight without changing the archive's order. Measured on the
// dev machine's virtio disk, cold cache, into a store on tmpfs (medians of
// 3): 50,000 JSON files of 2–14 KiB 5.56 s → 4.33 s (1.9 s warm); the
// 1 GiB pcap-like bench dataset 4.37 s → 3.80 s. The window costs at most
// readAheadFiles × readAheadBytes of page cache, which the kernel can
// reclaim; it is not the job's heap.
const (
	readAheadFiles   = 64      // regular files hinted ahead of the one being archived
	readAheadBytes   = 1 << 20 // of each; the kernel's own read-ahead takes large files from there
	readAheadWorkers = 8       // opens in flight (the hint itself does not wait for the disk)
)

// readAhead walks the tree in the archiver's order, a bounded number of
// regular files ahead of it, and hints each one with
// POSIX_FADV_WILLNEED. It only ever opens what the walk reports as a
// regular file, without following links or blocking, as the archiver
// does; a file it cannot open is simply not hinted.
type readAhead struct {
	done   atomic.Int64  // regular files the archiver has finished
	moved  chan struct{} // wakes the walker when done advances
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startReadAhead hints files with hint (hintFile outside tests).
func startReadAhead(ctx context.Context, dir string, hint func(path string)) *readAhead {
	ctx, cancel := context.WithCancel(ctx)
	r := &readAhead{moved: make(chan struct{}, 1), cancel: cancel}
	paths := make(chan string)
	r.wg.Add(1 + readAheadWorkers)
	go func() {
		defer r.wg.Done()
		defer close(paths)
		var next int64
		_ = walk(ctx, dir, nil, func(path, _ string, d fs.DirEntry) error {
			if !d.Type().IsRegular() {
				return nil
			}
			i := next
			next++
			for i >= r.done.Load()+readAheadFiles {
				select {
				case <-r.moved:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			if i < r.done.Load() {
				return nil // the archiver got there first
			}
			select {
			case paths <- path:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	for range readAheadWorkers {
		go func() {
			defer r.wg.Done()
			for p := range paths {
				hint(p)
			}
		}()
	}
	return r
}

// hintFile asks the kernel to start reading path's first readAheadBytes.
func hintFile(path string) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
		_ = unix.Fadvise(int(f.Fd()), 0, readAheadBytes, unix.FADV_WILLNEED)
	}
}

// fileDone tells the walker that the archiver finished one regular file.
func (r *readAhead) fileDone() {
	r.done.Add(1)
	select {
	case r.moved <- struct{}{}:
	default:
	}
}

// stop ends the walk and waits for the workers, so that no file is open
// once Write returns.
func (r *readAhead) stop() {
	r.cancel()
	r.wg.Wait()
}
