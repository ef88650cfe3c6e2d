package archive

import (
	"archive/tar"
	"fmt"
	"io"
	"path"
	"strings"
	"unicode"

	"github.com/snapshot-job/snapshot-job/internal/setting"
)

// MaxPathPatterns bounds SNAPSHOT_RESTORE_PATHS: every entry of an
// archive is matched against every pattern, so their number is part of
// the restore's cost.
const MaxPathPatterns = 256

// maxPatternSegments bounds one pattern's depth, which the matcher's
// work per entry is proportional to.
const maxPatternSegments = 256

// Paths is a selection of archive entries (SNAPSHOT_RESTORE_PATHS): plain
// paths and globs, relative to the restore target. A nil *Paths selects
// everything.
//
// A pattern is matched segment by segment against an entry's name:
// within a segment `*`, `?` and `[...]` work as in path.Match (never
// across a `/`), and a segment that is exactly `**` matches any number of
// segments, none included. A pattern that matches a directory selects
// everything below it too, as tar does with the members it is given: the
// plain path `node-1` selects the directory node-1 and its whole tree,
// `node-1/**` the same, `*/pcapdump/*.pcap` the capture files of every
// node.
type Paths struct {
	patterns [][]string // cleaned, split at '/'
	raw      []string   // cleaned, for messages
}

// ParsePaths parses the items of SNAPSHOT_RESTORE_PATHS (already split at
// commas). Surrounding white space is trimmed, a leading "./" and
// trailing "/" are dropped and the rest is cleaned. Empty items, absolute
// paths, ".." segments, control characters and malformed brackets are
// refused: the error wraps setting.ErrInvalid (exit 2), before any data
// moves. No item at all means no selection: ParsePaths returns nil.
func ParsePaths(list []string) (*Paths, error) {
	if len(list) == 0 {
		return nil, nil
	}
	if len(list) > MaxPathPatterns {
		return nil, &PatternError{Problem: fmt.Sprintf("%d paths given; at most %d are accepted: select a common parent directory or use a glob", len(list), MaxPathPatterns)}
	}
	p := &Paths{}
	for i, item := range list {
		pat, segs, err := parsePattern(item)
		if err != nil {
			return nil, &PatternError{Problem: fmt.Sprintf("item %d %q %s", i+1, item, err)}
		}
		p.patterns = append(p.patterns, segs)
		p.raw = append(p.raw, pat)
	}
	return p, nil
}

// PatternError is a refused selection. It wraps setting.ErrInvalid: a
// configuration mistake, exit 2.
type PatternError struct {
	Problem string // what is wrong, naming the item
}

func (e *PatternError) Error() string {
	return setting.ErrInvalid.Error() + ": SNAPSHOT_RESTORE_PATHS: " + e.Problem
}

func (e *PatternError) Unwrap() error { return setting.ErrInvalid }

func parsePattern(item string) (string, []string, error) {
	s := strings.TrimSpace(item)
	if s == "" {
		return "", nil, fmt.Errorf("is empty (two commas in a row, or a trailing comma?)")
	}
	for _, r := range s {
		if r == 0 || unicode.IsControl(r) {
			return "", nil, fmt.Errorf("contains a control character")
		}
	}
	if strings.HasPrefix(s, "/") {
		return "", nil, fmt.Errorf("is absolute; paths are relative to the restore directory, as in the snapshot (drop the leading /)")
	}
	for _, seg := range strings.Split(s, "/") {
		if seg == ".." {
			return "", nil, fmt.Errorf("contains \"..\"; a restore never writes outside its directory")
		}
	}
	s = path.Clean(s)
	if s == "." {
		return "", nil, fmt.Errorf("selects everything; leave SNAPSHOT_RESTORE_PATHS empty to restore the whole snapshot")
	}
	segs := strings.Split(s, "/")
	if len(segs) > maxPatternSegments {
		return "", nil, fmt.Errorf("has %d segments; at most %d are accepted", len(segs), maxPatternSegments)
	}
	// Consecutive ** match what one does; collapsing them keeps the
	// matcher's work proportional to the pattern's real length.
	out := segs[:0]
	for _, seg := range segs {
		if len(seg) > MaxComponentLength {
			return "", nil, fmt.Errorf("has a segment of %d bytes; file names hold at most %d", len(seg), MaxComponentLength)
		}
		if seg == "**" && len(out) > 0 && out[len(out)-1] == "**" {
			continue
		}
		if _, err := path.Match(seg, ""); err != nil {
			return "", nil, fmt.Errorf("segment %q is not a valid glob (unclosed [ or trailing \\)", seg)
		}
		out = append(out, seg)
	}
	return s, out, nil
}

// Patterns returns the cleaned patterns, for messages and logs.
func (p *Paths) Patterns() []string {
	if p == nil {
		return nil
	}
	return append([]string(nil), p.raw...)
}

// String joins the cleaned patterns with commas, as the variable takes
// them.
func (p *Paths) String() string { return strings.Join(p.Patterns(), ",") }

// Match reports whether the entry name (cleaned, relative, slash-separated:
// as the validator sees it) is selected: a pattern matches it or one of
// its parent directories.
func (p *Paths) Match(name string) bool {
	if p == nil {
		return true
	}
	segs := strings.Split(name, "/")
	for _, pat := range p.patterns {
		m := newSegMatch(pat, segs)
		for j := 1; j <= len(segs); j++ {
			if m.whole(j) {
				return true
			}
		}
	}
	return false
}

