package archive

import (
	"archive/tar"
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
)

// Entry is one tar entry as the index of a snapshot records it.
type Entry struct {
	// Name is the entry's slash-separated relative path, without the
	// trailing "/" a directory's tar name has.
	Name string
	// Type is the tar type flag: tar.TypeReg, TypeDir, TypeSymlink or
	// TypeLink.
	Type     byte
	Mode     int64 // permission, setuid, setgid and sticky bits
	Size     int64 // content bytes of a regular file, else 0
	ModTime  time.Time
	Uid, Gid int
	// Link is a symlink's target or the first name of a hard link.
	Link string
	// HeaderOffset is where the entry's first header block (its PAX
	// header, if any) starts in the uncompressed tar stream, DataOffset
	// where its content starts.
	HeaderOffset, DataOffset int64
	// CRC32C is the CRC-32C (Castagnoli) of a regular file's content.
	CRC32C uint32
}

// TypeName is the type as `files` shows it.
func (e *Entry) TypeName() string {
	switch e.Type {
	case tar.TypeDir:
		return "dir"
	case tar.TypeSymlink:
		return "symlink"
	case tar.TypeLink:
		return "hardlink"
	case tar.TypeReg:
		return "file"
	}
	return fmt.Sprintf("type-%q", e.Type)
}

// indexMagic starts the payload of the index frame, before the zstd
// stream of records; the version is its last byte.
const indexMagic = "SJI1"

// maxIndexSize bounds the compressed index a reader accepts: a million
// entries take some 30 MiB.
const maxIndexSize = 1 << 30

// indexWriter encodes entries as they are written into a zstd stream held
// in memory: compressed, some 20 bytes an entry (IndexBytesPerEntry bounds
// what it holds), never the entries themselves.
type indexWriter struct {
	buf   bytes.Buffer
	enc   *zstd.Encoder
	rec   []byte
	count int64
	err   error
}

func newIndexWriter() (*indexWriter, error) {
	iw := &indexWriter{}
	iw.buf.Write(make([]byte, skippableHdrSize)) // filled in by frame
	iw.buf.WriteString(indexMagic)
	enc, err := zstd.NewWriter(&iw.buf,
		zstd.WithEncoderLevel(zstd.SpeedDefault),
		zstd.WithEncoderConcurrency(1),
		zstd.WithWindowSize(1<<20), // small, so readers need little memory
		zstd.WithEncoderCRC(true),
	)
	if err != nil {
		return nil, err
	}
	iw.enc = enc
	return iw, nil
}

func (iw *indexWriter) add(e *Entry) {
	if iw.err != nil {
		return
	}
	b := iw.rec[:0]
	b = append(b, e.Type)
	b = binary.AppendUvarint(b, uint64(len(e.Name)))
	b = append(b, e.Name...)
	b = binary.AppendUvarint(b, uint64(e.Mode))
	b = binary.AppendUvarint(b, uint64(e.Size))
	b = binary.AppendVarint(b, e.ModTime.Unix())
	b = binary.AppendUvarint(b, uint64(e.ModTime.Nanosecond()))
	b = binary.AppendUvarint(b, uint64(e.Uid))
	b = binary.AppendUvarint(b, uint64(e.Gid))
	b = binary.AppendUvarint(b, uint64(len(e.Link)))
	b = append(b, e.Link...)
	b = binary.AppendUvarint(b, uint64(e.HeaderOffset))
	b = binary.AppendUvarint(b, uint64(e.DataOffset-e.HeaderOffset))
	b = binary.LittleEndian.AppendUint32(b, e.CRC32C)
	iw.rec = b
	iw.count++
	_, iw.err = iw.enc.Write(b)
}

