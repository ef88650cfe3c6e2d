package archive

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/snapshot-job/snapshot-job/internal/testenv"
)

// withIndex rebuilds an indexed object with the entries mutate makes of
// its index: a well-formed index that lies.
func withIndex(t *testing.T, data []byte, mutate func([]Entry) []Entry) []byte {
	t.Helper()
	es, _, ix := indexOf(t, data)
	iw, err := newIndexWriter()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range mutate(es) {
		iw.add(&e)
	}
	frame, err := iw.frame(ix.TarSize())
	if err != nil {
		t.Fatal(err)
	}
	out := bytes.Clone(data[:ix.indexOff])
	out = append(out, frame...)
	table := append(ix.frames[:len(ix.frames):len(ix.frames)], seekEntry{csize: uint32(len(frame))})
	return appendSeekTable(out, table)
}

func verifyIndexedObject(t *testing.T, data []byte) error {
	t.Helper()
	ix, err := OpenIndex(t.Context(), &bytesRanger{b: data}, int64(len(data)))
	if err != nil {
		return err
	}
	_, err = Verify(t.Context(), bytes.NewReader(data), VerifyOptions{Index: ix})
	return err
}

func TestVerifyAgainstIndex(t *testing.T) {
	src := t.TempDir()
	testenv.MakeTree(t, src)
	data, _ := archiveOf(t, src, WriteOptions{})
	if err := verifyIndexedObject(t, data); err != nil {
		t.Fatalf("Verify(indexed): %v", err)
	}
	// The rebuild itself must not be what fails.
	if err := verifyIndexedObject(t, withIndex(t, data, func(es []Entry) []Entry { return es })); err != nil {
		t.Fatalf("Verify(rebuilt, unchanged): %v", err)
	}
	firstFile := func(es []Entry) int {
		for i, e := range es {
			if e.Type == '0' && e.Size > 0 {
				return i
			}
		}
		t.Fatal("no regular file")
		return 0
	}
	cases := map[string]struct {
		mutate func([]Entry) []Entry
		want   string
	}{
		"crc":     {func(es []Entry) []Entry { es[firstFile(es)].CRC32C ^= 1; return es }, "CRC-32C"},
		"size":    {func(es []Entry) []Entry { i := firstFile(es); es[i].Size--; return es }, "size"},
		"name":    {func(es []Entry) []Entry { es[1].Name += "x"; return es }, "name"},
		"mode":    {func(es []Entry) []Entry { es[1].Mode ^= 0o100; return es }, "mode"},
		"offset":  {func(es []Entry) []Entry { es[2].DataOffset += 512; es[2].HeaderOffset += 512; return es }, "offsets"},
		"dropped": {func(es []Entry) []Entry { return es[:len(es)-1] }, "does not list"},
		"extra": {func(es []Entry) []Entry {
			e := es[len(es)-1]
			e.Name += "-extra"
			e.HeaderOffset, e.DataOffset = e.DataOffset+e.Size+512, e.DataOffset+e.Size+1024
			e.Size = 0
			return append(es, e)
		}, "past the end"}, // caught by the index's own bounds
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			err := verifyIndexedObject(t, withIndex(t, data, tc.mutate))
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Verify(index with a changed %s) = %v, want ErrCorrupt naming %q", name, err, tc.want)
			}
		})
	}
}
