package archive

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// The commit journal lists, before the first move, every step of a
// commit, so that a run killed in the middle can be rolled back (or,
// once the commit is marked done, finished) by the next one. It is a
// walk of the directories the commit touches, one line per step, names
// quoted as Go strings (any byte survives):
//
//	snapshot-job commit journal 1
//	root mode=0755 atime=1764126900.000000000 mtime=1764126900.000000000
//	writable                      the directory just entered is made writable (u+wx) for the commit
//	enter "node-1" mode=... atime=... mtime=...   a directory present in the target and in staging
//	move "a.pcap" ".snapshot-job-aside-tok-1"     the target's entry goes aside (if any), the staged one comes in
//	move "new.pcap" ""                            nothing to set aside
//	leave
//	end
//
// The recorded modes and times are those the directory had before the
// commit; a rollback puts them back. Each move is undone by looking at
// which names exist, so it does not matter where the run stopped.
const (
	journalName   = ReservedPrefix + "journal"
	journalTemp   = ReservedPrefix + "journal.tmp"
	committedName = ReservedPrefix + "committed"
	journalHeader = "snapshot-job commit journal 1"
	asideInfix    = "aside-"
)

// dirState is what a commit records of a directory it touches.
type dirState struct {
	mode  uint32 // permission bits, sticky and set-id bits
	times stamp
}

func stateOf(st *unix.Stat_t) dirState {
	return dirState{mode: st.Mode & 0o7777, times: stampOf(st)}
}

func (d dirState) String() string {
	return fmt.Sprintf("mode=%#o atime=%d.%09d mtime=%d.%09d", d.mode, d.times[0].Sec, d.times[0].Nsec, d.times[1].Sec, d.times[1].Nsec)
}

type recordKind uint8

const (
	recRoot recordKind = iota + 1
	recWritable
	recEnter
	recMove
	recLeave
	recEnd
)

type record struct {
	kind        recordKind
	name, aside string
	state       dirState
}

type journalWriter struct {
	w   *bufio.Writer
	err error
}

func newJournalWriter(w io.Writer) *journalWriter {
	j := &journalWriter{w: bufio.NewWriterSize(w, 64<<10)}
	j.line(journalHeader)
	return j
}

func (j *journalWriter) line(s string) {
	if j.err == nil {
		_, j.err = j.w.WriteString(s + "\n")
	}
}

func (j *journalWriter) root(s dirState) { j.line("root " + s.String()) }
func (j *journalWriter) writable()       { j.line("writable") }
func (j *journalWriter) enter(name string, s dirState) {
	j.line("enter " + strconv.Quote(name) + " " + s.String())
}
func (j *journalWriter) move(name, aside string) {
	j.line("move " + strconv.Quote(name) + " " + strconv.Quote(aside))
}
func (j *journalWriter) leave() { j.line("leave") }

func (j *journalWriter) finish() error {
	j.line("end")
	if j.err == nil {
		j.err = j.w.Flush()
	}
	return j.err
}

// errJournal: a journal that does not parse. Nothing is guessed from it.
var errJournal = errors.New("unreadable commit journal")

// readJournal calls fn for each record of the journal in r, checking that
// the walk is well formed and complete.
func readJournal(r io.Reader, fn func(record) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	lineNo := 0
	readLine := func() (string, error) {
		s, err := br.ReadString('\n')
		lineNo++
		if err == io.EOF && s == "" {
			return "", fmt.Errorf("%w: ends at line %d without its end record", errJournal, lineNo)
		}
		if err != nil && err != io.EOF {
			return "", err
		}
		if !strings.HasSuffix(s, "\n") {
			return "", fmt.Errorf("%w: line %d is cut", errJournal, lineNo)
		}
		return s[:len(s)-1], nil
	}
	bad := func(s string) error { return fmt.Errorf("%w: line %d: %q", errJournal, lineNo, s) }
	first, err := readLine()
	if err != nil {
		return err
	}
	if first != journalHeader {
		return bad(first)
	}
	depth, rooted := 0, false
	for {
		s, err := readLine()
		if err != nil {
			return err
		}
		word, rest, _ := strings.Cut(s, " ")
		var rec record
		switch word {
		case "root":
			if rooted {
				return bad(s)
			}
			rooted = true
			rec.kind = recRoot
			if rec.state, err = parseState(rest); err != nil {
				return bad(s)
			}
		case "writable":
			rec.kind = recWritable
		case "enter":
			rec.kind = recEnter
			if rec.name, rest, err = unquoteField(rest); err != nil || !validComponent(rec.name) {
				return bad(s)
			}
			if rec.state, err = parseState(strings.TrimPrefix(rest, " ")); err != nil {
				return bad(s)
			}
			depth++
		case "move":
			rec.kind = recMove
			if rec.name, rest, err = unquoteField(rest); err != nil || !validComponent(rec.name) {
				return bad(s)
			}
			if rec.aside, rest, err = unquoteField(strings.TrimPrefix(rest, " ")); err != nil || rest != "" || (rec.aside != "" && !validComponent(rec.aside)) {
				return bad(s)
			}
		case "leave":
			rec.kind = recLeave
			if depth == 0 {
				return bad(s)
			}
			depth--
		case "end":
			if depth != 0 || !rooted {
				return bad(s)
			}
			return fn(record{kind: recEnd})
		default:
			return bad(s)
		}
		if !rooted {
			return bad(s)
		}
		if err := fn(rec); err != nil {
			return err
		}
	}
}

// validComponent: one name, so that a damaged journal cannot send a
// replay anywhere but down one level.
func validComponent(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, "/\x00") && len(s) <= MaxComponentLength
}

func unquoteField(s string) (string, string, error) {
	q, err := strconv.QuotedPrefix(s)
	if err != nil {
		return "", "", err
	}
	v, err := strconv.Unquote(q)
	return v, s[len(q):], err
}

func parseState(s string) (dirState, error) {
	var d dirState
	var as, an, ms, mn int64
	var mode uint32
	if _, err := fmt.Sscanf(s, "mode=%o atime=%d.%d mtime=%d.%d", &mode, &as, &an, &ms, &mn); err != nil {
		return d, err
	}
	if mode > 0o7777 || an < 0 || an >= 1e9 || mn < 0 || mn >= 1e9 {
		return d, errJournal
	}
	d.mode = mode
	d.times = stamp{{Sec: as, Nsec: an}, {Sec: ms, Nsec: mn}}
	return d, nil
}
