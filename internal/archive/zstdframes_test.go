package archive

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os/exec"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/klauspost/compress/zstd"
	"github.com/snapshot-job/snapshot-job/internal/testenv"
)

func inspect(t *testing.T, data []byte, oneByte bool) (frames, unchecked int64) {
	t.Helper()
	var r io.Reader = bytes.NewReader(data)
	if oneByte {
		r = iotest.OneByteReader(r)
	}
	fi := newFrameInspector(r)
	// Decode through it, as readArchive does, so that the test also
	// proves the bytes pass unchanged.
	zr, err := zstd.NewReader(fi)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	if _, err := io.Copy(io.Discard, zr); err != nil {
		t.Fatalf("decoding: %v", err)
	}
	frames, unchecked, ok := fi.counts()
	if !ok {
		t.Fatal("the inspector lost track of a valid stream")
	}
	return frames, unchecked
}

func randomBytes(n int) []byte {
	rng := rand.New(rand.NewPCG(3, 4))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func TestFrameInspector(t *testing.T) {
	text := bytes.Repeat([]byte("GET /index.html HTTP/1.1\r\nHost: example\r\n\r\n"), 20000) // compressed blocks
	random := randomBytes(300 << 10)                                                         // raw blocks
	zeros := make([]byte, 1<<20)                                                             // RLE blocks
	withCRC, _ := zstd.NewWriter(nil, zstd.WithEncoderCRC(true))
	noCRC, _ := zstd.NewWriter(nil, zstd.WithEncoderCRC(false))
	var mixed []byte
	mixed = withCRC.EncodeAll(text, mixed)
	mixed = append(mixed, testenv.SkippableFrame([]byte("seek table"))...)
	mixed = noCRC.EncodeAll(random, mixed)
	mixed = noCRC.EncodeAll(nil, mixed) // an empty frame
	mixed = withCRC.EncodeAll(zeros, mixed)
	mixed = append(mixed, testenv.SkippableFrame(nil)...)
	for _, tc := range []struct {
		name              string
		data              []byte
		frames, unchecked int64
	}{
		{"checksums", withCRC.EncodeAll(text, nil), 1, 0},
		{"none", testenv.ZstNoChecksum(t, random, 100<<10), 3, 3},
		{"mixed with skippable frames", mixed, 4, 2},
		{"only a skippable frame", testenv.SkippableFrame([]byte("x")), 0, 0},
	} {
		for _, oneByte := range []bool{false, true} {
			frames, unchecked := inspect(t, tc.data, oneByte)
			if frames != tc.frames || unchecked != tc.unchecked {
				t.Errorf("%s (one byte at a time: %v): %d frames, %d without checksum; want %d, %d", tc.name, oneByte, frames, unchecked, tc.frames, tc.unchecked)
			}
		}
	}
}

// The zstd tool writes headers klauspost does not (dictionary IDs aside):
// single-segment frames, content sizes of every width.
func TestFrameInspectorZstdCLI(t *testing.T) {
	if _, err := exec.LookPath("zstd"); err != nil {
		t.Fatal("the zstd command is missing: apt-get install zstd")
	}
	for _, tc := range []struct {
		args      []string
		input     []byte
		unchecked int64
	}{
		{[]string{"--check", "-1"}, []byte("small"), 0},
		{[]string{"--no-check", "-1"}, []byte("small"), 1},
		{[]string{"--no-check", "-19"}, bytes.Repeat([]byte("abc"), 100000), 1},
		{[]string{"--check", "--no-content-size", "-3"}, randomBytes(1 << 20), 0},
		{[]string{"--no-check", "-3"}, make([]byte, 70000), 1},
		{[]string{"--check", "-3", "--long=24"}, randomBytes(3 << 20), 0},
	} {
		cmd := exec.Command("zstd", append(tc.args, "-c", "-q")...)
		cmd.Stdin = bytes.NewReader(tc.input)
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		for _, oneByte := range []bool{false, true} {
			frames, unchecked := inspect(t, out, oneByte)
			if frames != 1 || unchecked != tc.unchecked {
				t.Errorf("zstd %s: %d frames, %d without checksum", strings.Join(tc.args, " "), frames, unchecked)
			}
		}
	}
}

// A damaged archive whose frames carry no checksum decodes without an
// error; Verify must say it could not verify it rather than pass it.
func TestVerifyUnverifiable(t *testing.T) {
	tarData := testenv.TarOf(t, testenv.File("capture.pcap", string(randomBytes(200<<10))))
	good := testenv.ZstNoChecksum(t, tarData, 64<<10)
	bad := bytes.Clone(good)
	bad[len(bad)/2] ^= 0x40
	for name, data := range map[string][]byte{"intact": good, "damaged": bad} {
		_, err := Verify(t.Context(), bytes.NewReader(data), VerifyOptions{})
		if !errors.Is(err, ErrUnverifiable) || !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "4 of its 4 zstd frames carry no content checksum") {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	// Restore proceeds with one warning.
	log, buf := logBuffer()
	if _, err := Extract(t.Context(), bytes.NewReader(good), t.TempDir(), ExtractOptions{Token: "t1", Logger: log}); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(buf.String(), "carry no content checksum"); n != 1 {
		t.Errorf("%d warnings:\n%s", n, buf)
	}
	// A stream whose every frame has its checksum, plus the seek table
	// of the seekable format in a skippable frame, verifies.
	withTable := append(testenv.Zst(t, tarData), testenv.SkippableFrame(make([]byte, 40))...)
	if _, err := Verify(t.Context(), bytes.NewReader(withTable), VerifyOptions{}); err != nil {
		t.Errorf("with a skippable frame: %v", err)
	}
}
