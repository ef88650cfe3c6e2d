package archive

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
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

// withTable rebuilds an indexed object with the data frames' seek table
// entries mutate makes of them; the index frame and everything before it
// are unchanged.
func withTable(t *testing.T, data []byte, mutate func([]seekEntry) []seekEntry) []byte {
	t.Helper()
	_, _, ix := indexOf(t, data)
	end := ix.indexOff + ix.indexSize
	table := append(mutate(slices.Clone(ix.frames)), seekEntry{csize: uint32(ix.indexSize)})
	return appendSeekTable(bytes.Clone(data[:end]), table)
}

// Every seek table entry must be the frame at its position. The entries
// are changed in pairs that keep the sums, so that only the comparison
// with the frames themselves can tell.
func TestVerifyAgainstSeekTable(t *testing.T) {
	src := t.TempDir()
	testenv.MakeTree(t, src)
	data, _ := archiveOf(t, src, WriteOptions{})
	_, _, ix := indexOf(t, data)
	n := ix.Frames()
	if n < 3 {
		t.Fatalf("%d data frames: the test wants several", n)
	}
	if err := verifyIndexedObject(t, withTable(t, data, func(fs []seekEntry) []seekEntry { return fs })); err != nil {
		t.Fatalf("Verify(rebuilt, unchanged): %v", err)
	}
	cases := map[string]struct {
		mutate func([]seekEntry) []seekEntry
		want   string
	}{
		"csize": {func(fs []seekEntry) []seekEntry { fs[0].csize++; fs[1].csize--; return fs },
			fmt.Sprintf("seek table: frame 0: the table says compressed size %d, the stream %d", ix.frames[0].csize+1, ix.frames[0].csize)},
		"dsize": {func(fs []seekEntry) []seekEntry { fs[1].dsize--; fs[2].dsize++; return fs },
			fmt.Sprintf("seek table: frame 1: the table says decompressed size %d, the stream %d", ix.frames[1].dsize-1, ix.frames[1].dsize)},
		"checksum": {func(fs []seekEntry) []seekEntry { fs[2].sum ^= 1; return fs },
			fmt.Sprintf("seek table: frame 2: the table says checksum %08x, the stream %08x", ix.frames[2].sum^1, ix.frames[2].sum)},
		"fewer frames": {func(fs []seekEntry) []seekEntry {
			fs[0].csize += fs[1].csize
			fs[0].dsize += fs[1].dsize
			return slices.Delete(fs, 1, 2)
		}, "seek table: frame 0: the table says compressed size"},
		"more frames": {func(fs []seekEntry) []seekEntry {
			half := seekEntry{csize: fs[1].csize / 2, dsize: fs[1].dsize / 2}
			fs[1].csize -= half.csize
			fs[1].dsize -= half.dsize
			return slices.Insert(fs, 2, half)
		}, "seek table: frame 1: the table says compressed size"},
		// Sums that no longer add up are OpenIndex's to catch.
		"csize alone": {func(fs []seekEntry) []seekEntry { fs[0].csize++; return fs }, "seek table: its frames take"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			err := verifyIndexedObject(t, withTable(t, data, tc.mutate))
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Verify(seek table with %s) = %v, want ErrCorrupt naming %q", name, err, tc.want)
			}
		})
	}
}

// A table whose count differs while every frame it lists matches: the
// index frame then lies elsewhere than OpenIndex computes, so the index
// itself would fail to parse first; the counts are checked here on an
// Index that keeps the index frame's place.
func TestSeekTableFrameCount(t *testing.T) {
	src := t.TempDir()
	testenv.MakeTree(t, src)
	data, _ := archiveOf(t, src, WriteOptions{})
	cases := map[string]struct {
		mutate func([]seekEntry) []seekEntry
		want   string
	}{
		"one fewer": {func(fs []seekEntry) []seekEntry { return fs[:len(fs)-1] }, "seek table: frame %[1]d: the stream holds a data frame the table does not list (it lists %[1]d)"},
		"one more": {func(fs []seekEntry) []seekEntry { return append(fs, seekEntry{csize: 1, dsize: 1}) },
			"seek table: frame %[2]d: the stream holds the index frame, the table data frame %[2]d (it lists %[3]d)"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, r, ix := indexOf(t, data)
			n := len(ix.frames)
			ix.frames = tc.mutate(ix.frames)
			_, err := Verify(t.Context(), bytes.NewReader(r.b), VerifyOptions{Index: ix})
			want := fmt.Sprintf(tc.want, n-1, n, n+1)
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), want) {
				t.Fatalf("Verify(%s) = %v, want ErrCorrupt naming %q", name, err, want)
			}
		})
	}
}
