package archive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/snapshot-job/snapshot-job/internal/testenv"
)

func extractIndexed(t *testing.T, data []byte, dst string, patterns ...string) (Stats, Fetched, *bytesRanger, string, error) {
	t.Helper()
	r := &bytesRanger{b: data}
	ix, err := OpenIndex(t.Context(), r, int64(len(data)))
	if err != nil {
		t.Fatalf("OpenIndex: %v", err)
	}
	log, buf := logBuffer()
	st, f, err := ExtractIndexed(t.Context(), ix, dst, ExtractOptions{Token: "t1", Paths: mustPaths(t, patterns...), Logger: log, noSync: true})
	return st, f, r, buf.String(), err
}

// Through the index, a partial restore writes exactly what the streamed
// one does, except that a selected hard link whose target is not
// selected is written as a copy of the target rather than left out.
func TestExtractIndexedMatchesSubset(t *testing.T) {
	src := t.TempDir()
	testenv.MakeTree(t, src)
	data, _ := archiveOf(t, src, WriteOptions{})
	for _, patterns := range selections {
		t.Run(strings.Join(patterns, ","), func(t *testing.T) {
			p := mustPaths(t, patterns...)
			dst := filepath.Join(t.TempDir(), "restore")
			st, _, _, log, err := extractIndexed(t, data, dst, patterns...)
			if err != nil {
				t.Fatalf("ExtractIndexed: %v\n%s", err, log)
			}
			if strings.Contains(log, "left out") {
				t.Errorf("an entry was left out:\n%s", log)
			}
			want := expectedSubset(t, src, p)
			got := testenv.ReadTree(t, dst, nil)
			// A copy is a file of its own: compare it without its links.
			copies := map[string][]string{"node-1/**": {"node-1/capture-0001.pcap"}, "node-2": {"node-2/hardlink.pcap"}}[strings.Join(patterns, ",")]
			for _, c := range copies {
				w, g := want[c], got[c]
				if g.Type != "file" || w.Hash != g.Hash || w.Mode != g.Mode || w.MTime != g.MTime {
					t.Errorf("copy of a hard link %s: %+v, want the content, mode and time of %+v", c, g, w)
				}
				delete(want, c)
				delete(got, c)
			}
			if diff := testenv.SameTree(want, got); diff != "" {
				t.Fatalf("restored subset differs:\n%s", diff)
			}
			if st.Entries() == 0 {
				t.Errorf("stats %+v", st)
			}
			assertNoStaging(t, dst)
		})
	}
}

