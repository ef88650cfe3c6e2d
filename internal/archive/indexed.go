package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"hash/crc32"
	"io"
	"log/slog"
	"sort"
	"strings"
	"sync"
)

// Fetched is what a partial restore read of the object: the data frames
// that hold the selected entries, and the runs of adjacent frames they
// make, each fetched as one range (Ranger.ReadRange).
type Fetched struct {
	Frames int   // data frames fetched, of Index.Frames
	Ranges int   // runs of adjacent frames (the index's own reads aside)
	Bytes  int64 // compressed bytes of those frames
}

// maxLinkCopies bounds the selected hard links whose target is not
// selected that a partial restore writes as copies of the target: each
// costs its target's name in memory until the stream reaches it. Past
// it they are left out, with a warning, as a streamed restore does.
const maxLinkCopies = 4096

// ExtractIndexed restores the entries opts.Paths selects (required) from
// the snapshot whose index is ix, fetching only the data frames that hold
// them: adjacent frames with one ranged read, the others not at all. It
// reads the index twice, once to plan which frames to fetch and once
// beside them to rebuild the tar stream of the selected entries, so its
// memory does not depend on the number of entries: (workers + 2) frames
// and a bit per frame.
//
// Everything a full Extract guarantees holds: the same staging, checks,
// commit and rollback, so that dir is unchanged on any failure. Besides,
// each selected entry's tar header must be the one the index describes,
// and each regular file's content must have the CRC-32C the index
// records (ErrCorrupt otherwise). Parent directories of the selection
// are written with the metadata the index records for them. A selected
// hard link whose target is not selected is restored as a copy of the
// target's content. A selection that matches no entry of the index is
// ErrNoMatch before anything is fetched or written.
func ExtractIndexed(ctx context.Context, ix *Index, dir string, opts ExtractOptions) (Stats, Fetched, error) {
	if opts.Paths == nil {
		return Stats{}, Fetched{}, errors.New("extract: ExtractIndexed needs a selection")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p, err := ix.plan(ctx, opts.Paths, log)
	if err != nil {
		return Stats{}, Fetched{}, err
	}
	if p.matched == 0 {
		return Stats{}, Fetched{}, noMatch(opts.Paths)
	}
	var fetched Fetched
	st, err := extract(ctx, dir, opts, func(log *slog.Logger, fn entryFunc) (Stats, streamInfo, error) {
		pr, pw := io.Pipe()
		g := &rebuild{ix: ix, p: p, paths: opts.Paths, w: pw, workers: DecodeWorkers(opts.Concurrency)}
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			pw.CloseWithError(g.run(ctx))
		}()
		st, err := readTar(ctx, pr, g.failure, log, opts.limits, nil, nil, fn)
		pr.CloseWithError(errors.New("the restore stopped reading"))
		wg.Wait()
		fetched = g.fetched
		return st, streamInfo{frames: int64(fetched.Frames)}, err
	})
	return st, fetched, err
}

// linkTarget is where a hard link's target keeps its content.
type linkTarget struct {
	data, size int64
	crc        uint32
	found      bool
}

// fetchPlan is what the first pass over the index decided.
type fetchPlan struct {
	tarStart []int64 // tar offset where frame i starts; one more at the end
	objStart []int64 // object offset where frame i starts; one more at the end
	need     []uint64
	matched  int64
	links    map[string]*linkTarget // targets of the links restored as copies
}

func (p *fetchPlan) needs(i int) bool { return p.need[i/64]&(1<<(i%64)) != 0 }

// span returns the frames [first, end) that hold the tar bytes
// [off, off+n); first is the number of frames when off lies past them.
func (p *fetchPlan) span(off, n int64) (first, end int) {
	frames := len(p.tarStart) - 1
	first = sort.Search(frames, func(i int) bool { return p.tarStart[i+1] > off })
	for end = first; end < frames && p.tarStart[end] < off+n; end++ {
	}
	return first, end
}

// mark needs the frames that hold the tar bytes [off, off+n).
func (p *fetchPlan) mark(off, n int64) {
	first, end := p.span(off, n)
	for i := first; i < end; i++ {
		p.need[i/64] |= 1 << (i % 64)
	}
}

