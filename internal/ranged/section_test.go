package ranged

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"testing"

	"github.com/snapshot-job/snapshot-job/internal/store"
)

// cutBody hands out at most limit bytes, then fails as a dropped
// connection does.
type cutBody struct {
	r     io.Reader
	limit int
}

func (c *cutBody) Read(p []byte) (int, error) {
	if c.limit == 0 {
		return 0, io.ErrUnexpectedEOF
	}
	p = p[:min(len(p), c.limit)]
	n, err := c.r.Read(p)
	c.limit -= n
	return n, err
}

func TestSectionResumesCutBodies(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 1000)
	var offs []int64
	fetch := func(_ context.Context, off, n int64) (io.ReadCloser, error) {
		offs = append(offs, off)
		return io.NopCloser(&cutBody{r: bytes.NewReader(data[off : off+n]), limit: 3000}), nil
	}
	rc, err := Section(t.Context(), 100, 8000, fetch)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data[100:8100]) {
		t.Fatalf("got %d bytes, want the 8000 from 100", len(got))
	}
	if want := []int64{100, 3100, 6100}; !slices.Equal(offs, want) {
		t.Fatalf("fetched from %v, want %v", offs, want)
	}
}

func TestSectionGivesUpWithoutProgress(t *testing.T) {
	fetch := func(_ context.Context, off, n int64) (io.ReadCloser, error) {
		return io.NopCloser(&cutBody{r: bytes.NewReader(make([]byte, n)), limit: 0}), nil
	}
	rc, err := Section(t.Context(), 0, 10, fetch)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(rc)
	if !errors.Is(err, store.ErrTransfer) {
		t.Fatalf("err = %v, want ErrTransfer", err)
	}
}