// frame ends the index with its terminator (a zero type, the entry count
// and the tar stream's length) and returns the whole skippable frame.
func (iw *indexWriter) frame(tarSize int64) ([]byte, error) {
	if iw.err != nil {
		return nil, iw.err
	}
	b := []byte{0}
	b = binary.AppendUvarint(b, uint64(iw.count))
	b = binary.AppendUvarint(b, uint64(tarSize))
	if _, err := iw.enc.Write(b); err != nil {
		return nil, err
	}
	if err := iw.enc.Close(); err != nil {
		return nil, err
	}
	out := iw.buf.Bytes()
	if len(out)-skippableHdrSize > maxIndexSize {
		return nil, fmt.Errorf("%w: the index of the snapshot would take %d bytes, more than the %d a reader accepts", ErrSource, len(out), maxIndexSize)
	}
	binary.LittleEndian.PutUint32(out, indexFrameMagic)
	binary.LittleEndian.PutUint32(out[4:], uint32(len(out)-skippableHdrSize))
	return out, nil
}

// readIndex streams the entries of an index frame (skippable header
// included, exactly size bytes) to fn, which must not keep the *Entry.
// tarSize is the length of the tar stream the seek table describes: every
// entry must lie inside it, in order, without overlapping the one before.
// Anything else is ErrCorrupt. Memory does not depend on the index's size.
func readIndex(r io.Reader, size, tarSize int64, fn func(*Entry) error) (int64, error) {
	var hdr [skippableHdrSize + len(indexMagic)]byte
	if size < int64(len(hdr)) || size-skippableHdrSize > maxIndexSize {
		return 0, corruptIndex("index frame of %d bytes", size)
	}
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, corruptIndex("truncated")
		}
		return 0, err
	}
	if binary.LittleEndian.Uint32(hdr[:]) != indexFrameMagic || int64(binary.LittleEndian.Uint32(hdr[4:])) != size-skippableHdrSize || string(hdr[8:]) != indexMagic {
		return 0, corruptIndex("the index frame's header is not an index of this format")
	}
	src := &sourceReader{r: io.LimitReader(r, size-int64(len(hdr)))}
	zr, err := zstd.NewReader(src,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(8<<20),
		zstd.WithDecoderMaxMemory(64<<20),
	)
	if err != nil {
		return 0, err
	}
	defer zr.Close()
	br := bufio.NewReaderSize(zr, 64<<10)
	var (
		e      Entry
		count  int64
		end    int64 // where the previous entry's content ends
		name   []byte
		link   []byte
		failed = func(err error) (int64, error) {
			if serr := src.failure(); serr != nil {
				return count, serr
			}
			return count, err
		}
	)
	uv := func(what string, limit uint64) (uint64, error) {
		v, err := binary.ReadUvarint(br)
		if err != nil {
			return 0, indexReadErr(err)
		}
		if v > limit {
			return 0, corruptIndex("entry %d: %s %d is out of bounds", count, what, v)
		}
		return v, nil
	}
	str := func(what string, buf []byte, limit uint64) ([]byte, error) {
		n, err := uv(what+" length", limit)
		if err != nil {
			return nil, err
		}
		buf = slices.Grow(buf[:0], int(n))[:n]
		if _, err := io.ReadFull(br, buf); err != nil {
			return nil, indexReadErr(err)
		}
		return buf, nil
	}
	const maxOff = 1 << 62
	for {
		t, err := br.ReadByte()
		if err != nil {
			return failed(indexReadErr(err))
		}
		if t == 0 {
			n, err := uv("count", uint64(MaxNames))
			if err != nil {
				return failed(err)
			}
			ts, err := uv("tar length", maxOff)
			if err != nil {
				return failed(err)
			}
			if int64(n) != count || int64(ts) != tarSize {
				return failed(corruptIndex("the index ends after %d entries of a %d-byte stream, but says %d entries of a %d-byte stream", count, tarSize, n, ts))
			}
			if _, err := br.ReadByte(); err != io.EOF {
				if err == nil {
					err = corruptIndex("bytes follow the index's end")
				}
				return failed(indexReadErr(err))
			}
			return count, src.failure()
		}
		if count++; count > MaxNames {
			return failed(corruptIndex("more than %d entries (MaxNames)", MaxNames))
		}
		switch t {
		case tar.TypeReg, tar.TypeDir, tar.TypeSymlink, tar.TypeLink:
		default:
			return failed(corruptIndex("entry %d has type %q", count, t))
		}
		e = Entry{Type: t}
		if name, err = str("name", name, MaxNameLength); err != nil {
			return failed(err)
		}
		var v [6]uint64
		for i, f := range []struct {
			what  string
			limit uint64
		}{{"mode", 0o7777}, {"size", maxOff}} {
			if v[i], err = uv(f.what, f.limit); err != nil {
				return failed(err)
			}
		}
		sec, err := binary.ReadVarint(br)
		if err != nil {
			return failed(indexReadErr(err))
		}
		for i, f := range []struct {
			what  string
			limit uint64
		}{{"nanoseconds", 999_999_999}, {"uid", 1<<32 - 1}, {"gid", 1<<32 - 1}} {
			if v[2+i], err = uv(f.what, f.limit); err != nil {
				return failed(err)
			}
		}
		if link, err = str("link", link, MaxNameLength); err != nil {
			return failed(err)
		}
		hoff, err := uv("header offset", maxOff)
		if err != nil {
			return failed(err)
		}
		hlen, err := uv("header length", 3*512+MaxNameLength*3)
		if err != nil {
			return failed(err)
		}
		var crc [4]byte
		if _, err := io.ReadFull(br, crc[:]); err != nil {
			return failed(indexReadErr(err))
		}
		e.Name = string(name)
		e.Link = string(link)
		e.Mode, e.Size = int64(v[0]), int64(v[1])
		e.ModTime = time.Unix(sec, int64(v[2]))
		e.Uid, e.Gid = int(v[3]), int(v[4])
		e.HeaderOffset = int64(hoff)
		e.DataOffset = int64(hoff + hlen)
		e.CRC32C = binary.LittleEndian.Uint32(crc[:])
		switch {
		case e.Name == "" || strings.HasSuffix(e.Name, "/"):
			return failed(corruptIndex("entry %d has the name %s", count, quote(e.Name)))
		case hlen < 512:
			return failed(corruptIndex("entry %s: header of %d bytes", quote(e.Name), hlen))
		case e.Type != tar.TypeReg && e.Size != 0:
			return failed(corruptIndex("entry %s of type %s has a size", quote(e.Name), e.TypeName()))
		case e.HeaderOffset < end:
			return failed(corruptIndex("entry %s at %d overlaps the entry before it, which ends at %d", quote(e.Name), e.HeaderOffset, end))
		case e.DataOffset+e.Size > tarSize-1024:
			return failed(corruptIndex("entry %s ends past the end of the tar stream (%d)", quote(e.Name), tarSize))
		}
		end = e.DataOffset + e.Size
		if err := fn(&e); err != nil {
			return count, err
		}
	}
}

func corruptIndex(format string, args ...any) error {
	return fmt.Errorf("%w: index: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}

// indexReadErr words a failure to read the index's bytes: a short or
// undecodable stream is corruption, a store failure stays what it is.
func indexReadErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return corruptIndex("truncated")
	}
	if errors.Is(err, ErrCorrupt) {
		return err
	}
	return fmt.Errorf("%w: index: %w", ErrCorrupt, err)
}

// IndexBytesPerEntry bounds what the index a backup builds holds in
// memory for each entry: the compressed records, in a buffer that grows
// by doubling, so up to twice their length. Measured
// (TestIndexBytesPerEntry): 17.7 bytes an entry compressed on capture-like
// event files, 20.4 and 22.5 on a million short and event-like names
// (37.7 and 25.2 held): 64 leaves 1.4 times the worst of twice those.
// Names of random bytes do not compress and add their length (270 bytes:
// 181.5 compressed, 230.7 held).
const IndexBytesPerEntry = 64
