package testenv

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
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

// tarStream writes tar entries straight into a zstd encoder, so that an
// archive whose tar stream is gigabytes long (long names compress to
// almost nothing) never exists uncompressed in memory.
type tarStream struct {
	t   testing.TB
	buf bytes.Buffer
	zw  *zstd.Encoder
	tw  *tar.Writer
}

func newTarStream(t testing.TB) *tarStream {
	t.Helper()
	s := &tarStream{t: t}
	zw, err := zstd.NewWriter(&s.buf, zstd.WithEncoderCRC(true), zstd.WithEncoderLevel(zstd.SpeedDefault))
	if err != nil {
		t.Fatal(err)
	}
	s.zw, s.tw = zw, tar.NewWriter(zw)
	return s
}

func (s *tarStream) add(h tar.Header, body string) {
	s.t.Helper()
	h.Format = tar.FormatPAX
	if h.Mode == 0 {
		h.Mode = 0o644
	}
	if err := s.tw.WriteHeader(&h); err != nil {
		s.t.Fatal(err)
	}
	if _, err := io.WriteString(s.tw, body); err != nil {
		s.t.Fatal(err)
	}
}

func (s *tarStream) bytes() []byte {
	s.t.Helper()
	if err := s.tw.Close(); err != nil {
		s.t.Fatal(err)
	}
	if err := s.zw.Close(); err != nil {
		s.t.Fatal(err)
	}
	return s.buf.Bytes()
}

// pathOf is depth components of compLen bytes each, joined by slashes.
func pathOf(depth, compLen int, fill byte) string {
	comp := strings.Repeat(string(fill), compLen)
	parts := make([]string, depth)
	for i := range parts {
		parts[i] = comp
	}
	return strings.Join(parts, "/")
}

// LongNames is n empty files whose names are about nameLen bytes long.
// With compLen at most 255 the names are valid (a chain of directories,
// listed as entries, holding every file: a tree deeper than PATH_MAX);
// with compLen 0 each name is one component, which no filesystem holds.
// A reader that keeps every name needs n × nameLen bytes of memory.
func LongNames(t testing.TB, n, nameLen, compLen int) []byte {
	t.Helper()
	s := newTarStream(t)
	dir := ""
	if compLen > 0 {
		depth := nameLen / (compLen + 1)
		for i := 1; i <= depth; i++ {
			s.add(tar.Header{Typeflag: tar.TypeDir, Name: pathOf(i, compLen, 'd') + "/", Mode: 0o755}, "")
		}
		dir = pathOf(depth, compLen, 'd') + "/"
	}
	width := max(nameLen-len(dir), 8)
	if compLen > 0 {
		width = min(width, compLen)
	}
	for i := range n {
		num := strconv.Itoa(i)
		name := dir + strings.Repeat("f", max(width-len(num), 1)) + num
		s.add(tar.Header{Typeflag: tar.TypeReg, Name: name}, "")
	}
	return s.bytes()
}

// DeepFiles is n files of a few bytes and a symlink at the bottom of one
// chain of depth directories, each name component compLen bytes long, as
// tar -c writes it (every directory an entry of its own).
func DeepFiles(t testing.TB, n, depth, compLen int) []byte {
	t.Helper()
	s := newTarStream(t)
	for i := 1; i <= depth; i++ {
		s.add(tar.Header{Typeflag: tar.TypeDir, Name: pathOf(i, compLen, 'd') + "/", Mode: 0o755}, "")
	}
	dir := pathOf(depth, compLen, 'd') + "/"
	for i := range n {
		s.add(tar.Header{Typeflag: tar.TypeReg, Name: dir + "f" + strconv.Itoa(i), Size: 4}, "data")
	}
	s.add(tar.Header{Typeflag: tar.TypeSymlink, Name: dir + "link", Linkname: "f0", Mode: 0o777}, "")
	return s.bytes()
}

// ImpliedDirs is entries files each at the bottom of its own chain of
// depth directories that no entry lists: one 64 KiB name implies 32,000
// directories.
func ImpliedDirs(t testing.TB, entries, depth int) []byte {
	t.Helper()
	s := newTarStream(t)
	for i := range entries {
		s.add(tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("x%04d/%s/f", i, pathOf(depth, 1, 'a'))}, "")
	}
	return s.bytes()
}

// TarOf is the plain tar stream of entries (nothing checks the names).
func TarOf(t testing.TB, entries ...TarEntry) []byte {
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
	return tb.Bytes()
}

