package archive

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A restore works with directory file descriptors and single names only:
// every path is resolved one component at a time with O_NOFOLLOW,
// relative to a directory already open. Nothing can lead outside the tree
// through a symlink, trees deeper than PATH_MAX work, and a walk holds
// one or two descriptors whatever the depth.

const (
	dirFlags  = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	pathFlags = unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
)

// openDir opens the directory name in dirfd, never through a symlink.
// Without read permission it falls back to an O_PATH descriptor, which
// can still be searched and used with the *at calls.
func openDir(dirfd int, name string) (int, error) {
	fd, err := unix.Openat(dirfd, name, dirFlags, 0)
	if err == unix.EACCES {
		fd, err = unix.Openat(dirfd, name, pathFlags, 0)
	}
	return fd, err
}

// fileID identifies a file or directory: hard links are stored once by
// it, excluded directories are matched by it, and a walk checks with it
// that ".." leads where it came from.
type fileID struct{ dev, ino uint64 }

func statFD(fd int) (unix.Stat_t, error) {
	var st unix.Stat_t
	err := unix.Fstat(fd, &st)
	return st, err
}

func idOf(st *unix.Stat_t) fileID { return fileID{st.Dev, st.Ino} }

// stamp is a file's access and modification time.
type stamp [2]unix.Timespec

// timespec converts without going through nanoseconds since 1970, which
// overflow an int64 after the year 2262.
func timespec(t time.Time) unix.Timespec {
	return unix.Timespec{Sec: t.Unix(), Nsec: int64(t.Nanosecond())}
}

func stampOf(st *unix.Stat_t) stamp { return stamp{st.Atim, st.Mtim} }

// futimens sets the times of the file open as fd: utimensat with a NULL
// path, which x/sys/unix does not offer.
func futimens(fd int, ts *stamp) error {
	_, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(ts)), 0, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

func procPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// fdUtimes sets the times of a directory open as fd, O_PATH included.
func fdUtimes(fd int, ts stamp) error {
	err := futimens(fd, &ts)
	if err == unix.EBADF {
		err = unix.UtimesNanoAt(unix.AT_FDCWD, procPath(fd), ts[:], 0)
	}
	return err
}

// fdChmod sets the mode of a file open as fd, O_PATH included.
func fdChmod(fd int, mode uint32) error {
	err := unix.Fchmod(fd, mode)
	if err == unix.EBADF {
		err = unix.Fchmodat(fd, "", mode, unix.AT_EMPTY_PATH)
		if err == unix.EOPNOTSUPP || err == unix.ENOSYS || err == unix.EINVAL {
			err = unix.Fchmodat(unix.AT_FDCWD, procPath(fd), mode, 0)
		}
	}
	return err
}

// fdChown sets the owner of a file open as fd, O_PATH included.
func fdChown(fd, uid, gid int) error {
	err := unix.Fchown(fd, uid, gid)
	if err == unix.EBADF {
		err = unix.Fchownat(fd, "", uid, gid, unix.AT_EMPTY_PATH)
	}
	return err
}

