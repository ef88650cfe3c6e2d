package archive

import (
	"bytes"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/snapshot-job/snapshot-job/internal/testenv"
)

// framesOf compresses data as independent frames of size bytes, as
// Write does (each with its content size and checksum).
func framesOf(t *testing.T, data []byte, size int) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderCRC(true), zstd.WithEncoderLevel(zstd.SpeedFastest))
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	var out []byte
	for len(data) > 0 {
		n := min(size, len(data))
		out = enc.EncodeAll(data[:n], out)
		data = data[n:]
	}
	return out
}

func decodeAll(workers int, in []byte) ([]byte, error) {
	d, err := newFrameDecoder(bytes.NewReader(in), workers)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return io.ReadAll(d)
}

func sampleData(n int) []byte {
	rng := rand.New(rand.NewPCG(3, 4))
	b := make([]byte, n)
	for i := range b {
		if i%3 == 0 {
			b[i] = byte(rng.Uint32())
		} else {
			b[i] = byte(i / 1000)
		}
	}
	return b
}

func TestFrameDecoderInOrder(t *testing.T) {
	data := sampleData(9<<20 + 12345)
	streamed := func() []byte { // one frame without a content size
		var buf bytes.Buffer
		w, _ := zstd.NewWriter(&buf, zstd.WithEncoderCRC(true))
		w.Write(data[:3<<20])
		w.Close()
		return buf.Bytes()
	}()
	seek := testenv.SkippableFrame([]byte("seek table"))
	for name, tc := range map[string]struct {
		in   []byte
		want []byte
	}{
		"1 MiB frames":               {framesOf(t, data, 1<<20), data},
		"tiny frames":                {framesOf(t, data[:1<<20], 4096), data[:1<<20]},
		"8 MiB frames":               {framesOf(t, data, 8<<20), data},
		"skippable frames between":   {slices.Concat(seek, framesOf(t, data[:1<<20], 300_000), seek, framesOf(t, data[1<<20:2<<20], 1<<19), seek), data[:2<<20]},
		"frames of 16 MiB: streamed": {framesOf(t, slices.Concat(data, data), 16<<20), slices.Concat(data, data)},
		"no content size: streamed":  {slices.Concat(framesOf(t, data[:1<<20], 1<<19), streamed, framesOf(t, data[:1<<20], 1<<19)), slices.Concat(data[:1<<20], data[:3<<20], data[:1<<20])},
		"empty":                      {nil, nil},
	} {
		for _, workers := range []int{1, 2, 4} {
			got, err := decodeAll(workers, tc.in)
			if err != nil || !bytes.Equal(got, tc.want) {
				t.Errorf("%s, %d workers: %d bytes, %v; want %d bytes", name, workers, len(got), err, len(tc.want))
			}
		}
	}
}

func TestFrameDecoderRefuses(t *testing.T) {
	data := sampleData(3 << 20)
	good := framesOf(t, data, 1<<20)
	flip := slices.Clone(good)
	flip[len(flip)/2] ^= 0x40
	badSum := framesOf(t, data[:1<<20], 1<<20)
	badSum[len(badSum)-1] ^= 1 // the content checksum
	huge := framesOf(t, data[:1000], 1<<20)
	// Claim 1 TiB of content: 8-byte frame content size field.
	// The same blocks behind a header with a window and an 8-byte size.
	huge = slices.Concat([]byte{0x28, 0xB5, 0x2F, 0xFD, 0xC4, 0x50}, binary.LittleEndian.AppendUint64(nil, 1<<40), huge[5+frameHeaderRest(huge[4]):])
	if declaredSize(huge) != 1<<40 {
		t.Fatalf("declared size %d", declaredSize(huge))
	}
	for name, in := range map[string][]byte{
		"truncated inside a frame":  good[:len(good)-10],
		"truncated inside a header": slices.Concat(good, good[:3]),
		"garbage between frames":    slices.Concat(good[:len(good)/3], []byte("garbage!"), good[len(good)/3:]),
		"garbage after the frames":  slices.Concat(good, []byte("garbage!")),
		"a flipped bit":             flip,
		"a wrong checksum":          badSum,
		"a huge declared size":      huge,
		"a cut skippable frame":     slices.Concat(good, testenv.SkippableFrame(make([]byte, 100))[:50]),
	} {
		for _, workers := range []int{1, 2} {
			if got, err := decodeAll(workers, in); err == nil {
				t.Errorf("%s, %d workers: decoded %d bytes without error", name, workers, len(got))
			}
		}
	}
}

// A source failure reaches the reader as it is: it is the store's, not
// corruption.
func TestFrameDecoderKeepsSourceErrors(t *testing.T) {
	good := framesOf(t, sampleData(2<<20), 1<<20)
	boom := io.ErrClosedPipe
	r := io.MultiReader(bytes.NewReader(good[:len(good)/2]), iotestErr{boom})
	d, _ := newFrameDecoder(r, 2)
	defer d.Close()
	if _, err := io.ReadAll(d); err != boom {
		t.Fatalf("err = %v, want the source's %v", err, boom)
	}
}

type iotestErr struct{ err error }

func (e iotestErr) Read([]byte) (int, error) { return 0, e.err }

// Restore and verify decode the same with one worker and with many.
func TestRestoreWithWorkers(t *testing.T) {
	src := t.TempDir()
	testenv.MakeTree(t, src)
	data, _ := archiveOf(t, src, WriteOptions{})
	for _, workers := range []int{1, 3} {
		if _, err := Verify(t.Context(), bytes.NewReader(data), VerifyOptions{Concurrency: workers}); err != nil {
			t.Fatalf("%d workers: Verify: %v", workers, err)
		}
		dst := t.TempDir() + "/restore"
		if _, err := Extract(t.Context(), bytes.NewReader(data), dst, ExtractOptions{Token: "t1", Concurrency: workers, noSync: true}); err != nil {
			t.Fatalf("%d workers: Extract: %v", workers, err)
		}
		testenv.CompareTrees(t, src, dst, nil)
	}
}

// The parallel decoder agrees with klauspost's streaming decoder on any
// input: what one decodes, the other decodes to the same bytes.
func FuzzFrameDecoder(f *testing.F) {
	f.Add(framesOf(&testing.T{}, sampleData(100_000), 20_000))
	f.Add(slices.Concat(testenv.SkippableFrame([]byte("x")), framesOf(&testing.T{}, []byte("hello"), 2)))
	f.Add([]byte{0x28, 0xB5, 0x2F, 0xFD, 0xC4, 0x50, 0, 0, 0, 0, 0, 1, 0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := decodeAll(2, in)
		ref, _ := zstd.NewReader(bytes.NewReader(in), zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(maxWindow))
		defer ref.Close()
		want, rerr := io.ReadAll(ref)
		if err == nil && rerr == nil && !bytes.Equal(got, want) {
			t.Fatalf("decoded %d bytes, the streaming decoder %d", len(got), len(want))
		}
		if err == nil && rerr != nil && len(in) > 0 {
			t.Fatalf("decoded %d bytes where the streaming decoder fails: %v", len(got), rerr)
		}
	})
}
