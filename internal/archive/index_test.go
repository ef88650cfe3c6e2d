package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/snapshot-job/snapshot-job/internal/testenv"
)

// bytesRanger serves ranges of an object in memory and counts the reads
// and the bytes they fetched.
type bytesRanger struct {
	b            []byte
	reads, bytes int64
}

func (r *bytesRanger) ReadRange(_ context.Context, off, n int64) (io.ReadCloser, error) {
	r.reads++
	off = min(off, int64(len(r.b)))
	end := min(off+n, int64(len(r.b)))
	r.bytes += end - off
	return io.NopCloser(bytes.NewReader(r.b[off:end])), nil
}

func decompress(t *testing.T, data []byte) []byte {
	t.Helper()
	zr, err := zstd.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func indexOf(t *testing.T, data []byte) ([]Entry, *bytesRanger, *Index) {
	t.Helper()
	r := &bytesRanger{b: data}
	ix, err := OpenIndex(t.Context(), r, int64(len(data)))
	if err != nil {
		t.Fatalf("OpenIndex: %v", err)
	}
	var es []Entry
	if _, err := ix.Entries(t.Context(), func(e *Entry) error { es = append(es, *e); return nil }); err != nil {
		t.Fatalf("Entries: %v", err)
	}
	return es, r, ix
}

// Every entry of the index must be the tar stream's entry at its offset,
// with the content's CRC-32C.
func TestIndexMatchesTarStream(t *testing.T) {
	src := t.TempDir()
	testenv.MakeTree(t, src)
	data, st := archiveOf(t, src, WriteOptions{})
	tarStream := decompress(t, data)
	es, r, ix := indexOf(t, data)
	if int64(len(es)) != st.Entries() {
		t.Fatalf("index has %d entries, the archive %d", len(es), st.Entries())
	}
	if ix.TarSize() != int64(len(tarStream)) {
		t.Fatalf("seek table holds %d tar bytes, the stream has %d", ix.TarSize(), len(tarStream))
	}
	if r.reads > 3 {
		t.Errorf("OpenIndex and Entries took %d reads, want at most 3", r.reads)
	}
	tr := tar.NewReader(bytes.NewReader(tarStream))
	for i, e := range es {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		if strings.TrimSuffix(h.Name, "/") != e.Name || h.Typeflag != e.Type || h.Size != e.Size || h.Mode != e.Mode ||
			!h.ModTime.Equal(e.ModTime) || h.Linkname != e.Link || h.Uid != e.Uid || h.Gid != e.Gid {
			t.Errorf("entry %d: index %+v, tar %+v", i, e, h)
		}
		// The entry's header starts exactly at HeaderOffset.
		at := tar.NewReader(bytes.NewReader(tarStream[e.HeaderOffset:]))
		h2, err := at.Next()
		if err != nil || h2.Name != h.Name {
			t.Errorf("entry %s: no header at %d: %v", e.Name, e.HeaderOffset, err)
		}
		body, _ := io.ReadAll(tr)
		if !bytes.Equal(body, tarStream[e.DataOffset:e.DataOffset+e.Size]) {
			t.Errorf("entry %s: content is not at %d", e.Name, e.DataOffset)
		}
		if e.Type == tar.TypeReg && crc32.Checksum(body, castagnoli) != e.CRC32C {
			t.Errorf("entry %s: CRC-32C %08x, content has %08x", e.Name, e.CRC32C, crc32.Checksum(body, castagnoli))
		}
	}
	if _, err := tr.Next(); err != io.EOF {
		t.Errorf("tar stream has more entries than the index: %v", err)
	}
}

// Small files never straddle two frames; the frames stay near their size.
func TestFramesCutAtEntryBoundaries(t *testing.T) {
	src := t.TempDir()
	body := bytes.Repeat([]byte("x"), 300<<10) // 300 KiB: 13 fit in a 4 MiB frame
	for i := range 40 {
		name := filepath.Join(src, strings.Repeat("f", 1+i%7)+string(rune('a'+i%26))+string(rune('a'+i/26)))
		if err := os.WriteFile(name, body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data, _ := archiveOf(t, src, WriteOptions{})
	es, _, ix := indexOf(t, data)
	var starts []int64
	var off int64
	for _, f := range ix.frames {
		starts = append(starts, off)
		off += int64(f.dsize)
	}
	frameOf := func(o int64) int {
		i := 0
		for i+1 < len(starts) && starts[i+1] <= o {
			i++
		}
		return i
	}
	for _, e := range es {
		if e.Type == tar.TypeReg && frameOf(e.HeaderOffset) != frameOf(e.DataOffset+e.Size-1) {
			t.Errorf("%s (%d bytes) straddles frames %d and %d", e.Name, e.Size, frameOf(e.HeaderOffset), frameOf(e.DataOffset+e.Size-1))
		}
	}
	if len(ix.frames) != 4 {
		t.Errorf("%d frames for 40 files of 300 KiB, want 4 (13, 13, 13, 1 of them)", len(ix.frames))
	}
}

// Plain zstd and GNU tar restore the exact tree, with no extra file, from
// an object that carries the index and the seek table.
func TestIndexedObjectRestoredByStandardTools(t *testing.T) {
	for _, tool := range []string{"zstd", "tar"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	src := t.TempDir()
	testenv.MakeTree(t, src)
	data, _ := archiveOf(t, src, WriteOptions{})
	for name, script := range map[string]string{
		"zstd -d | tar -x": "zstd -dc | tar -xf - -C \"$1\"",
		"tar --zstd":       "tar --zstd -xf - -C \"$1\"",
	} {
		t.Run(name, func(t *testing.T) {
			dst := t.TempDir()
			cmd := exec.Command("sh", "-c", script, "sh", dst)
			cmd.Stdin = bytes.NewReader(data)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%s: %v\n%s", name, err, out)
			}
			testenv.CompareTrees(t, src, dst, nil)
		})
	}
}

func TestOpenIndexWithoutIndex(t *testing.T) {
	old := testenv.TarZst(t, testenv.File("a.pcap", "x"), testenv.Dir("d"))
	_, err := OpenIndex(t.Context(), &bytesRanger{b: old}, int64(len(old)))
	if !errors.Is(err, ErrNoIndex) {
		t.Fatalf("OpenIndex(no index): %v, want ErrNoIndex", err)
	}
}

// A seek table bigger than the first read takes a second read, the index
// a third: never more.
func TestOpenIndexReads(t *testing.T) {
	src := t.TempDir()
	for i := range 3000 {
		if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("%x", sha256.Sum256([]byte{byte(i), byte(i >> 8)}))), []byte{byte(i)}, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data, _ := archiveOf(t, src, WriteOptions{})
	es, r, ix := indexOf(t, data)
	if len(es) != 3000 {
		t.Fatalf("%d entries, want 3000", len(es))
	}
	if ix.IndexSize() < tailRead {
		t.Fatalf("index of %d bytes: the test wants one larger than the first read", ix.IndexSize())
	}
	if r.reads != 2 {
		t.Errorf("%d reads for an index of %d bytes, want 2 (tail, index)", r.reads, ix.IndexSize())
	}
	// A seek table of more than 64 KiB: simulate with many frames.
	frames := make([]seekEntry, 6000)
	for i := range frames {
		frames[i] = seekEntry{csize: 1, dsize: 1}
	}
	frames[len(frames)-1] = seekEntry{}
	obj := append(bytes.Repeat([]byte{0}, 5999), appendSeekTable(nil, frames)...)
	r = &bytesRanger{b: obj}
	if _, err := OpenIndex(t.Context(), r, int64(len(obj))); err != nil {
		t.Fatalf("OpenIndex(big table): %v", err)
	}
	if r.reads != 2 {
		t.Errorf("a %d-byte seek table took %d reads, want 2", len(obj), r.reads)
	}
}

// Damaged tails are corrupt, never a panic nor a huge allocation.
func TestOpenIndexDamaged(t *testing.T) {
	src := t.TempDir()
	testenv.MakeTree(t, src)
	data, _ := archiveOf(t, src, WriteOptions{})
	_, _, ix := indexOf(t, data)
	tableOff := ix.indexOff + ix.indexSize
	flip := func(at int64) []byte {
		b := bytes.Clone(data)
		b[at] ^= 0x40
		return b
	}
	cases := map[string][]byte{
		"frame count":        flip(int64(len(data)) - 9),
		"descriptor":         flip(int64(len(data)) - 5),
		"table magic":        flip(tableOff),
		"a frame size":       flip(tableOff + 8),
		"index magic":        flip(ix.indexOff),
		"index payload":      flip(ix.indexOff + ix.indexSize/2),
		"index end":          flip(ix.indexOff + ix.indexSize - 1),
		"truncated at start": data[1:],
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			ix, err := OpenIndex(t.Context(), &bytesRanger{b: b}, int64(len(b)))
			if err == nil {
				_, err = ix.Entries(t.Context(), func(*Entry) error { return nil })
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("err = %v, want ErrCorrupt", err)
			}
		})
	}
}

// FuzzOpenIndex feeds arbitrary object tails to OpenIndex and Entries:
// they must fail with ErrCorrupt or ErrNoIndex, never panic, never
// allocate by what a hostile size or count claims.
func FuzzOpenIndex(f *testing.F) {
	dir := f.TempDir()
	os.WriteFile(filepath.Join(dir, "a.pcap"), []byte("pcap"), 0o644)
	os.Mkdir(filepath.Join(dir, "d"), 0o755)
	os.Symlink("a.pcap", filepath.Join(dir, "d", "l"))
	var buf bytes.Buffer
	if _, err := Write(f.Context(), &buf, dir, WriteOptions{}); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add(appendSeekTable(nil, []seekEntry{{csize: 1 << 31, dsize: 1 << 31}, {csize: 10}}))
	f.Add(appendSeekTable(nil, nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		ix, err := OpenIndex(t.Context(), &bytesRanger{b: data}, int64(len(data)))
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrNoIndex) {
				t.Fatalf("OpenIndex: %v", err)
			}
			return
		}
		var last int64 = -1
		_, err = ix.Entries(t.Context(), func(e *Entry) error {
			if e.HeaderOffset <= last || e.DataOffset+e.Size > ix.TarSize() {
				t.Fatalf("entry %q at %d/%d passed the checks (previous at %d, stream %d)", e.Name, e.HeaderOffset, e.DataOffset, last, ix.TarSize())
			}
			last = e.HeaderOffset
			return nil
		})
		if err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Entries: %v", err)
		}
	})
}

