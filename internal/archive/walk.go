package archive

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"sync/atomic"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// The walk works relative to directory handles, never by path: a tree
// may be deeper than PATH_MAX (a restore can create one), and a directory
// renamed or swapped for a symlink while the walk is inside it cannot
// lead the walk out of the tree. It holds one open directory per level of
// the path it is on; entries queued for the archiver keep their parent
// open until they are archived (see pipeline).

// entryKind is what the walk found under a name.
type entryKind uint8

const (
	entDir      entryKind = iota
	entFile               // a regular file; Write opens it, Scan stats it
	entSymlink            // target read at walk time
	entSpecial            // FIFO, socket or device: never opened
	entVanished           // gone between the listing and the stat or open
	entReplaced           // now another kind of file than the listing said
	entExcluded           // a directory of WriteOptions.Exclude
	entReserved           // a name of the job's own (ReservedPrefix)
)

// entry is one name the walk met, in the order of the archive.
type entry struct {
	kind entryKind
	rel  string // slash-separated, relative to the root
	name string // the last element, for the *at calls on dir
	// dir is the open parent of a regular file (Write only); the entry
	// holds a reference until it has been archived.
	dir *dirHandle
	// st is the entry's status: directories and symlinks always, regular
	// files in Scan. Write takes a file's from the open file instead.
	st       unix.Stat_t
	target   string      // symlink
	typ      fs.FileMode // entSpecial
	excluded string      // entExcluded: the path as configured
	// taken is set when the archiver starts on a file: a read-ahead hint
	// after that is wasted.
	taken atomic.Bool
}

// dirHandle is an open directory shared by the walk and the entries
// queued from it; the last reference closes it.
type dirHandle struct {
	fd   int
	refs atomic.Int32
}

func newDirHandle(fd int) *dirHandle {
	d := &dirHandle{fd: fd}
	d.refs.Store(1)
	return d
}

func (d *dirHandle) retain() { d.refs.Add(1) }

func (d *dirHandle) release() {
	if d.refs.Add(-1) == 0 {
		unix.Close(d.fd)
	}
}

// walkOptions are the rules Scan and Write share.
type walkOptions struct {
	// statFiles: fstatat every regular file (Scan needs sizes and link
	// counts; Write opens the file and takes its status from there).
	statFiles bool
	// openedDir, if set, is called each time a directory is opened
	// (tests count the walks with it).
	openedDir func(rel string)
}

// walker walks one tree depth first in lexical order (bytewise, as
// filepath.WalkDir and tar's --sort=name do), handing every entry to emit.
type walker struct {
	ctx  context.Context
	opts walkOptions
	emit func(*entry) error
	excl *exclusions
	path []byte // rel of the entry at hand
	buf  []byte // getdents
	link []byte // readlinkat
}

// openRoot opens the tree's root, following a symlink as `tar -C dir .`
// does: a mounted volume's path is often one (`..data`-style layouts).
func openRoot(dir string, exclude []string) (*dirHandle, *exclusions, error) {
	fd, err := retryEINTR(func() (int, error) {
		return unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	})
	if errors.Is(err, unix.ENOTDIR) {
		return nil, nil, fmt.Errorf("%w: %s is not a directory", ErrSource, dir)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrSource, &fs.PathError{Op: "open", Path: dir, Err: err})
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, nil, fmt.Errorf("%w: %w", ErrSource, &fs.PathError{Op: "stat", Path: dir, Err: err})
	}
	ex := newExclusions(exclude)
	if p, ok := ex.match(&st); ok {
		unix.Close(fd)
		same := ""
		if p != dir {
			same = " (as " + p + ")"
		}
		return nil, nil, fmt.Errorf("%w: %s is excluded from the snapshot%s: a snapshot cannot be kept in the directory it archives; give the store a directory of its own (a subdirectory of the source is fine)", ErrSource, dir, same)
	}
	return newDirHandle(fd), ex, nil
}

// walk walks the tree below root, which it does not release.
func (w *walker) walk(root *dirHandle) error {
	if w.opts.openedDir != nil {
		w.opts.openedDir("")
	}
	return w.dir(root, true)
}

type dirent struct {
	name string
	typ  uint8 // DT_*
}

func (w *walker) dir(d *dirHandle, atRoot bool) error {
	names, err := w.list(d.fd)
	if err != nil {
		return w.sourceErr("reading directory", err)
	}
	slices.SortFunc(names, func(a, b dirent) int { return strings.Compare(a.name, b.name) })
	base := len(w.path)
	defer func() { w.path = w.path[:base] }()
	for _, de := range names {
		if err := w.ctx.Err(); err != nil {
			return context.Cause(w.ctx)
		}
		w.path = append(w.path[:base], de.name...)
		if err := w.one(d, de, atRoot); err != nil {
			return err
		}
	}
	return nil
}