// largeFolders writes folders of files larger than a frame, of random
// (incompressible) content, so that each folder's share of the object is
// its share of the data.
func largeFolders(t *testing.T, src string, folders, files int, size int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	body := make([]byte, size)
	for d := range folders {
		dir := filepath.Join(src, fmt.Sprintf("node-%02d", d))
		if err := os.MkdirAll(filepath.Join(dir, "events"), 0o755); err != nil {
			t.Fatal(err)
		}
		for i := range 20 {
			if err := os.WriteFile(filepath.Join(dir, "events", fmt.Sprintf("e-%02d.json", i)), fmt.Appendf(nil, `{"node":%d,"event":%d}`, d, i), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		for i := range files {
			for j := range body {
				body[j] = byte(rng.Uint32())
			}
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("capture-%02d.pcap", i)), body, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// One folder of eight is fetched with one ranged read of its own frames:
// the large files have frames of their own, so nothing of the
// neighbouring folders comes along.
func TestExtractIndexedFetchesOnlyTheFolder(t *testing.T) {
	src := t.TempDir()
	largeFolders(t, src, 8, 2, 5<<20)
	data, _ := archiveOf(t, src, WriteOptions{Level: "fastest"})
	es, _, ix := indexOf(t, data)
	dst := filepath.Join(t.TempDir(), "restore")
	st, f, r, log, err := extractIndexed(t, data, dst, "node-03")
	if err != nil {
		t.Fatalf("ExtractIndexed: %v\n%s", err, log)
	}
	if st.Files != 22 {
		t.Errorf("restored %d files, want 22", st.Files)
	}
	if f.Ranges != 1 {
		t.Errorf("%d ranged reads of frames, want 1 (the folder's frames are adjacent)", f.Ranges)
	}
	// The folder's compressed share: the frames that hold only its
	// entries, from the seek table.
	var lo, hi int64 = -1, 0
	for _, e := range es {
		if e.Name == "node-03" || strings.HasPrefix(e.Name, "node-03/") {
			if lo < 0 {
				lo = e.HeaderOffset
			}
			hi = e.DataOffset + e.Size
		}
	}
	var share, tarOff int64
	for _, fr := range ix.frames {
		if tarOff < hi && tarOff+int64(fr.dsize) > lo {
			share += int64(fr.csize)
		}
		tarOff += int64(fr.dsize)
	}
	if f.Bytes != share {
		t.Errorf("fetched %d bytes of frames, want the folder's %d", f.Bytes, share)
	}
	// What the ranger served: the index's tail read, the index twice
	// (it lies in the tail here) and the folder's frames.
	if max := share + tailRead; r.bytes > max {
		t.Errorf("fetched %d bytes in all, more than the folder (%d) and the tail (%d)", r.bytes, share, tailRead)
	}
	if ratio := float64(r.bytes) / float64(len(data)); ratio > 0.15 {
		t.Errorf("fetched %.2f of the object for one folder of eight", ratio)
	}
	want := testenv.ReadTree(t, filepath.Join(src, "node-03"), nil)
	got := testenv.ReadTree(t, filepath.Join(dst, "node-03"), nil)
	if diff := testenv.SameTree(want, got); diff != "" {
		t.Fatalf("restored folder differs:\n%s", diff)
	}
}

// A selection that matches no entry of the index fails before any frame
// is fetched or anything is written.
func TestExtractIndexedNoMatch(t *testing.T) {
	src := t.TempDir()
	testenv.MakeTree(t, src)
	data, _ := archiveOf(t, src, WriteOptions{})
	dst := filepath.Join(t.TempDir(), "restore")
	_, f, _, _, err := extractIndexed(t, data, dst, "node-9/**", "*.missing")
	if !errors.Is(err, ErrNoMatch) || !strings.Contains(err.Error(), "node-9/**,*.missing") {
		t.Fatalf("err = %v, want ErrNoMatch naming the patterns", err)
	}
	if f != (Fetched{}) {
		t.Errorf("fetched %+v", f)
	}
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Errorf("the target was created: %v", err)
	}
}

// An index that lies about a selected entry (its checksum, its offset,
// its name) is corruption, and the target stays as it was.
func TestExtractIndexedRefusesLyingIndex(t *testing.T) {
	src := t.TempDir()
	testenv.MakeTree(t, src)
	data, _ := archiveOf(t, src, WriteOptions{})
	for name, mutate := range map[string]func(e *Entry){
		"checksum": func(e *Entry) { e.CRC32C ^= 1 },
		"offset":   func(e *Entry) { e.HeaderOffset += 512; e.DataOffset += 512 },
		"name":     func(e *Entry) { e.Name = "node-1/other.pcap" },
		"size":     func(e *Entry) { e.Size-- },
	} {
		t.Run(name, func(t *testing.T) {
			bad := withIndex(t, data, func(es []Entry) []Entry {
				for i := range es {
					if es[i].Name == "node-1/capture-0002.pcap" {
						mutate(&es[i])
					}
				}
				return es
			})
			dst := t.TempDir()
			keep := filepath.Join(dst, "keep.txt")
			if err := os.WriteFile(keep, []byte("mine"), 0o644); err != nil {
				t.Fatal(err)
			}
			r := &bytesRanger{b: bad}
			ix, err := OpenIndex(t.Context(), r, int64(len(bad)))
			if err != nil {
				t.Fatalf("OpenIndex: %v", err)
			}
			_, _, err = ExtractIndexed(t.Context(), ix, dst, ExtractOptions{Token: "t1", Overwrite: true, Paths: mustPaths(t, "node-1/*.pcap"), noSync: true})
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("err = %v, want ErrCorrupt", err)
			}
			got := testenv.ReadTree(t, dst, nil)
			if len(got) != 1 || got["keep.txt"].Size != 4 {
				t.Errorf("the target changed: %v", slices.Sorted(mapsKeys(got)))
			}
		})
	}
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// failingRanger fails every read of frames (those before the index)
// once armed.
type failingRanger struct {
	bytesRanger
	indexOff int64
	armed    bool
	err      error
}

func (r *failingRanger) ReadRange(ctx context.Context, off, n int64) (io.ReadCloser, error) {
	if r.armed && off < r.indexOff {
		return nil, r.err
	}
	return r.bytesRanger.ReadRange(ctx, off, n)
}

// The store's failure while frames are fetched is returned as it is (a
// transfer problem, not corruption), and nothing is written.
func TestExtractIndexedStoreFailure(t *testing.T) {
	src := t.TempDir()
	testenv.MakeTree(t, src)
	data, _ := archiveOf(t, src, WriteOptions{})
	_, _, plain := indexOf(t, data)
	failure := errors.New("connection reset by peer")
	r := &failingRanger{bytesRanger: bytesRanger{b: data}, indexOff: plain.indexOff, err: failure}
	ix, err := OpenIndex(t.Context(), r, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	r.armed = true
	dst := filepath.Join(t.TempDir(), "restore")
	_, _, err = ExtractIndexed(t.Context(), ix, dst, ExtractOptions{Token: "t1", Paths: mustPaths(t, "node-1"), noSync: true})
	if !errors.Is(err, failure) || errors.Is(err, ErrCorrupt) {
		t.Fatalf("err = %v, want the store's failure as it is", err)
	}
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Errorf("the target was created: %v", err)
	}
}

// A frame whose content was changed after it was written fails its zstd
// checksum: corruption, nothing written.
func TestExtractIndexedDamagedFrame(t *testing.T) {
	src := t.TempDir()
	testenv.MakeTree(t, src)
	data, _ := archiveOf(t, src, WriteOptions{})
	bad := bytes.Clone(data)
	// Flip a byte in the middle of the first frame's compressed bytes.
	bad[len(bad)/8] ^= 0x55
	dst := filepath.Join(t.TempDir(), "restore")
	_, _, _, _, err := extractIndexed(t, bad, dst, "**")
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("err = %v, want ErrCorrupt", err)
	}
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Errorf("the target was created: %v", err)
	}
}

// An encrypted snapshot's folder is restored through age's chunks: the
// folder's frames are fetched with one ranged read of their chunks,
// about the folder's share of the object and no more, and a changed
// chunk is corruption.
func TestExtractIndexedEncrypted(t *testing.T) {
	src := t.TempDir()
	largeFolders(t, src, 8, 2, 5<<20)
	data, _ := archiveOf(t, src, WriteOptions{Level: "fastest"})
	_, _, plainIx := indexOf(t, data)
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	var enc bytes.Buffer
	w, err := Encrypt(&enc, Recipients{id.Recipient()})
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	obj := enc.Bytes()
	open := func(t *testing.T, obj []byte) (*bytesRanger, *Index) {
		t.Helper()
		r := &bytesRanger{b: obj}
		plain, n, err := DecryptRanger(t.Context(), r, int64(len(obj)), Identities{id})
		if err != nil {
			t.Fatalf("DecryptRanger: %v", err)
		}
		if n != int64(len(data)) {
			t.Fatalf("plaintext of %d bytes, want %d", n, len(data))
		}
		ix, err := OpenIndex(t.Context(), plain, n)
		if err != nil {
			t.Fatalf("OpenIndex: %v", err)
		}
		return r, ix
	}
	r, ix := open(t, obj)
	if ix.Frames() != plainIx.Frames() {
		t.Fatalf("%d frames through age, %d plain", ix.Frames(), plainIx.Frames())
	}
	opened := r.bytes
	dst := filepath.Join(t.TempDir(), "restore")
	st, f, err := ExtractIndexed(t.Context(), ix, dst, ExtractOptions{Token: "t1", Paths: mustPaths(t, "node-05"), noSync: true})
	if err != nil {
		t.Fatalf("ExtractIndexed: %v", err)
	}
	if st.Files != 22 {
		t.Errorf("restored %d files, want 22", st.Files)
	}
	// The folder's frames, their chunks' tags and at most two chunks
	// more at the ends, and the index (read twice).
	share := float64(f.Bytes) * ageChunkEnc / ageChunk
	if fetched := float64(r.bytes - opened); fetched > 1.2*share {
		t.Errorf("fetched %.0f bytes for a folder of %d compressed bytes (%.2f×)", fetched, f.Bytes, fetched/float64(f.Bytes))
	}
	if reads := r.reads; reads > 12 {
		t.Errorf("%d ranged reads in all; want a few (the header, the tail, the index twice, the frames)", reads)
	}
	want := testenv.ReadTree(t, filepath.Join(src, "node-05"), nil)
	got := testenv.ReadTree(t, filepath.Join(dst, "node-05"), nil)
	if diff := testenv.SameTree(want, got); diff != "" {
		t.Fatalf("restored folder differs:\n%s", diff)
	}

	// One byte changed inside the folder's frames.
	bad := bytes.Clone(obj)
	bad[len(obj)*5/8+1000] ^= 1
	_, ix = open(t, bad)
	dst = filepath.Join(t.TempDir(), "restore")
	_, _, err = ExtractIndexed(t.Context(), ix, dst, ExtractOptions{Token: "t1", Paths: mustPaths(t, "node-05"), noSync: true})
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("changed chunk: %v, want ErrCorrupt", err)
	}
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Errorf("the target was created: %v", err)
	}
}