// FuzzIndexRecords feeds arbitrary records (compressed here, so that the
// fuzzer works on the records rather than on zstd's framing) to the index
// parser: ErrCorrupt or success, never a panic, never an allocation by a
// hostile length.
func FuzzIndexRecords(f *testing.F) {
	iw, _ := newIndexWriter()
	iw.add(&Entry{Name: "node-1", Type: tar.TypeDir, Mode: 0o755, HeaderOffset: 0, DataOffset: 512})
	iw.add(&Entry{Name: "node-1/a.pcap", Type: tar.TypeReg, Mode: 0o644, Size: 5, HeaderOffset: 512, DataOffset: 1536, CRC32C: 7})
	frame, _ := iw.frame(4096)
	zr, _ := zstd.NewReader(bytes.NewReader(frame[skippableHdrSize+len(indexMagic):]))
	seed, _ := io.ReadAll(zr)
	zr.Close()
	f.Add(seed, int64(4096))
	f.Add([]byte{0, 0xff, 0xff, 0xff, 0xff, 0x0f, 0}, int64(1024))
	f.Add([]byte{'0', 0xff, 0xff, 0xff, 0xff, 0x0f}, int64(1<<40))
	f.Fuzz(func(t *testing.T, records []byte, tarSize int64) {
		payload := fuzzEncoder.EncodeAll(records, nil)
		obj := binary.LittleEndian.AppendUint32(nil, indexFrameMagic)
		obj = binary.LittleEndian.AppendUint32(obj, uint32(len(indexMagic)+len(payload)))
		obj = append(append(obj, indexMagic...), payload...)
		_, err := readIndex(bytes.NewReader(obj), int64(len(obj)), tarSize, func(e *Entry) error {
			if e.DataOffset+e.Size > tarSize || len(e.Name) > MaxNameLength {
				t.Fatalf("entry %q passed the checks", e.Name)
			}
			return nil
		})
		if err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("readIndex: %v", err)
		}
	})
}