// plan reads the index once and marks the frames the selection needs.
func (ix *Index) plan(ctx context.Context, paths *Paths, log *slog.Logger) (*fetchPlan, error) {
	n := len(ix.frames)
	p := &fetchPlan{tarStart: make([]int64, n+1), objStart: make([]int64, n+1), need: make([]uint64, (n+63)/64)}
	for i, f := range ix.frames {
		p.tarStart[i+1] = p.tarStart[i] + int64(f.dsize)
		p.objStart[i+1] = p.objStart[i] + int64(f.csize)
	}
	copies, leftOut := 0, 0
	_, err := ix.Entries(ctx, func(e *Entry) error {
		if !paths.Match(e.Name) {
			return nil
		}
		p.matched++
		p.mark(e.HeaderOffset, e.DataOffset+e.Size-e.HeaderOffset)
		if e.Type != tar.TypeLink {
			return nil
		}
		target, err := cleanName(e.Link)
		if err != nil || paths.Match(target) {
			return nil // the stream's validator has the last word
		}
		if p.links == nil {
			p.links = map[string]*linkTarget{}
		}
		if _, ok := p.links[target]; ok {
			return nil
		}
		if copies >= maxLinkCopies {
			if leftOut++; leftOut <= maxSkipWarnings {
				log.Warn("left out a selected hard link whose target is not selected: too many such links; add the target's path to SNAPSHOT_RESTORE_PATHS to restore it",
					"path", shortName(e.Name), "target", shortName(target))
			}
			return nil
		}
		copies++
		p.links[target] = &linkTarget{}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(p.links) == 0 {
		return p, nil
	}
	// The targets come before their links in the stream: a second pass
	// finds where their content lies.
	_, err = ix.Entries(ctx, func(e *Entry) error {
		if t, ok := p.links[e.Name]; ok && e.Type == tar.TypeReg && !t.found {
			*t = linkTarget{data: e.DataOffset, size: e.Size, crc: e.CRC32C, found: true}
		}
		return nil
	})
	return p, err
}

// rebuild writes the tar stream of the selected entries to w: their own
// header and content bytes from the fetched frames, the parent
// directories' headers from the index, and the end marker.
type rebuild struct {
	ix      *Index
	p       *fetchPlan
	paths   *Paths
	w       io.Writer
	workers int
	fetched Fetched
	err     firstError // the failure the restore reports
	buf     []byte     // for the files' content, allocated once
}

func (g *rebuild) failure() error       { return g.err.get() }
func (g *rebuild) fail(err error) error { return g.err.set(err) }

// firstError keeps the first of the errors set from several goroutines.
type firstError struct {
	mu  sync.Mutex
	err error
}

func (f *firstError) get() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// set keeps err unless an error was set before, and returns the kept one.
func (f *firstError) set(err error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err == nil {
		f.err = err
	}
	return f.err
}

func (g *rebuild) run(ctx context.Context) error {
	src := &frameRuns{ctx: ctx, r: g.ix.r, p: g.p, wanted: g.p.needs}
	for i := range len(g.p.tarStart) - 1 {
		if g.p.needs(i) {
			g.fetched.Frames++
			g.fetched.Bytes += g.p.objStart[i+1] - g.p.objStart[i]
			if i == 0 || !g.p.needs(i-1) {
				g.fetched.Ranges++
			}
		}
	}
	dec, err := newFrameDecoder(src, g.workers)
	if err != nil {
		return g.fail(err)
	}
	defer dec.Close()
	tf := &tarFrames{d: &fetchedReader{r: dec, src: src}, p: g.p, cur: -1}
	// Errors of the store come back as they are, the index's included;
	// whatever goes wrong with the fetched bytes is corruption.
	classify := func(err error) error {
		if ferr := g.failure(); ferr != nil {
			return ferr
		}
		if cerr := ctx.Err(); cerr != nil {
			return g.fail(context.Cause(ctx))
		}
		return g.fail(err)
	}
	var hdr bytes.Buffer
	_, err = g.ix.Entries(ctx, func(e *Entry) error {
		if g.paths.Match(e.Name) {
			if e.Type == tar.TypeLink {
				if t, ok := g.linkCopy(e); ok {
					return g.copyOf(ctx, e, t, &hdr)
				}
			}
			return g.raw(e, tf, &hdr)
		}
		if e.Type == tar.TypeDir && g.paths.Wants(e.Name) {
			return g.header(&hdr, &tar.Header{Typeflag: tar.TypeDir, Name: e.Name + "/", Mode: e.Mode,
				Uid: e.Uid, Gid: e.Gid, ModTime: e.ModTime, Format: tar.FormatPAX}, 0)
		}
		return nil
	})
	if errors.Is(err, io.ErrClosedPipe) {
		return g.failure()
	}
	if err != nil {
		return classify(err)
	}
	// The frames fetched must hold exactly what the seek table says.
	if err := tf.finish(); err != nil {
		return classify(err)
	}
	if _, err := g.w.Write(zeros[:1024]); err != nil {
		return err
	}
	return nil
}

func (g *rebuild) linkCopy(e *Entry) (*linkTarget, bool) {
	if g.p.links == nil {
		return nil, false
	}
	target, err := cleanName(e.Link)
	if err != nil {
		return nil, false
	}
	t, ok := g.p.links[target]
	return t, ok && t.found
}

// header writes a header built from the index, for content of size bytes.
func (g *rebuild) header(buf *bytes.Buffer, h *tar.Header, size int64) error {
	buf.Reset()
	h.Size = size
	if err := tar.NewWriter(buf).WriteHeader(h); err != nil {
		return corruptIndex("entry %s: %v", quote(h.Name), err)
	}
	_, err := g.w.Write(buf.Bytes())
	return err
}

// raw copies an entry's header and content from the fetched frames,
// after checking the header is the one the index describes.
func (g *rebuild) raw(e *Entry, tf *tarFrames, buf *bytes.Buffer) error {
	if err := tf.seek(e.HeaderOffset); err != nil {
		return err
	}
	buf.Reset()
	if _, err := io.CopyN(buf, tf, e.DataOffset-e.HeaderOffset); err != nil {
		return err
	}
	h, err := tar.NewReader(bytes.NewReader(buf.Bytes())).Next()
	if err != nil {
		return corruptIndex("entry %s: no tar header at %d: %v", quote(e.Name), e.HeaderOffset, err)
	}
	typ := h.Typeflag
	if typ == tar.TypeRegA {
		typ = tar.TypeReg
	}
	name, _ := cleanName(h.Name)
	if strings.TrimSuffix(name, "/") != e.Name || typ != e.Type || h.Size != e.Size {
		return corruptIndex("entry %s: the tar header at %d is for %s (type %q, %d bytes)", quote(e.Name), e.HeaderOffset, quote(h.Name), h.Typeflag, h.Size)
	}
	if _, err := g.w.Write(buf.Bytes()); err != nil {
		return err
	}
	if e.Type != tar.TypeReg {
		return nil
	}
	return g.content(e.Name, tf, e.Size, e.CRC32C)
}

// content copies size bytes of a file's content and its padding,
// checking the index's CRC-32C before the last bytes go out.
func (g *rebuild) content(name string, r io.Reader, size int64, want uint32) error {
	c := crc32.New(castagnoli)
	if g.buf == nil {
		g.buf = make([]byte, 256<<10)
	}
	buf := g.buf
	for left := size; left > 0; {
		n, err := io.ReadFull(r, buf[:min(left, int64(len(buf)))])
		c.Write(buf[:n])
		left -= int64(n)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				err = corruptf("%s: content ends %d bytes early", quote(name), left)
			}
			return err
		}
		if left == 0 && c.Sum32() != want {
			return corruptf("%s: content does not match the index's checksum (CRC-32C %08x, the index says %08x)", quote(name), c.Sum32(), want)
		}
		if _, err := g.w.Write(buf[:n]); err != nil {
			return err
		}
	}
	_, err := g.w.Write(zeros[:(512-size%512)%512])
	return err
}

