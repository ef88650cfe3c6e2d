package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/snapshot-job/snapshot-job/internal/store"
)

// Harness describes the provider under test.
type Harness struct {
	// New returns a store ready for use. Tests keep to their own key
	// prefixes, so New may hand out the same empty bucket every time.
	New func(t *testing.T) store.Store
	// PartSize is the part or block size New configures. Some objects are
	// made a few parts long so that part boundaries are crossed.
	PartSize int64
	// Leftovers lists what a failed Put may have left under prefix that
	// List does not show (open multipart uploads, temporary files). Nil
	// when the provider has no such thing.
	Leftovers func(t *testing.T, s store.Store, prefix string) []string
}

// Run runs every conformance test against the harness.
func Run(t *testing.T, h Harness) {
	tests := []struct {
		name string
		fn   func(*testing.T, Harness)
	}{
		{"Check", testCheck},
		{"RoundTrip", testRoundTrip},
		{"NeverOverwrites", testNeverOverwrites},
		{"GetMissing", testGetMissing},
		{"ListUnderPrefix", testListUnderPrefix},
		{"Delete", testDelete},
		{"FailedReaderLeavesNothing", testFailedReader},
		{"CancelLeavesNothing", testCancel},
		{"PartialReadThenClose", testPartialRead},
		{"PlannedPut", testPlannedPut},
		{"GetRange", testGetRange},
		{"GetRangeMissing", testGetRangeMissing},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, h) })
	}
}

// Payload returns n deterministic bytes that do not compress (so stores
// that compress cannot hide a wrong length).
func Payload(n int64, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func prefixFor(t *testing.T) string {
	return fmt.Sprintf("conformance/%s-%d/", sanitize(t.Name()), rand.Uint32())
}

func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			b[i] = '-'
		}
	}
	return string(b)
}

func put(t *testing.T, s store.Store, key string, data []byte) {
	t.Helper()
	n, err := s.Put(t.Context(), key, bytes.NewReader(data), store.PutOptions{SizeHint: int64(len(data)), Metadata: map[string]string{"source-bytes": fmt.Sprint(len(data))}})
	if err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
	if n != int64(len(data)) {
		t.Fatalf("Put(%q) stored %d bytes, want %d", key, n, len(data))
	}
}

// Get reads key whole and fails t unless the size and key the store
// reported match what was read.
func Get(t testing.TB, s store.Store, key string) []byte {
	t.Helper()
	rc, obj, err := s.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("reading %q: %v", key, err)
	}
	if obj.Size != int64(len(data)) {
		t.Fatalf("Get(%q) reported size %d, read %d bytes", key, obj.Size, len(data))
	}
	if obj.Key != key {
		t.Fatalf("Get(%q) reported key %q", key, obj.Key)
	}
	return data
}

func keys(t *testing.T, s store.Store, prefix string) []string {
	t.Helper()
	objs, err := s.List(t.Context(), prefix)
	if err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	var ks []string
	for _, o := range objs {
		ks = append(ks, o.Key)
	}
	slices.Sort(ks)
	return ks
}

func assertEmpty(t *testing.T, h Harness, s store.Store, prefix string) {
	t.Helper()
	if ks := keys(t, s, prefix); len(ks) != 0 {
		t.Errorf("objects left under %q: %q", prefix, ks)
	}
	if h.Leftovers != nil {
		if l := h.Leftovers(t, s, prefix); len(l) != 0 {
			t.Errorf("leftovers under %q: %q", prefix, l)
		}
	}
}

func testCheck(t *testing.T, h Harness) {
	s := h.New(t)
	for _, a := range []store.Access{store.Read, store.Write} {
		if err := s.Check(t.Context(), a); err != nil {
			t.Fatalf("Check(%s): %v", a, err)
		}
	}
	assertEmpty(t, h, s, "")
}

// testPlannedPut stores with the parts in flight and the part size a
// memory plan sets, which override the store's own.
func testPlannedPut(t *testing.T, h Harness) {
	s := h.New(t)
	p := prefixFor(t)
	for i, o := range []store.PutOptions{
		{Concurrency: 1},
		{Concurrency: 1, PartSize: 2 * h.PartSize},
		{Concurrency: 3, PartSize: h.PartSize},
	} {
		key := fmt.Sprintf("%splanned-%d.tar.zst", p, i)
		want := Payload(5*h.PartSize+17, uint64(10+i))
		o.SizeHint = int64(len(want))
		n, err := s.Put(t.Context(), key, bytes.NewReader(want), o)
		if err != nil || n != int64(len(want)) {
			t.Fatalf("Put(%+v) = %d, %v", o, n, err)
		}
		if got := Get(t, s, key); !bytes.Equal(got, want) {
			t.Fatalf("Put(%+v): read back differs", o)
		}
	}
}

