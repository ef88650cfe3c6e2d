package archive

import (
	"archive/tar"
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/snapshot-job/snapshot-job/internal/testenv"
)

// tarOf builds raw tar bytes for seeds.
func tarOf(entries ...testenv.TarEntry) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		h := e.Header
		tw.WriteHeader(&h)
		tw.Write([]byte(e.Body))
	}
	tw.Close()
	return b.Bytes()
}

var fuzzEncoder, _ = zstd.NewWriter(nil, zstd.WithEncoderCRC(true))

// FuzzExtract feeds arbitrary tar streams (compressed here, so that the
// fuzzer works on the structure rather than on zstd's framing) to Extract
// and checks the promises: nothing is ever written outside the target, a
// failed extraction leaves the target as it was, and Verify and Extract
// refuse the same archives.
func FuzzExtract(f *testing.F) {
	f.Add(tarOf(testenv.Dir("a/"), testenv.File("a/f", "hello"), testenv.Symlink("l", "a/f"), testenv.Hardlink("h", "a/f")))
	f.Add(tarOf(testenv.File("../evil", "x")))
	f.Add(tarOf(testenv.Symlink("link", ".."), testenv.File("link/evil", "x")))
	f.Add(tarOf(testenv.Hardlink("evil", "/etc/passwd")))
	f.Add(tarOf(testenv.File("f", "x"), testenv.File("f/g", "y")))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, tarData []byte) {
		data := fuzzEncoder.EncodeAll(tarData, nil)
		checkExtract(t, data)
	})
}

// FuzzExtractRaw feeds arbitrary bytes straight to the decoder.
func FuzzExtractRaw(f *testing.F) {
	f.Add(fuzzEncoder.EncodeAll(tarOf(testenv.File("f", "x")), nil))
	f.Add([]byte("(\xb5/\xfd"))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkExtract(t, data)
	})
}

func checkExtract(t *testing.T, data []byte) {
	// An input that makes extraction hang is a finding too; the fuzzer only
	// records inputs whose run crashes, so a stuck run has to crash.
	watchdog := time.AfterFunc(10*time.Second, func() { panic("extraction took over 10 s") })
	defer watchdog.Stop()
	parent := t.TempDir()
	target := filepath.Join(parent, "target")
	outside := filepath.Join(parent, "outside")
	if err := os.WriteFile(outside, []byte("untouched"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, verr := Verify(t.Context(), bytes.NewReader(data), VerifyOptions{Concurrency: 1})
	_, xerr := Extract(t.Context(), bytes.NewReader(data), target, ExtractOptions{Concurrency: 1, noSync: true, Token: "t1"})
	for _, err := range []error{verr, xerr} {
		if err != nil && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsafe) && !errors.Is(err, ErrTarget) {
			t.Fatalf("unclassified error: %v", err)
		}
	}
	if verr != nil && xerr == nil && !errors.Is(verr, ErrUnverifiable) {
		t.Fatalf("Verify refused (%v) what Extract accepted", verr)
	}
	// And what Verify passes, restores: Verify applies every rule.
	if (verr == nil || errors.Is(verr, ErrUnverifiable)) && xerr != nil {
		t.Fatalf("Extract refused (%v) what Verify accepted", xerr)
	}
	entries, err := os.ReadDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != "target" && e.Name() != "outside" {
			t.Fatalf("written outside the target: %s", e.Name())
		}
	}
	if b, err := os.ReadFile(outside); err != nil || string(b) != "untouched" {
		t.Fatalf("file outside the target changed: %q %v", b, err)
	}
	if xerr != nil {
		if _, err := os.Stat(target); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("failed extraction left the target behind (err %v)", xerr)
		}
		return
	}
	// Everything extracted is below the target, and nothing in it is a
	// staging leftover.
	filepath.WalkDir(target, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		if d.IsDir() {
			os.Chmod(p, 0o755) // so that TempDir's cleanup can remove read-only dirs
		}
		return nil
	})
	assertNoStaging(t, target)
}