// ZstNoChecksum compresses b as zstd frames of at most frameSize bytes
// each, without content checksums, as bsdtar --zstd and other tools
// write them. Random content makes the encoder store raw blocks, in
// which a flipped byte decodes to a wrong byte without any error.
func ZstNoChecksum(t testing.TB, b []byte, frameSize int) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderCRC(false))
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	for len(b) > 0 {
		n := min(len(b), frameSize)
		out = enc.EncodeAll(b[:n], out)
		b = b[n:]
	}
	return out
}

// SkippableFrame is a zstd skippable frame (magic 0x184D2A5E, the one the
// seekable format's seek table uses) holding payload.
func SkippableFrame(payload []byte) []byte {
	out := binary.LittleEndian.AppendUint32(nil, 0x184D2A5E)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(payload)))
	return append(out, payload...)
}

// RawHeader is a ustar header block built by hand, for entries
// archive/tar refuses to write: a FIFO or device with a size and a body.
func RawHeader(name string, typeflag byte, size int64) []byte {
	h := make([]byte, 512)
	copy(h[0:100], name)
	copy(h[100:108], "0000644\x00")
	copy(h[108:116], "0000000\x00")
	copy(h[116:124], "0000000\x00")
	copy(h[124:136], fmt.Sprintf("%011o\x00", size))
	copy(h[136:148], fmt.Sprintf("%011o\x00", 1764126900))
	h[156] = typeflag
	copy(h[257:265], "ustar\x0000")
	copy(h[148:156], "        ")
	sum := 0
	for _, c := range h {
		sum += int(c)
	}
	copy(h[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return h
}

// Padded is body followed by zeros up to the next 512-byte block.
func Padded(body []byte) []byte {
	return append(body, make([]byte, (512-len(body)%512)%512)...)
}

// ReadDeepTree is ReadTree for trees deeper than PATH_MAX: it resolves
// every path one component at a time (os.Root). Directories' access
// times are left out (reading a tree moves them).
func ReadDeepTree(t testing.TB, dir string, skip func(rel string) bool) map[string]Entry {
	t.Helper()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	out := map[string]Entry{}
	inodes := map[uint64]string{}
	stack := []string{"."}
	for len(stack) > 0 {
		rel := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		f, err := root.Open(rel)
		if err != nil {
			t.Fatal(err)
		}
		entries, err := f.ReadDir(-1)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range entries {
			p := d.Name()
			if rel != "." {
				p = rel + "/" + p
			}
			if skip != nil && skip(p) {
				continue
			}
			fi, err := root.Lstat(p)
			if err != nil {
				t.Fatal(err)
			}
			sys := fi.Sys().(*syscall.Stat_t)
			e := Entry{Mode: fi.Mode() & (fs.ModePerm | fs.ModeSticky | fs.ModeSetuid | fs.ModeSetgid), MTime: sys.Mtim.Sec*1e9 + sys.Mtim.Nsec}
			switch {
			case fi.Mode().IsRegular():
				e.Type, e.Size = "file", fi.Size()
				f, err := root.Open(p)
				if err != nil {
					t.Fatal(err)
				}
				h := sha256.New()
				_, err = io.Copy(h, f)
				f.Close()
				if err != nil {
					t.Fatal(err)
				}
				e.Hash = hex.EncodeToString(h.Sum(nil))
				if first, ok := inodes[sys.Ino]; ok {
					e.Group = first
				} else {
					inodes[sys.Ino] = p
					e.Group = p
				}
			case fi.IsDir():
				e.Type = "dir"
				stack = append(stack, p)
			case fi.Mode()&fs.ModeSymlink != 0:
				e.Type = "symlink"
				if e.Link, err = root.Readlink(p); err != nil {
					t.Fatal(err)
				}
			default:
				e.Type = "other"
			}
			out[p] = e
		}
	}
	return out
}

// SameTree reports the differences between two ReadTree results, or "".
func SameTree(want, got map[string]Entry) string {
	var problems []string
	for rel, we := range want {
		ge, ok := got[rel]
		if !ok {
			problems = append(problems, "missing: "+shorten(rel))
		} else if we != ge {
			problems = append(problems, fmt.Sprintf("differs: %s\n  want %+v\n  got  %+v", shorten(rel), we, ge))
		}
	}
	for rel := range got {
		if _, ok := want[rel]; !ok {
			problems = append(problems, "unexpected: "+shorten(rel))
		}
	}
	slices.Sort(problems)
	if len(problems) > 20 {
		problems = append(problems[:20], fmt.Sprintf("... and %d more", len(problems)-20))
	}
	return strings.Join(problems, "\n")
}

func shorten(s string) string {
	if len(s) > 300 {
		return fmt.Sprintf("%s... (%d bytes)", s[:300], len(s))
	}
	return s
}
