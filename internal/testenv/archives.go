package testenv

import (
	"archive/tar"
	"bytes"
	"io"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// TarEntry is one raw entry for TarZst.
type TarEntry struct {
	Header tar.Header
	Body   string
}

// File, Dir, Symlink and Hardlink build raw entries.
func File(name, body string) TarEntry {
	return TarEntry{Header: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(body))}, Body: body}
}

func Dir(name string) TarEntry {
	return TarEntry{Header: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755}}
}

func Symlink(name, target string) TarEntry {
	return TarEntry{Header: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}}
}

func Hardlink(name, target string) TarEntry {
	return TarEntry{Header: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, Mode: 0o644}}
}

// TarZst builds a tar+zstd stream from raw entries, as an attacker would:
// nothing checks the names.
func TarZst(t testing.TB, entries ...TarEntry) []byte {
	t.Helper()
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	for _, e := range entries {
		h := e.Header
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, e.Body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return Zst(t, tb.Bytes())
}

// Zst compresses b as one zstd frame with a checksum.
func Zst(t testing.TB, b []byte) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderCRC(true))
	if err != nil {
		t.Fatal(err)
	}
	return enc.EncodeAll(b, nil)
}

// HostileArchives are the attacks every reader must refuse: each would
// write outside the target or through a link if extracted naively. The
// file names "evil" mark what must never appear anywhere.
func HostileArchives(t testing.TB) map[string][]byte {
	t.Helper()
	return map[string][]byte{
		"absolute name":            TarZst(t, File("ok", "x"), File("/tmp/evil", "x")),
		"dot-dot":                  TarZst(t, File("ok", "x"), File("../evil", "x")),
		"dot-dot inside":           TarZst(t, File("a/../../evil", "x")),
		"through symlink":          TarZst(t, Symlink("link", "/tmp"), File("link/evil", "x")),
		"through relative symlink": TarZst(t, Dir("a/"), Symlink("a/up", "../.."), File("a/up/evil", "x")),
		"symlink then dir":         TarZst(t, Symlink("link", "/tmp"), Dir("link/")),
		"hard link outside":        TarZst(t, Hardlink("evil", "/etc/passwd")),
		"hard link dot-dot":        TarZst(t, Hardlink("evil", "../outside")),
		"hard link to symlink":     TarZst(t, Symlink("s", "/etc/passwd"), Hardlink("evil", "s")),
		"hard link to later file":  TarZst(t, Hardlink("evil", "f"), File("f", "x")),
		"duplicate file":           TarZst(t, File("f", "x"), File("f", "y")),
		"below a file":             TarZst(t, File("f", "x"), File("f/evil", "y")),
	}
}