// copyOf writes a selected hard link whose target is not selected as a
// regular file with the target's content, read by its own ranged read.
func (g *rebuild) copyOf(ctx context.Context, e *Entry, t *linkTarget, buf *bytes.Buffer) error {
	if err := g.header(buf, &tar.Header{Typeflag: tar.TypeReg, Name: e.Name, Mode: e.Mode,
		Uid: e.Uid, Gid: e.Gid, ModTime: e.ModTime, Format: tar.FormatPAX}, t.size); err != nil {
		return err
	}
	p := g.p
	first, end := p.span(t.data, max(t.size, 1))
	if first >= end {
		return corruptIndex("entry %s: the target's content lies past the last frame", quote(e.Name))
	}
	src := &frameRuns{ctx: ctx, r: g.ix.r, p: p, wanted: func(i int) bool { return i >= first && i < end }}
	g.fetched.Ranges++
	g.fetched.Frames += end - first
	g.fetched.Bytes += p.objStart[end] - p.objStart[first]
	dec, err := newFrameDecoder(src, 1)
	if err != nil {
		return err
	}
	defer dec.Close()
	r := &fetchedReader{r: dec, src: src}
	if _, err := io.CopyN(io.Discard, r, t.data-p.tarStart[first]); err != nil {
		return err
	}
	return g.content(e.Name, r, t.size, t.crc)
}

// fetchedReader classifies the errors of decoding fetched frames: the
// store's as they are, the rest as corruption.
type fetchedReader struct {
	r   io.Reader
	src *frameRuns
}

func (f *fetchedReader) Read(b []byte) (int, error) {
	n, err := f.r.Read(b)
	if err != nil && err != io.EOF {
		if serr := f.src.failure(); serr != nil {
			return n, serr
		}
		err = corrupt(err)
	}
	return n, err
}

// frameRuns reads the fetched frames in order, one ranged read per run
// of adjacent frames, each opened when the one before is used up.
type frameRuns struct {
	ctx    context.Context
	r      Ranger
	p      *fetchPlan
	wanted func(frame int) bool // the frames to fetch
	next   int                  // the next frame to consider
	body   io.ReadCloser
	left   int64      // bytes of body still to come
	err    firstError // the store's failure, returned as it is
}