func testRoundTrip(t *testing.T, h Harness) {
	s := h.New(t)
	p := prefixFor(t)
	sizes := []int64{0, 1, 4096, h.PartSize - 1, h.PartSize, h.PartSize + 1, 2*h.PartSize + 12345}
	for i, n := range sizes {
		key := fmt.Sprintf("%sobj-%d.tar.zst", p, i)
		want := Payload(n, uint64(i))
		put(t, s, key, want)
		if got := Get(t, s, key); !bytes.Equal(got, want) {
			t.Errorf("%s: read back %d bytes that differ from the %d stored", key, len(got), n)
		}
	}
	objs, err := s.List(t.Context(), p)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != len(sizes) {
		t.Fatalf("List found %d objects, want %d", len(objs), len(sizes))
	}
	for _, o := range objs {
		var i int
		if _, err := fmt.Sscanf(o.Key[len(p):], "obj-%d.tar.zst", &i); err != nil {
			t.Fatalf("unexpected key %q", o.Key)
		}
		if o.Size != sizes[i] {
			t.Errorf("List: %s has size %d, want %d", o.Key, o.Size, sizes[i])
		}
		if o.Modified.IsZero() {
			t.Errorf("List: %s has no modification time", o.Key)
		}
	}
}

func testNeverOverwrites(t *testing.T, h Harness) {
	s := h.New(t)
	key := prefixFor(t) + "snap.tar.zst"
	first := Payload(1000, 1)
	put(t, s, key, first)
	_, err := s.Put(t.Context(), key, bytes.NewReader(Payload(2*h.PartSize, 2)), store.PutOptions{SizeHint: 2 * h.PartSize})
	if !errors.Is(err, store.ErrExists) {
		t.Fatalf("second Put: err = %v, want ErrExists", err)
	}
	if got := Get(t, s, key); !bytes.Equal(got, first) {
		t.Fatalf("existing object changed by a refused Put")
	}
}

func testGetMissing(t *testing.T, h Harness) {
	s := h.New(t)
	_, _, err := s.Get(t.Context(), prefixFor(t)+"missing.tar.zst")
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get(missing): err = %v, want ErrNotFound", err)
	}
}

func testListUnderPrefix(t *testing.T, h Harness) {
	s := h.New(t)
	base := prefixFor(t)
	for _, k := range []string{"snaps/a", "snaps/b/c", "snaps2/x", "snapsx", "other/snaps/y"} {
		put(t, s, base+k, []byte(k))
	}
	want := []string{base + "snaps/a", base + "snaps/b/c"}
	if got := keys(t, s, base+"snaps/"); !slices.Equal(got, want) {
		t.Fatalf("List(snaps/) = %q, want %q", got, want)
	}
	if got := keys(t, s, base+"none/"); len(got) != 0 {
		t.Fatalf("List(none/) = %q, want nothing", got)
	}
	if got := keys(t, s, base); len(got) != 5 {
		t.Fatalf("List(base) = %q, want 5 keys", got)
	}
}

func testDelete(t *testing.T, h Harness) {
	s := h.New(t)
	p := prefixFor(t)
	for _, k := range []string{"a", "b", "c", "d/e"} {
		put(t, s, p+k, []byte(k))
	}
	if err := s.Delete(t.Context(), []string{p + "a", p + "d/e", p + "missing"}); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if got, want := keys(t, s, p), []string{p + "b", p + "c"}; !slices.Equal(got, want) {
		t.Fatalf("after Delete: %q, want %q", got, want)
	}
	if err := s.Delete(t.Context(), nil); err != nil {
		t.Fatalf("Delete(nothing): %v", err)
	}
}

// failingReader returns good data up to fail bytes, then an error.
type failingReader struct {
	r    io.Reader
	left int64
	err  error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.left <= 0 {
		return 0, f.err
	}
	if int64(len(p)) > f.left {
		p = p[:f.left]
	}
	n, err := f.r.Read(p)
	f.left -= int64(n)
	return n, err
}

var errSource = errors.New("source went away")

func testFailedReader(t *testing.T, h Harness) {
	s := h.New(t)
	p := prefixFor(t)
	for _, at := range []int64{0, 100, h.PartSize + 7, 3 * h.PartSize} {
		key := fmt.Sprintf("%sfail-at-%d.tar.zst", p, at)
		r := &failingReader{r: bytes.NewReader(Payload(4*h.PartSize, 3)), left: at, err: errSource}
		_, err := s.Put(t.Context(), key, r, store.PutOptions{SizeHint: 4 * h.PartSize})
		if !errors.Is(err, errSource) {
			t.Errorf("Put failing at %d: err = %v, want it to wrap the reader's error", at, err)
		}
	}
	assertEmpty(t, h, s, p)
}