// renameNoReplace renames without ever replacing an existing entry. Where
// the filesystem lacks RENAME_NOREPLACE it checks first and renames.
func renameNoReplace(oldfd int, oldname string, newfd int, newname string) error {
	err := unix.Renameat2(oldfd, oldname, newfd, newname, unix.RENAME_NOREPLACE)
	if err != unix.EINVAL && err != unix.ENOSYS {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstatat(newfd, newname, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil {
		return unix.EEXIST
	} else if err != unix.ENOENT {
		return err
	}
	return unix.Renameat(oldfd, oldname, newfd, newname)
}

// errMoved: a directory changed place while a restore was working in it.
var errMoved = errors.New("a directory was moved or replaced while the restore was working in it")

// cursor is a position in a directory tree: one open descriptor for the
// current directory and, for each directory above it, its name and
// identity. Moving costs a system call per component changed; going up
// opens ".." and checks that it is the directory we came from.
type cursor struct {
	root   int // the tree's top; not closed by the cursor
	rootID fileID
	fd     int    // the current directory; root at the top
	path   []byte // the current directory relative to root, "" at the top
	levels []level
	create bool // down makes missing directories (mode 0700)
}

type level struct {
	end int    // len(path) with this component
	id  fileID // of this directory
	off int64  // listing position, for walks
}

func newCursor(root int, create bool) (*cursor, error) {
	st, err := statFD(root)
	if err != nil {
		return nil, err
	}
	return &cursor{root: root, rootID: idOf(&st), fd: root, create: create}, nil
}

// where is the current directory, for messages.
func (c *cursor) where() string {
	if len(c.path) == 0 {
		return "."
	}
	return string(c.path)
}

func (c *cursor) depth() int { return len(c.levels) }

func (c *cursor) close() {
	if c.fd != c.root {
		unix.Close(c.fd)
	}
	c.fd, c.path, c.levels = c.root, c.path[:0], c.levels[:0]
}

// down enters the subdirectory name.
func (c *cursor) down(name string) error {
	fd, err := openDir(c.fd, name)
	if err == unix.ENOENT && c.create {
		if err = unix.Mkdirat(c.fd, name, 0o700); err == nil || err == unix.EEXIST {
			fd, err = openDir(c.fd, name)
		}
	}
	if err != nil {
		return err
	}
	st, err := statFD(fd)
	if err != nil {
		unix.Close(fd)
		return err
	}
	if c.fd != c.root {
		unix.Close(c.fd)
	}
	c.fd = fd
	if len(c.path) > 0 {
		c.path = append(c.path, '/')
	}
	c.path = append(c.path, name...)
	c.levels = append(c.levels, level{end: len(c.path), id: idOf(&st)})
	return nil
}

// up goes to the parent directory.
func (c *cursor) up() error {
	n := len(c.levels)
	if n == 0 {
		return nil
	}
	var fd int
	if n == 1 {
		fd = c.root
	} else {
		var err error
		fd, err = openDir(c.fd, "..")
		if err == nil {
			var st unix.Stat_t
			if st, err = statFD(fd); err == nil && idOf(&st) != c.levels[n-2].id {
				err = errMoved
			}
			if err != nil {
				unix.Close(fd)
			}
		}
		if err == unix.EACCES {
			// The current directory cannot be searched (its mode was
			// just applied): come down again from the top instead.
			fd, err = c.reopen(n - 1)
		}
		if err != nil {
			return err
		}
	}
	if c.fd != c.root {
		unix.Close(c.fd)
	}
	c.fd = fd
	c.levels = c.levels[:n-1]
	if n == 1 {
		c.path = c.path[:0]
	} else {
		c.path = c.path[:c.levels[n-2].end]
	}
	return nil
}

// reopen opens the directory of the first n levels from the top,
// checking each one's identity.
func (c *cursor) reopen(n int) (int, error) {
	fd := c.root
	start := 0
	for i := 0; i < n; i++ {
		name := string(c.path[start:c.levels[i].end])
		start = c.levels[i].end + 1
		nfd, err := openDir(fd, name)
		if fd != c.root {
			unix.Close(fd)
		}
		if err != nil {
			return -1, err
		}
		st, err := statFD(nfd)
		if err == nil && idOf(&st) != c.levels[i].id {
			err = errMoved
		}
		if err != nil {
			unix.Close(nfd)
			return -1, err
		}
		fd = nfd
	}
	return fd, nil
}

// goTo moves to the directory dir (cleaned, relative to the top; "" is
// the top), through the deepest directory the current and the new
// position share.
func (c *cursor) goTo(dir string) error {
	cur := c.path
	if string(cur) == dir {
		return nil
	}
	// The longest common prefix ending at a component boundary.
	n := 0
	for n < len(cur) && n < len(dir) && cur[n] == dir[n] {
		n++
	}
	if !(n == len(cur) || cur[n] == '/') || !(n == len(dir) || dir[n] == '/') {
		for n > 0 && cur[n-1] != '/' {
			n--
		}
		if n > 0 {
			n-- // the slash
		}
	}
	keep := 0
	for keep < len(c.levels) && c.levels[keep].end <= n {
		keep++
	}
	for len(c.levels) > keep {
		if err := c.up(); err != nil {
			return err
		}
	}
	rest := dir[len(c.path):]
	for len(rest) > 0 {
		rest = strings.TrimPrefix(rest, "/")
		name := rest
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			name, rest = rest[:i], rest[i:]
		} else {
			rest = ""
		}
		if err := c.down(name); err != nil {
			return err
		}
	}
	return nil
}

// dirReader lists a directory in batches through its descriptor, and
// knows the position after each entry so that a walk can leave a
// directory and come back to where it was.
type dirReader struct {
	fd       int
	buf      []byte
	pos, n   int
	off      int64 // position after the entry last returned
	finished bool
}

func newDirReader(buf []byte) *dirReader { return &dirReader{fd: -1, buf: buf} }

// reset starts reading fd at off (0: the beginning).
func (r *dirReader) reset(fd int, off int64) error {
	r.fd, r.pos, r.n, r.off, r.finished = fd, 0, 0, off, false
	_, err := unix.Seek(fd, off, 0)
	return err
}

// next returns the next entry other than "." and "..", or ok false at the
// end. typ is a DT_* constant, DT_UNKNOWN where the filesystem does not
// say.
func (r *dirReader) next() (name string, typ uint8, ok bool, err error) {
	for {
		if r.pos >= r.n {
			if r.finished {
				return "", 0, false, nil
			}
			n, err := unix.Getdents(r.fd, r.buf)
			if err != nil {
				return "", 0, false, err
			}
			if n <= 0 {
				r.finished = true
				return "", 0, false, nil
			}
			r.pos, r.n = 0, n
		}
		// struct linux_dirent64: ino u64, off s64, reclen u16, type u8, name.
		b := r.buf[r.pos:r.n]
		if len(b) < 19 {
			return "", 0, false, errors.New("short directory entry")
		}
		reclen := int(*(*uint16)(unsafe.Pointer(&b[16])))
		if reclen < 19 || reclen > len(b) {
			return "", 0, false, errors.New("malformed directory entry")
		}
		off := *(*int64)(unsafe.Pointer(&b[8]))
		typ := b[18]
		nameb := b[19:reclen]
		if i := indexZero(nameb); i >= 0 {
			nameb = nameb[:i]
		}
		r.pos += reclen
		r.off = off
		if s := string(nameb); s != "." && s != ".." {
			return s, typ, true, nil
		}
	}
}

func indexZero(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return -1
}

// entryType returns the DT_* type of name in dirfd, asking the
// filesystem when the listing did not say.
func entryType(dirfd int, name string, typ uint8) (uint8, error) {
	if typ != unix.DT_UNKNOWN {
		return typ, nil
	}
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return 0, err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return unix.DT_DIR, nil
	}
	return unix.DT_REG, nil
}