func (f *frameRuns) failure() error { return f.err.get() }

func (f *frameRuns) Read(b []byte) (int, error) {
	for f.left == 0 {
		if f.body != nil {
			f.body.Close()
			f.body = nil
		}
		frames := len(f.p.tarStart) - 1
		for f.next < frames && !f.wanted(f.next) {
			f.next++
		}
		if f.next == frames {
			return 0, io.EOF
		}
		end := f.next
		for end < frames && f.wanted(end) {
			end++
		}
		off, n := f.p.objStart[f.next], f.p.objStart[end]-f.p.objStart[f.next]
		body, err := f.r.ReadRange(f.ctx, off, n)
		if err != nil {
			return 0, f.storeFailed(err)
		}
		f.body, f.left, f.next = body, n, end
	}
	n, err := f.body.Read(b[:min(int64(len(b)), f.left)])
	f.left -= int64(n)
	switch {
	case err == io.EOF && f.left > 0:
		return n, corruptf("the object ends %d bytes before the frames its seek table lists", f.left)
	case err == io.EOF:
		err = nil
	case err != nil:
		err = f.storeFailed(err)
	}
	return n, err
}

func (f *frameRuns) storeFailed(err error) error {
	f.err.set(err)
	return err
}

func (f *frameRuns) Close() error {
	if f.body != nil {
		return f.body.Close()
	}
	return nil
}

// tarFrames maps the decoded content of the fetched frames back to
// offsets in the snapshot's tar stream.
type tarFrames struct {
	d    io.Reader // the fetched frames' content, its errors classified (fetchedReader)
	p    *fetchPlan
	cur  int   // the frame being read; -1 before the first
	pos  int64 // tar offset of the next byte
	left int64 // bytes of cur still to come
}

// nextFetched is the fetched frame after cur, or -1.
func (t *tarFrames) nextFetched() int {
	frames := len(t.p.tarStart) - 1
	for i := t.cur + 1; i < frames; i++ {
		if t.p.needs(i) {
			return i
		}
	}
	return -1
}

// advance moves to the next fetched frame.
func (t *tarFrames) advance() error {
	i := t.nextFetched()
	if i < 0 {
		return corruptIndex("an entry lies in frames the index did not select")
	}
	t.cur, t.pos, t.left = i, t.p.tarStart[i], t.p.tarStart[i+1]-t.p.tarStart[i]
	return nil
}

// seek moves forward to the tar offset off, passing over what lies
// before it in the fetched frames.
func (t *tarFrames) seek(off int64) error {
	for t.pos != off || t.left == 0 {
		if t.left == 0 {
			if err := t.advance(); err != nil {
				return err
			}
			continue
		}
		if off < t.pos {
			return corruptIndex("entry at %d lies before the position %d already read", off, t.pos)
		}
		if err := t.discard(min(off-t.pos, t.left)); err != nil {
			return err
		}
	}
	return nil
}

func (t *tarFrames) discard(n int64) error {
	m, err := io.CopyN(io.Discard, t.d, n)
	t.pos += m
	t.left -= m
	if err != nil {
		return t.failed(err)
	}
	return nil
}

// Read reads on from pos; an entry that goes on into a frame that was
// not fetched is corrupt.
func (t *tarFrames) Read(b []byte) (int, error) {
	if t.left == 0 {
		at := t.pos
		if err := t.advance(); err != nil {
			return 0, err
		}
		if t.pos != at {
			return 0, corruptIndex("an entry goes on past %d, into a frame the index did not select", at)
		}
	}
	n, err := t.d.Read(b[:min(int64(len(b)), t.left)])
	t.pos += int64(n)
	t.left -= int64(n)
	if err != nil {
		return n, t.failed(err)
	}
	return n, nil
}

// failed words an early end of the frames as corruption; the reader's
// other errors are classified already.
func (t *tarFrames) failed(err error) error {
	if err == io.EOF {
		return corruptf("frame %d holds %d bytes less than the seek table says", t.cur, t.left)
	}
	return err
}

// finish reads the rest of the fetched frames and checks that the
// decoder ends exactly where the seek table says they do.
func (t *tarFrames) finish() error {
	for {
		if err := t.discard(t.left); err != nil {
			return err
		}
		if t.nextFetched() < 0 {
			break
		}
		if err := t.advance(); err != nil {
			return err
		}
	}
	if n, err := t.d.Read(make([]byte, 1)); n > 0 || err != io.EOF {
		if err == nil || err == io.EOF {
			err = corruptf("the frames fetched hold more than the seek table says")
		}
		return err
	}
	return nil
}