// cancelReader cancels the Put's context after at bytes, then keeps
// supplying data as a live archive would.
type cancelReader struct {
	r      io.Reader
	at     int64
	cancel context.CancelFunc
}

func (c *cancelReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.at -= int64(n)
	if c.at <= 0 {
		c.cancel()
	}
	return n, err
}

func testCancel(t *testing.T, h Harness) {
	s := h.New(t)
	p := prefixFor(t)
	for _, at := range []int64{1, 2*h.PartSize + 1} {
		ctx, cancel := context.WithCancel(t.Context())
		key := fmt.Sprintf("%scancel-at-%d.tar.zst", p, at)
		r := &cancelReader{r: bytes.NewReader(Payload(4*h.PartSize, 4)), at: at, cancel: cancel}
		_, err := s.Put(ctx, key, r, store.PutOptions{SizeHint: 4 * h.PartSize})
		cancel()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled Put: err = %v, want context.Canceled", err)
		}
	}
	assertEmpty(t, h, s, p)
}

func testPartialRead(t *testing.T, h Harness) {
	s := h.New(t)
	key := prefixFor(t) + "big.tar.zst"
	want := Payload(3*h.PartSize+5, 5)
	put(t, s, key, want)
	rc, obj, err := s.Get(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	if obj.Size != int64(len(want)) {
		t.Fatalf("Get size = %d, want %d", obj.Size, len(want))
	}
	head := make([]byte, 1000)
	if _, err := io.ReadFull(rc, head); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(head, want[:1000]) {
		t.Fatal("first bytes differ")
	}
	if err := rc.Close(); err != nil {
		t.Fatalf("Close after partial read: %v", err)
	}
}

func testGetRange(t *testing.T, h Harness) {
	s := h.New(t)
	key := prefixFor(t) + "ranged.tar.zst"
	size := 2*h.PartSize + 77
	want := Payload(size, 9)
	put(t, s, key, want)
	mid := h.PartSize - 10 // crosses a part boundary
	cases := []struct {
		name     string
		off, n   int64
		from, to int64 // expected bytes want[from:to]
	}{
		{"start", 0, 100, 0, 100},
		{"middle", mid, 1000, mid, mid + 1000},
		{"end", size - 300, 300, size - 300, size},
		{"whole", 0, size, 0, size},
		{"partly past the end", size - 50, 1000, size - 50, size},
		{"at the end", size, 10, 0, 0},
		{"past the end", size + 4096, 10, 0, 0},
		{"zero length", 10, 0, 0, 0},
		{"zero length past the end", size + 1, 0, 0, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rc, err := s.GetRange(t.Context(), key, tc.off, tc.n)
			if err != nil {
				t.Fatalf("GetRange(%d, %d): %v", tc.off, tc.n, err)
			}
			got, err := io.ReadAll(rc)
			if err != nil {
				t.Fatalf("GetRange(%d, %d): reading: %v", tc.off, tc.n, err)
			}
			if err := rc.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if !bytes.Equal(got, want[tc.from:tc.to]) {
				t.Fatalf("GetRange(%d, %d) = %d bytes, want %d bytes (want[%d:%d])", tc.off, tc.n, len(got), tc.to-tc.from, tc.from, tc.to)
			}
		})
	}
	t.Run("negative", func(t *testing.T) {
		if rc, err := s.GetRange(t.Context(), key, -1, 10); err == nil {
			rc.Close()
			t.Fatal("GetRange(-1, 10) did not fail")
		}
	})
	t.Run("partial read then close", func(t *testing.T) {
		rc, err := s.GetRange(t.Context(), key, 5, size-5)
		if err != nil {
			t.Fatal(err)
		}
		head := make([]byte, 10)
		if _, err := io.ReadFull(rc, head); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(head, want[5:15]) {
			t.Fatal("first bytes differ")
		}
		if err := rc.Close(); err != nil {
			t.Fatalf("Close after partial read: %v", err)
		}
	})
}

func testGetRangeMissing(t *testing.T, h Harness) {
	s := h.New(t)
	key := prefixFor(t) + "missing.tar.zst"
	for _, r := range [][2]int64{{0, 10}, {100, 0}, {1 << 40, 10}} {
		rc, err := s.GetRange(t.Context(), key, r[0], r[1])
		if err == nil {
			rc.Close()
		}
		if !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetRange(missing, %d, %d): err = %v, want ErrNotFound", r[0], r[1], err)
		}
	}
}
