package volume

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// status is what a look at a lock file found.
type status int

const (
	absent    status = iota // no lock file
	idle                    // no restore holds it
	live                    // a restore holds it and is alive
	abandoned               // a restore held it and is provably gone
)

func (s status) String() string {
	return [...]string{"absent", "idle", "live", "abandoned"}[s]
}

// observation is one look at a lock file.
type observation struct {
	path   string
	status status
	rec    record
	dev    uint64
	ino    uint64
	beat   time.Duration // age of the last heartbeat, for messages
}

// changed reports whether a later look at the same lock file shows that
// a restore started, ended or took it over in between.
func (o observation) changed(later observation) bool {
	return o.status != later.status || o.rec.Generation != later.rec.Generation ||
		o.rec.State != later.rec.State || o.ino != later.ino || o.dev != later.dev
}

// judge holds what deciding liveness needs: who is asking, and the clock.
type judge struct {
	me         self
	now        func() time.Time
	staleAfter time.Duration
}

// inspect looks at the lock file at path without taking it. A record
// that does not parse is read again a few times: on filesystems where a
// write of 1 KiB is not atomic for readers it may be mid-write.
func (j judge) inspect(path string) (observation, error) {
	var last error
	for attempt := range 5 {
		if attempt > 0 {
			time.Sleep(time.Duration(attempt) * 20 * time.Millisecond)
		}
		f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
		if errors.Is(err, fs.ErrNotExist) {
			return observation{path: path, status: absent}, nil
		}
		if err != nil {
			return observation{}, fmt.Errorf("reading the volume lock %s: %w", path, err)
		}
		obs, again, err := j.inspectFileTry(f, path, attempt == 4)
		f.Close()
		if !again {
			return obs, err
		}
		last = err
	}
	return observation{}, last
}

// inspectFile judges an open lock file. again asks for another look: the
// file was replaced meanwhile, or its record is unreadable.
func (j judge) inspectFile(f *os.File, path string) (obs observation, again bool, err error) {
	return j.inspectFileTry(f, path, true)
}

// inspectFileTry is inspectFile; a record that does not parse asks for
// another look, unless last, when it is judged like a restore of an
// unknown run: by its lock and heartbeat.
func (j judge) inspectFileTry(f *os.File, path string, last bool) (obs observation, again bool, err error) {
	obs = observation{path: path}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return obs, false, fmt.Errorf("reading the volume lock %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return obs, false, fmt.Errorf("%s is not a lock file but a %s: remove it", path, fileType(st.Mode))
	}
	obs.dev, obs.ino = uint64(st.Dev), st.Ino
	obs.beat = j.now().Sub(time.Unix(st.Mtim.Unix()))
	rec, perr := readRecord(f)
	switch {
	case perr == nil:
		obs.rec = rec
	case st.Size == 0 || last:
		// Created by an Acquire that has not written its record yet, or
		// damaged: judged like a restore in progress, by its lock and
		// its age.
		obs.rec = record{State: stateRestoring}
	default:
		return obs, true, nil
	}
	if obs.rec.State == stateIdle {
		obs.status = idle
		return obs, false, nil
	}
	held, supported := lockHeld(f)
	if moved, err := replaced(path, obs.dev, obs.ino); err != nil || moved {
		return obs, true, err
	}
	switch {
	case held:
		obs.status = live
	case supported && obs.rec.BootID != "" && obs.rec.BootID == j.me.bootID:
		// Same kernel: a lock that is free has no holder.
		obs.status = abandoned
	case obs.beat > j.staleAfter:
		obs.status = abandoned
	default:
		obs.status = live
	}
	return obs, false, nil
}

// readRecord reads the record at the start of f.
func readRecord(f *os.File) (record, error) {
	buf := make([]byte, 2*recordSize)
	n, err := f.ReadAt(buf, 0)
	if err != nil && err != io.EOF {
		return record{}, err
	}
	return parseRecord(buf[:n])
}

// replaced reports whether path no longer names the file (dev, ino).
func replaced(path string, dev, ino uint64) (bool, error) {
	var st unix.Stat_t
	err := unix.Lstat(path, &st)
	if errors.Is(err, unix.ENOENT) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading the volume lock %s: %w", path, err)
	}
	return uint64(st.Dev) != dev || st.Ino != ino, nil
}

// Open file description locks: unlike flock they exist on NFS (as POSIX
// locks the server keeps), and unlike classic POSIX locks they are not
// dropped when the process closes some other descriptor of the file, and
// F_OFD_GETLK tests one without taking it, so a reader never gets in an
// acquirer's way.
func wholeFile(typ int16) *unix.Flock_t {
	return &unix.Flock_t{Type: typ, Whence: io.SeekStart}
}

// lockHeld tests whether anyone holds a lock on f. supported is false
// when the filesystem has no locks at all.
func lockHeld(f *os.File) (held, supported bool) {
	lk := wholeFile(unix.F_RDLCK)
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_GETLK, lk); err != nil {
		return false, false
	}
	return lk.Type != unix.F_UNLCK, true
}

// takeLock takes the write lock on f without waiting. busy means another
// description holds it; supported is false when the filesystem has no
// locks, and the heartbeat alone has to tell.
func takeLock(f *os.File) (busy, supported bool, err error) {
	err = unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, wholeFile(unix.F_WRLCK))
	switch {
	case err == nil:
		return false, true, nil
	case errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES):
		return true, true, nil
	case errors.Is(err, unix.ENOLCK) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS):
		return false, false, nil
	}
	return false, false, err
}

func fileType(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return "directory"
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFIFO:
		return "FIFO"
	case unix.S_IFSOCK:
		return "socket"
	}
	return "device"
}

// ancestors returns dir and the directories above it on the same
// filesystem, nearest first, with symlinks resolved: the directories
// whose restores would write into dir. A missing dir starts from its
// nearest existing parent.
func ancestors(dir string) ([]string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	for {
		if _, err := os.Stat(abs); err == nil {
			break
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		parent := filepath.Dir(abs)
		if parent == abs {
			break
		}
		abs = parent
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Stat(real, &st); err != nil {
		return nil, err
	}
	dev := st.Dev
	var out []string
	for d := real; ; {
		out = append(out, d)
		parent := filepath.Dir(d)
		if parent == d {
			break
		}
		if err := unix.Stat(parent, &st); err != nil || st.Dev != dev {
			break
		}
		d = parent
	}
	return out, nil
}