// ensureAccess gives the owner the permissions need on a directory open
// as fd when it lacks them and the job owns it (root needs none). It
// returns the mode to put back, or ok false when nothing was changed.
func ensureAccess(fd int, need uint32) (orig uint32, changed bool, err error) {
	euid := unix.Geteuid()
	if euid == 0 {
		return 0, false, nil
	}
	st, err := statFD(fd)
	if err != nil {
		return 0, false, err
	}
	mode := st.Mode & 0o7777
	if mode&need == need || int(st.Uid) != euid {
		return 0, false, nil
	}
	if err := fdChmod(fd, mode|need); err != nil {
		return 0, false, err
	}
	return mode, true, nil
}

// removeAll removes name in dirfd and everything below it, making
// directories the job owns readable and writable on the way down. It
// never follows a symlink and holds two descriptors whatever the depth.
func removeAll(dirfd int, name string) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil || err == unix.ENOENT {
		return nil
	}
	if err != unix.EISDIR && err != unix.EPERM {
		return err
	}
	if err = unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR); err == nil || err == unix.ENOENT {
		return nil
	}
	if err != unix.ENOTEMPTY && err != unix.EEXIST && err != unix.EACCES && err != unix.EPERM {
		return err
	}
	// Work below a private top whose parent is dirfd, so that the cursor
	// can climb back to it.
	c, err := newCursor(dirfd, false)
	if err != nil {
		return err
	}
	defer c.close()
	var first error
	note := func(err error) {
		if first == nil {
			first = err
		}
	}
	r := newDirReader(make([]byte, 32<<10))
	enter := func(name string) error {
		if err := c.down(name); err != nil {
			return err
		}
		if _, _, err := ensureAccess(c.fd, 0o700); err != nil {
			return err
		}
		// An O_PATH descriptor cannot be listed: open it again now
		// that it is readable.
		fd, err := unix.Openat(c.fd, ".", dirFlags, 0)
		if err != nil {
			return err
		}
		if c.fd != c.root {
			unix.Close(c.fd)
		}
		c.fd = fd
		return r.reset(c.fd, 0)
	}
	if err := enter(name); err != nil {
		return err
	}
	removed := false // in this pass over the current directory
	for {
		e, typ, ok, err := r.next()
		if err != nil {
			return err
		}
		if ok {
			if typ, err = entryType(c.fd, e, typ); err != nil {
				if err != unix.ENOENT {
					note(fmt.Errorf("%s/%s: %w", c.where(), e, err))
				}
				continue
			}
			if typ != unix.DT_DIR {
				if err := unix.Unlinkat(c.fd, e, 0); err != nil && err != unix.ENOENT {
					note(fmt.Errorf("%s/%s: %w", c.where(), e, err))
				} else {
					removed = true
				}
				continue
			}
			err := unix.Unlinkat(c.fd, e, unix.AT_REMOVEDIR)
			if err == nil || err == unix.ENOENT {
				removed = true
				continue
			}
			if err != unix.ENOTEMPTY && err != unix.EEXIST {
				note(fmt.Errorf("%s/%s: %w", c.where(), e, err))
				continue
			}
			c.levels[len(c.levels)-1].off = r.off
			if err := enter(e); err != nil {
				return err
			}
			removed = false
			continue
		}
		// The end of this directory. Removing entries can move others
		// to positions already passed: read it again until a pass
		// removes nothing.
		if removed {
			removed = false
			if err := r.reset(c.fd, 0); err != nil {
				return err
			}
			continue
		}
		leaving := c.where()
		base := leaving[strings.LastIndexByte(leaving, '/')+1:]
		if err := c.up(); err != nil {
			return err
		}
		if c.depth() == 0 {
			if err := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR); err != nil && err != unix.ENOENT {
				note(fmt.Errorf("%s: %w", name, err))
			}
			return first
		}
		err = unix.Unlinkat(c.fd, base, unix.AT_REMOVEDIR)
		if err != nil && err != unix.ENOENT {
			note(fmt.Errorf("%s: %w", leaving, err))
		}
		// up may have handed back an O_PATH descriptor.
		fd, err := unix.Openat(c.fd, ".", dirFlags, 0)
		if err != nil {
			return err
		}
		if c.fd != c.root {
			unix.Close(c.fd)
		}
		c.fd = fd
		if err := r.reset(c.fd, c.levels[len(c.levels)-1].off); err != nil {
			return err
		}
		// Another pass once this one ends, since the directory just
		// removed may have moved others; not when it stays, or the
		// pass would enter it again and again.
		removed = err == nil
	}
}
