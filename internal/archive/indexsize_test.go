package archive

import (
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/snapshot-job/snapshot-job/internal/testenv"
)

// The bytes an entry takes in the index a backup holds: what the memory
// plan counts (IndexBytesPerEntry) must cover the compressed records of
// realistic trees, with the bytes.Buffer holding them at up to twice
// their length. Only records are encoded: no disk, so a million entries
// take a second.
func TestIndexBytesPerEntry(t *testing.T) {
	short := func(i int, _ *rand.Rand) string { return fmt.Sprintf("d%03d/f%06d", i/1000, i) }
	events := func(i int, _ *rand.Rand) string {
		return fmt.Sprintf("node-%d/events-%03d/event-%06d.json", i%4, i/2000, i)
	}
	long := func(i int, rng *rand.Rand) string {
		b := make([]byte, 150)
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		return fmt.Sprintf("node-%d/very/long/directory/names/of/a/capture/tool/%s-%06d.pcap", i%4, base64.RawURLEncoding.EncodeToString(b), i)
	}
	cases := []struct {
		name  string
		n     int
		named func(int, *rand.Rand) string
		// beyond is what the case may hold past the plan's bound: names
		// of random bytes do not compress, and the plan knows no names.
		beyond float64
	}{
		{"a million short names", 1_000_000, short, 0},
		{"a million event files", 1_000_000, events, 0},
		{"100,000 names of 270 random bytes", 100_000, long, 270},
	}
	if testing.Short() {
		cases = cases[2:]
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(tc.n), 3))
			iw, err := newIndexWriter()
			if err != nil {
				t.Fatal(err)
			}
			base := time.Date(2026, 11, 26, 3, 0, 0, 0, time.UTC).Unix()
			var off int64
			for i := range tc.n {
				e := Entry{Name: tc.named(i, rng), Type: '0', Mode: 0o644, Size: 2<<10 + rng.Int64N(12<<10),
					ModTime: time.Unix(base+int64(i/10), rng.Int64N(1e9)), CRC32C: rng.Uint32()}
				e.HeaderOffset = off
				e.DataOffset = off + 1536 // PAX header block, its record, the header
				off = e.DataOffset + (e.Size+511)&^511
				iw.add(&e)
			}
			frame, err := iw.frame(off + 1024)
			if err != nil {
				t.Fatal(err)
			}
			held := float64(iw.buf.Cap()) / float64(tc.n)
			t.Logf("%d entries: %d bytes compressed, %.1f bytes an entry, %.1f held (buffer capacity)",
				tc.n, len(frame), float64(len(frame))/float64(tc.n), held)
			if held > IndexBytesPerEntry+tc.beyond {
				t.Errorf("the index holds %.1f bytes an entry, more than the %d the memory plan counts (+ %.0f)", held, IndexBytesPerEntry, tc.beyond)
			}
		})
	}
}

// The same on a real archive of the capture-like event files.
func TestIndexBytesPerEntryOnCaptures(t *testing.T) {
	src := t.TempDir()
	if _, err := testenv.GenerateEvents(src, 4000); err != nil {
		t.Fatal(err)
	}
	data, st := archiveOf(t, src, WriteOptions{})
	_, _, ix := indexOf(t, data)
	per := float64(ix.IndexSize()) / float64(st.Entries())
	t.Logf("%d entries: an index of %d bytes, %.1f bytes an entry", st.Entries(), ix.IndexSize(), per)
	if 2*per > IndexBytesPerEntry {
		t.Errorf("%.1f bytes an entry, held at up to twice that: more than the %d the memory plan counts", per, IndexBytesPerEntry)
	}
}