// Wants reports whether the directory dir may hold a selected entry, or
// is selected itself: a reader may skip a subtree for which it is false.
// It errs on the side of true (a glob segment may match no name that
// exists), never the other way. The root ("") is always wanted.
func (p *Paths) Wants(dir string) bool {
	if p == nil || dir == "" {
		return true
	}
	segs := strings.Split(dir, "/")
	for _, pat := range p.patterns {
		m := newSegMatch(pat, segs)
		for j := 1; j <= len(segs); j++ {
			if m.whole(j) {
				return true // dir or a parent of it is selected
			}
		}
		// A prefix of the pattern consumed all of dir: the rest may
		// match below it.
		if m.consumed() {
			return true
		}
	}
	return false
}

// segMatch is the table of which pattern prefixes match which name
// prefixes: at[i][j] says pattern[:i] matches segs[:j]. Filling it costs
// len(pattern) × len(segs) segment matches, whatever the number of **.
type segMatch struct {
	at   [][]bool
	np   int
	nseg int
}

func newSegMatch(pat, segs []string) *segMatch {
	np, ns := len(pat), len(segs)
	at := make([][]bool, np+1)
	for i := range at {
		at[i] = make([]bool, ns+1)
	}
	at[0][0] = true
	for i := 1; i <= np; i++ {
		seg := pat[i-1]
		for j := 0; j <= ns; j++ {
			if seg == "**" {
				// none, or one more segment
				at[i][j] = at[i-1][j] || (j > 0 && at[i][j-1])
				continue
			}
			if j > 0 && at[i-1][j-1] {
				ok, _ := path.Match(seg, segs[j-1]) // checked in ParsePaths
				at[i][j] = ok
			}
		}
	}
	return &segMatch{at: at, np: np, nseg: ns}
}

// whole: the whole pattern matches segs[:j].
func (m *segMatch) whole(j int) bool { return m.at[m.np][j] }

// consumed: some prefix of the pattern matches all of segs.
func (m *segMatch) consumed() bool {
	for i := 0; i <= m.np; i++ {
		if m.at[i][m.nseg] {
			return true
		}
	}
	return false
}

// selection restricts an extraction to the entries Paths matches. The
// directories on the way to a match are created when the first match
// below them is met, with the metadata of their own entries, so that a
// glob such as */pcapdump/*.pcap creates no empty node directory where
// nothing matched.
type selection struct {
	paths *Paths
	x     *extractor
	log   interface {
		Warn(msg string, args ...any)
	}
	// pending holds the wanted directories no match has needed yet.
	// It holds at most the archive's directories, whose number the
	// validator bounds (MaxDirMetadata).
	pending  map[string]dirHeader
	restored int64
	links    int // hard links left out, for the warning's cap
}

// dirHeader is what a directory's own entry says about it.
type dirHeader struct {
	h tar.Header
}

func (s *selection) entry(h *tar.Header, name string, body io.Reader) error {
	if !s.paths.Match(name) {
		if h.Typeflag == tar.TypeDir && s.paths.Wants(name) {
			s.pending[name] = dirHeader{h: tar.Header{
				Typeflag: tar.TypeDir, Name: h.Name, Mode: h.Mode, Uid: h.Uid, Gid: h.Gid,
				ModTime: h.ModTime, AccessTime: h.AccessTime,
			}}
		}
		return errNotSelected
	}
	if h.Typeflag == tar.TypeLink {
		target, _ := cleanName(h.Linkname) // checked by the validator
		if !s.paths.Match(target) {
			// Its content came earlier in the stream, with the target,
			// and was not kept.
			if s.links++; s.links <= maxSkipWarnings {
				s.log.Warn("left out a selected hard link whose target is not selected; add the target's path to SNAPSHOT_RESTORE_PATHS to restore it",
					"path", shortName(name), "target", shortName(target))
			}
			return errNotSelected
		}
	}
	if err := s.parents(name); err != nil {
		return err
	}
	s.restored++
	return s.x.entry(h, name, body)
}

// parents creates the pending directories above name, outermost first.
func (s *selection) parents(name string) error {
	if len(s.pending) == 0 {
		return nil
	}
	for i := 0; i < len(name); i++ {
		if name[i] != '/' {
			continue
		}
		dir := name[:i]
		d, ok := s.pending[dir]
		if !ok {
			continue
		}
		delete(s.pending, dir)
		if err := s.x.entry(&d.h, dir, nil); err != nil {
			return err
		}
	}
	return nil
}

// finish fails a selection that restored nothing, before the commit.
func (s *selection) finish() error {
	if s.links > maxSkipWarnings {
		s.log.Warn("left out more selected hard links than were named", "named", maxSkipWarnings, "left_out", s.links)
	}
	if s.restored == 0 {
		return noMatch(s.paths)
	}
	return nil
}

// noMatch is the error of a selection that matches no entry.
func noMatch(paths *Paths) error {
	return fmt.Errorf("%w (%s): nothing was written; the files verb lists the snapshot's entries", ErrNoMatch, paths)
}