// one handles the name w.path ends in, listed in d.
func (w *walker) one(d *dirHandle, de dirent, atRoot bool) error {
	if Reserved(de.name) {
		// Not even looked at: a restore's staging directory may be
		// half-written, and a lock file is another run's.
		return w.emit(&entry{kind: entReserved, rel: string(w.path), name: de.name})
	}
	typ := de.typ
	var st unix.Stat_t
	haveStat := false
	if typ == unix.DT_UNKNOWN { // filesystems without d_type
		if err := w.fstatat(d, de.name, &st); err != nil {
			return w.gone(err)
		}
		typ, haveStat = dtype(st.Mode), true
	}
	n := len(w.path)
	if typ == unix.DT_DIR {
		n++ // stored with a trailing slash
	}
	if n > MaxNameLength {
		return w.tooLong()
	}
	switch typ {
	case unix.DT_DIR:
		if atRoot && de.name == lostFound {
			return nil
		}
		return w.subdir(d, de.name)
	case unix.DT_LNK:
		if !haveStat {
			if err := w.fstatat(d, de.name, &st); err != nil {
				return w.gone(err)
			}
		}
		if st.Mode&unix.S_IFMT != unix.S_IFLNK {
			return w.emit(&entry{kind: entReplaced, rel: string(w.path)})
		}
		target, err := w.readlink(d, de.name)
		if err != nil {
			return w.gone(err)
		}
		return w.emit(&entry{kind: entSymlink, rel: string(w.path), st: st, target: target})
	case unix.DT_REG:
		e := &entry{kind: entFile, rel: string(w.path), name: de.name, dir: d}
		if w.opts.statFiles {
			if !haveStat {
				if err := w.fstatat(d, de.name, &st); err != nil {
					return w.gone(err)
				}
			}
			if st.Mode&unix.S_IFMT != unix.S_IFREG {
				return w.emit(&entry{kind: entReplaced, rel: e.rel})
			}
			e.st, e.dir = st, nil
		}
		return w.emit(e)
	default:
		return w.emit(&entry{kind: entSpecial, rel: string(w.path), typ: dtypeMode(typ)})
	}
}

// subdir opens the directory name in d, checks it against the
// exclusions, and walks it.
func (w *walker) subdir(d *dirHandle, name string) error {
	fd, err := retryEINTR(func() (int, error) {
		return unix.Openat(d.fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	})
	if err != nil {
		return w.gone(err)
	}
	e := &entry{kind: entDir, rel: string(w.path)}
	if err := unix.Fstat(fd, &e.st); err != nil {
		unix.Close(fd)
		return w.sourceErr("stat", err)
	}
	// Matched on the open directory itself, so that neither a symlink
	// (never followed) nor a bind mount (same device and inode) brings
	// an excluded directory back in.
	if p, ok := w.excl.match(&e.st); ok {
		unix.Close(fd)
		return w.emit(&entry{kind: entExcluded, rel: e.rel, excluded: p})
	}
	h := newDirHandle(fd)
	defer h.release()
	if err := w.emit(e); err != nil {
		return err
	}
	if w.opts.openedDir != nil {
		w.opts.openedDir(e.rel)
	}
	w.path = append(w.path, '/')
	return w.dir(h, false)
}

// gone turns an error about the entry at hand into an entry (it vanished
// or changed kind, as capture tools rotating files make happen) or a
// source error.
func (w *walker) gone(err error) error {
	switch {
	case errors.Is(err, unix.ENOENT):
		return w.emit(&entry{kind: entVanished, rel: string(w.path)})
	case errors.Is(err, unix.ENOTDIR), errors.Is(err, unix.ELOOP), errors.Is(err, unix.EINVAL):
		// O_DIRECTORY on what is no longer a directory, O_NOFOLLOW on a
		// new symlink, readlink on what is no longer a link.
		return w.emit(&entry{kind: entReplaced, rel: string(w.path)})
	}
	return w.sourceErr("", err)
}

func (w *walker) sourceErr(op string, err error) error {
	rel := string(w.path)
	if rel == "" {
		rel = "."
	}
	if errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) {
		return fmt.Errorf("%w: %s: %w: the walk keeps one directory open per level, %d levels here; raise the open-file limit (RLIMIT_NOFILE)",
			ErrSource, shortPath(rel), err, strings.Count(rel, "/")+1)
	}
	if op != "" {
		return fmt.Errorf("%w: %s %s: %w", ErrSource, op, shortPath(rel), err)
	}
	return fmt.Errorf("%w: %s: %w", ErrSource, shortPath(rel), err)
}

func (w *walker) tooLong() error {
	return fmt.Errorf("%w: a path in the tree is longer than %d bytes, more than a snapshot may hold (a restore would refuse it); shorten or move it: %s",
		ErrSource, MaxNameLength, shortPath(string(w.path)))
}

