package ranged

import (
	"github.com/snapshot-job/snapshot-job/internal/store"

	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
)

// memFetch serves ranges of data, optionally failing or cutting some.
type memFetch struct {
	data     []byte
	mu       sync.Mutex
	calls    map[int64]int
	inFlight atomic.Int32
	maxSeen  atomic.Int32
	fault    func(off int64, attempt int) (cut int, err error)
}

func (m *memFetch) fetch(ctx context.Context, off, n int64) (io.ReadCloser, error) {
	cur := m.inFlight.Add(1)
	defer m.inFlight.Add(-1)
	for {
		old := m.maxSeen.Load()
		if cur <= old || m.maxSeen.CompareAndSwap(old, cur) {
			break
		}
	}
	m.mu.Lock()
	m.calls[off]++
	attempt := m.calls[off]
	m.mu.Unlock()
	body := m.data[off : off+n]
	if m.fault != nil {
		cut, err := m.fault(off, attempt)
		if err != nil {
			return nil, err
		}
		if cut > 0 {
			body = body[:cut]
		}
	}
	return io.NopCloser(bytes.NewReader(body)), nil
}

func newMem(n int) *memFetch {
	d := make([]byte, n)
	for i := range d {
		d[i] = byte(i * 7 / 3)
	}
	return &memFetch{data: d, calls: map[int64]int{}}
}

func TestRangeReaderInOrder(t *testing.T) {
	for _, size := range []int{0, 1, 999, 1000, 1001, 12345} {
		m := newMem(size)
		r := NewReader(t.Context(), int64(size), 1000, 3, m.fetch)
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil || !bytes.Equal(got, m.data) {
			t.Errorf("size %d: %d bytes, err %v", size, len(got), err)
		}
		if m.maxSeen.Load() > 3 {
			t.Errorf("size %d: %d fetches in flight, want at most 3", size, m.maxSeen.Load())
		}
	}
}

func TestRangeReaderRetriesShortRanges(t *testing.T) {
	m := newMem(10000)
	m.fault = func(off int64, attempt int) (int, error) {
		if off == 3000 && attempt < 3 {
			return 10, nil // cut short twice
		}
		if off == 5000 && attempt == 1 {
			return 0, fmt.Errorf("%w: reset", store.ErrTransfer)
		}
		return 0, nil
	}
	r := NewReader(t.Context(), 10000, 1000, 2, m.fetch)
	defer r.Close()
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, m.data) {
		t.Fatalf("%d bytes, err %v", len(got), err)
	}
}

func TestRangeReaderGivesUp(t *testing.T) {
	m := newMem(10000)
	m.fault = func(off int64, _ int) (int, error) {
		if off == 4000 {
			return 5, nil
		}
		return 0, nil
	}
	r := NewReader(t.Context(), 10000, 1000, 2, m.fetch)
	defer r.Close()
	got, err := io.ReadAll(r)
	if !errors.Is(err, store.ErrTransfer) {
		t.Fatalf("err = %v, want store.ErrTransfer", err)
	}
	if !bytes.Equal(got, m.data[:4000]) {
		t.Fatalf("got %d bytes before the failure, want exactly the 4000 before the bad range", len(got))
	}
	if m.calls[4000] != rangeAttempts {
		t.Errorf("bad range tried %d times, want %d", m.calls[4000], rangeAttempts)
	}
}

func TestRangeReaderNotFoundIsNotRetried(t *testing.T) {
	m := newMem(3000)
	m.fault = func(off int64, _ int) (int, error) { return 0, fmt.Errorf("%w: gone", store.ErrNotFound) }
	r := NewReader(t.Context(), 3000, 1000, 1, m.fetch)
	defer r.Close()
	if _, err := io.ReadAll(r); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("err = %v, want store.ErrNotFound", err)
	}
	if m.calls[0] != 1 {
		t.Errorf("tried %d times", m.calls[0])
	}
}

func TestRangeReaderCancelIsNotEOF(t *testing.T) {
	m := newMem(100000)
	ctx, cancel := context.WithCancel(t.Context())
	r := NewReader(ctx, 100000, 1000, 2, m.fetch)
	defer r.Close()
	buf := make([]byte, 1500)
	if _, err := io.ReadFull(r, buf); err != nil {
		t.Fatal(err)
	}
	cancel()
	_, err := io.ReadAll(r)
	if err == nil {
		t.Fatal("a cancelled download ended like a complete one")
	}
}
