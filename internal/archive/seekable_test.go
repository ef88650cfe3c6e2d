package archive

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"

	seekable "github.com/SaveTheRbtz/zstd-seekable-format-go/pkg"
	"github.com/klauspost/compress/zstd"

	"github.com/snapshot-job/snapshot-job/internal/testenv"
)

// An independent implementation of the zstd seekable format must read
// the object at random offsets: the seek table is the spec's.
func TestSeekableFormatReader(t *testing.T) {
	src := t.TempDir()
	testenv.MakeTree(t, src)
	data, _ := archiveOf(t, src, WriteOptions{})
	want := decompress(t, data)
	if _, _, ix := indexOf(t, data); ix.Frames() < 3 {
		t.Fatalf("%d data frames: the test wants several", ix.Frames())
	}
	dec, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	r, err := seekable.NewReader(bytes.NewReader(data), dec)
	if err != nil {
		t.Fatalf("seekable.NewReader: %v", err)
	}
	defer r.Close()
	if end, err := r.Seek(0, io.SeekEnd); err != nil || end != int64(len(want)) {
		t.Fatalf("Seek(end) = %d, %v; want %d", end, err, len(want))
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		off := rnd.Int64N(int64(len(want)))
		n := min(rnd.Int64N(1<<20), int64(len(want))-off)
		got := make([]byte, n)
		if _, err := r.ReadAt(got, off); err != nil && err != io.EOF {
			t.Fatalf("ReadAt(%d, %d): %v", off, n, err)
		}
		if !bytes.Equal(got, want[off:off+n]) {
			t.Fatalf("ReadAt(%d, %d) differs from the tar stream", off, n)
		}
	}
}