// shortPath keeps error messages readable when a path is very long: its
// start says where it is.
func shortPath(p string) string {
	const keep = 256
	if len(p) <= keep {
		return p
	}
	cut := keep
	for cut > 0 && !utf8.RuneStart(p[cut]) {
		cut--
	}
	return fmt.Sprintf("%s... (%d bytes)", p[:cut], len(p))
}

func (w *walker) fstatat(d *dirHandle, name string, st *unix.Stat_t) error {
	_, err := retryEINTR(func() (int, error) {
		return 0, unix.Fstatat(d.fd, name, st, unix.AT_SYMLINK_NOFOLLOW)
	})
	return err
}

func (w *walker) readlink(d *dirHandle, name string) (string, error) {
	if w.link == nil {
		w.link = make([]byte, unix.PathMax)
	}
	for {
		n, err := retryEINTR(func() (int, error) { return unix.Readlinkat(d.fd, name, w.link) })
		if err != nil {
			return "", err
		}
		if n < len(w.link) {
			return string(w.link[:n]), nil
		}
		w.link = make([]byte, 2*len(w.link))
	}
}

// list reads every name of the open directory fd, except . and ..
func (w *walker) list(fd int) ([]dirent, error) {
	if w.buf == nil {
		w.buf = make([]byte, 64<<10)
	}
	var out []dirent
	for {
		n, err := retryEINTR(func() (int, error) { return unix.Getdents(fd, w.buf) })
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			return out, nil
		}
		out = parseDirents(w.buf[:n], out)
	}
}

// parseDirents appends the records of a getdents64 buffer:
// struct linux_dirent64 { u64 d_ino; s64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }.
func parseDirents(buf []byte, out []dirent) []dirent {
	const nameOff = 19
	for len(buf) >= nameOff {
		reclen := int(binary.NativeEndian.Uint16(buf[16:18]))
		if reclen < nameOff || reclen > len(buf) {
			break
		}
		name := buf[nameOff:reclen]
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		ino := binary.NativeEndian.Uint64(buf[0:8])
		if ino != 0 && string(name) != "." && string(name) != ".." {
			out = append(out, dirent{name: string(name), typ: buf[18]})
		}
		buf = buf[reclen:]
	}
	return out
}

func dtype(mode uint32) uint8 {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return unix.DT_DIR
	case unix.S_IFREG:
		return unix.DT_REG
	case unix.S_IFLNK:
		return unix.DT_LNK
	case unix.S_IFIFO:
		return unix.DT_FIFO
	case unix.S_IFSOCK:
		return unix.DT_SOCK
	case unix.S_IFCHR:
		return unix.DT_CHR
	case unix.S_IFBLK:
		return unix.DT_BLK
	}
	return unix.DT_UNKNOWN
}

// dtypeMode is the fs.FileMode type bits of a DT_* value, for messages.
func dtypeMode(t uint8) fs.FileMode {
	switch t {
	case unix.DT_FIFO:
		return fs.ModeNamedPipe
	case unix.DT_SOCK:
		return fs.ModeSocket
	case unix.DT_CHR:
		return fs.ModeDevice | fs.ModeCharDevice
	case unix.DT_BLK:
		return fs.ModeDevice
	}
	return fs.ModeIrregular
}

// retryEINTR repeats a system call that a signal interrupted (Go's own
// preemption signals among them), as package os does.
func retryEINTR(f func() (int, error)) (int, error) {
	for {
		n, err := f()
		if !errors.Is(err, unix.EINTR) {
			return n, err
		}
	}
}

// exclusions are the directories of WriteOptions.Exclude, by device and
// inode. A path that does not exist yet when the walk starts (a store
// creates its prefix directory when the upload begins) is looked up again
// whenever the walk meets a directory, until it exists.
type exclusions struct {
	ids     map[fileID]string
	pending []string
}

func newExclusions(paths []string) *exclusions {
	ex := &exclusions{ids: map[fileID]string{}}
	for _, p := range paths {
		if p != "" {
			ex.pending = append(ex.pending, p)
		}
	}
	ex.resolve()
	return ex
}

func (ex *exclusions) resolve() {
	left := ex.pending[:0]
	for _, p := range ex.pending {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
			left = append(left, p)
			continue
		}
		if _, dup := ex.ids[idOf(&st)]; !dup { // warnings name the first
			ex.ids[idOf(&st)] = p
		}
	}
	ex.pending = left
}

func (ex *exclusions) match(st *unix.Stat_t) (string, bool) {
	if len(ex.ids) == 0 && len(ex.pending) == 0 {
		return "", false
	}
	id := idOf(st)
	if p, ok := ex.ids[id]; ok {
		return p, true
	}
	if len(ex.pending) > 0 {
		ex.resolve()
		p, ok := ex.ids[id]
		return p, ok
	}
	return "", false
}
