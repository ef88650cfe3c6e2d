package archive

import (
	"archive/tar"
	"fmt"
	"hash/maphash"
	"math"
	"strings"
)

// kind records what an accepted name is, to judge later entries.
type kind uint8

const (
	kindNone        kind = iota
	kindImplicitDir      // a parent no entry named (yet)
	kindDir
	kindFile
	kindSymlink
)

// action says what the reader does with a validated entry.
type action uint8

const (
	actNone     action = iota // the root itself, a PAX global header
	actRestore                // written by a restore
	actSkipType               // a type never restored: FIFO, device, ...
	actSkipName               // a name a restore never writes (skipReason says why)
)

// validator applies the rules of an extraction to every entry: names stay
// below the target, nothing is written through a symlink or below a
// file, hard links point to files met earlier, and nothing exceeds the
// bounds in limits.go. Verify and Extract share it, so that what a
// restore would refuse, verify refuses with the same message.
//
// It remembers a keyed 64-bit digest of every path instead of the path:
// its memory depends on the number of paths (bounded by MaxNames), not on
// their length. Every check is one left-to-right pass over the name plus
// one table probe per new parent directory, so that the work is linear in
// the bytes of the names.
//
// A digest collision cannot make a restore unsafe: the extractor resolves
// every path one component at a time relative to a directory it opened,
// never following a symlink (O_NOFOLLOW) nor leaving the staging
// directory, so a path the validator wrongly believed to be a plain
// directory makes that restore fail instead of writing elsewhere; and a
// name wrongly believed to be known makes a valid archive refused. With a
// random seed per run an archive cannot be built to collide; by chance,
// two of n paths share 61 bits with probability about n²/2⁶², 4·10⁻⁶ for
// MaxNames paths, 2·10⁻⁷ for a million and 2·10⁻⁹ for 100,000.
type validator struct {
	seed  maphash.Seed
	names digestSet

	implied  int   // directories currently implied, never named
	dirBytes int64 // what the extractor keeps for directories (MaxDirMetadata)
	sparse   int64 // logical size of the sparse entries (MaxSparseSize)

	// Caps, from limits.go; tests lower them.
	limits

	prefixes []uint64 // scratch: digests of a name's parent directories

	// Work done, for tests that prove it linear: bytes hashed and
	// table probes.
	hashed, probes int64
}

// limits are the caps a validator applies: those of limits.go, lower in
// tests.
type limits struct {
	maxNames, maxImplied int
	maxDirBytes          int64
}

func defaultLimits() limits {
	return limits{maxNames: MaxNames, maxImplied: MaxImpliedDirs, maxDirBytes: MaxDirMetadata}
}

func newValidator(lim limits) *validator {
	if lim == (limits{}) {
		lim = defaultLimits()
	}
	return &validator{seed: maphash.MakeSeed(), limits: lim}
}

// verdict is the validator's decision on one entry.
type verdict struct {
	name   string // cleaned and relative; "" for actNone
	act    action
	reason string // for actSkipName
}

// check validates h. Errors wrap ErrUnsafe (the entry would escape the
// target or go through a link) or ErrCorrupt (it breaks a bound or is
// malformed); both mean exit 7.
func (v *validator) check(h *tar.Header) (verdict, error) {
	if h.Typeflag == tar.TypeXGlobalHeader {
		return verdict{}, nil
	}
	name, err := cleanName(h.Name)
	if err != nil || name == "" {
		return verdict{}, err
	}
	if reason := skippedName(name); reason != "" {
		return verdict{name: name, act: actSkipName, reason: reason}, nil
	}
	var k kind
	switch h.Typeflag {
	case tar.TypeDir:
		k = kindDir
	case tar.TypeReg, tar.TypeGNUSparse:
		if h.Size < 0 {
			return verdict{}, fmt.Errorf("%w: entry %s has a negative size", ErrCorrupt, quote(name))
		}
		if isSparse(h) {
			v.sparse += h.Size
			if v.sparse > MaxSparseSize || v.sparse < 0 {
				return verdict{}, fmt.Errorf("%w: the archive's sparse files (GNU tar --sparse) add up to more than %d GiB with entry %s (MaxSparseSize); restore it with tar", ErrCorrupt, MaxSparseSize>>30, quote(name))
			}
		}
		k = kindFile
	case tar.TypeSymlink:
		switch {
		case h.Linkname == "":
			return verdict{}, fmt.Errorf("%w: symlink %s has no target", ErrCorrupt, quote(name))
		case strings.IndexByte(h.Linkname, 0) >= 0:
			return verdict{}, fmt.Errorf("%w: symlink %s has a target containing NUL", ErrCorrupt, quote(name))
		case len(h.Linkname) > MaxSymlinkTarget:
			return verdict{}, fmt.Errorf("%w: symlink %s has a target of %d bytes; Linux accepts at most %d (PATH_MAX)", ErrCorrupt, quote(name), len(h.Linkname), MaxSymlinkTarget)
		}
		k = kindSymlink
	case tar.TypeLink:
		target, err := cleanName(h.Linkname)
		if err != nil {
			return verdict{}, fmt.Errorf("%w: hard link %s points outside the target: %w", ErrUnsafe, quote(name), err)
		}
		if target == "" {
			return verdict{}, fmt.Errorf("%w: hard link %s points to the target directory itself", ErrUnsafe, quote(name))
		}
		if reason := skippedName(target); reason != "" {
			return verdict{name: name, act: actSkipName, reason: "hard link to an entry that is skipped: " + reason}, nil
		}
		d := v.digest(target)
		if got, _ := v.names.get(d, &v.probes); got != kindFile {
			return verdict{}, fmt.Errorf("%w: hard link %s points to %s, which is not a file earlier in the archive", ErrUnsafe, quote(name), quote(h.Linkname))
		}
		k = kindFile
	default:
		// Reported and skipped by the caller; nothing is written, so
		// nothing is learnt from its name either.
		return verdict{name: name, act: actSkipType}, nil
	}
	if h.Uid < 0 || h.Uid > math.MaxUint32-1 || h.Gid < 0 || h.Gid > math.MaxUint32-1 {
		return verdict{}, fmt.Errorf("%w: entry %s has an owner (uid %d, gid %d) no Linux system can hold", ErrCorrupt, quote(name), h.Uid, h.Gid)
	}
	if err := v.add(name, k); err != nil {
		return verdict{}, err
	}
	if k == kindDir {
		v.dirBytes += int64(len(name)) + dirMetaOverhead
		if v.dirBytes > v.maxDirBytes {
			return verdict{}, fmt.Errorf("%w: the archive's directories need more than %d MiB to restore (MaxDirMetadata): too many directories or too long names", ErrCorrupt, v.maxDirBytes>>20)
		}
	}
	return verdict{name: name, act: actRestore}, nil
}

// isSparse: a sparse entry, in the old GNU format or one of the PAX
// ones, whose holes archive/tar hands out as zeros.
func isSparse(h *tar.Header) bool {
	if h.Typeflag == tar.TypeGNUSparse {
		return true
	}
	for k := range h.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// digest hashes a whole name.
func (v *validator) digest(name string) uint64 {
	v.hashed += int64(len(name))
	return maphash.String(v.seed, name)
}

// add records name as k after checking its parents and itself.
func (v *validator) add(name string, k kind) error {
	// The digests of every parent ("a", "a/b" for "a/b/c") and of the
	// name, in one pass: maphash's value depends only on the bytes
	// written so far, so a prefix's digest equals the digest of that
	// prefix written on its own.
	var h maphash.Hash
	h.SetSeed(v.seed)
	v.prefixes = v.prefixes[:0]
	last := 0
	for i := 0; i < len(name); i++ {
		if name[i] == '/' {
			h.WriteString(name[last:i])
			v.prefixes = append(v.prefixes, h.Sum64())
			last = i
		}
	}
	h.WriteString(name[last:])
	full := h.Sum64()
	v.hashed += int64(len(name))

	// Parents, from the longest: the first one known ends the search,
	// because every known path's parents are known directories.
	known := len(v.prefixes)
	for ; known > 0; known-- {
		got, _ := v.names.get(v.prefixes[known-1], &v.probes)
		if got == kindNone {
			continue
		}
		if got == kindSymlink {
			return fmt.Errorf("%w: entry %s would be written through the symlink %s", ErrUnsafe, quote(name), quote(parentAt(name, known-1)))
		}
		if got == kindFile {
			return fmt.Errorf("%w: entry %s would be written below the file %s", ErrUnsafe, quote(name), quote(parentAt(name, known-1)))
		}
		break
	}
	for i := known; i < len(v.prefixes); i++ {
		if err := v.insert(v.prefixes[i], kindImplicitDir); err != nil {
			return err
		}
		v.implied++
		if v.implied > v.maxImplied {
			return fmt.Errorf("%w: the archive implies more than %d directories it does not list as entries (MaxImpliedDirs), as with entry %s", ErrCorrupt, v.maxImplied, quote(name))
		}
	}

	prev, slot := v.names.get(full, &v.probes)
	switch {
	case prev == kindNone:
		return v.insert(full, k)
	case prev == kindImplicitDir && k == kindDir:
		v.names.set(slot, full, kindDir)
		v.implied--
		return nil
	case prev == kindImplicitDir:
		return fmt.Errorf("%w: entry %s is not a directory, but earlier entries are below it", ErrUnsafe, quote(name))
	default:
		return fmt.Errorf("%w: entry %s appears twice", ErrUnsafe, quote(name))
	}
}

func (v *validator) insert(d uint64, k kind) error {
	if v.names.n >= v.maxNames {
		return fmt.Errorf("%w: the archive holds more than %d paths (MaxNames: entries and the directories their names imply)", ErrCorrupt, v.maxNames)
	}
	v.names.add(d, k, &v.probes)
	return nil
}

// parentAt returns the parent of name whose digest is prefixes[i]: the
// name up to its (i+1)-th slash. Only used for messages.
func parentAt(name string, i int) string {
	n := -1
	for j := 0; j <= i; j++ {
		n += 1 + strings.IndexByte(name[n+1:], '/')
	}
	return name[:n]
}

// cleanName returns name relative and cleaned ("a//b/./c/" is "a/b/c"),
// "" for the root, or an error: ErrUnsafe for what would leave the
// target, ErrCorrupt for what no filesystem can hold. One pass, and no
// allocation for a name that is clean already.
func cleanName(name string) (string, error) {
	switch {
	case name == "":
		return "", fmt.Errorf("%w: empty entry name", ErrUnsafe)
	case len(name) > MaxNameLength:
		return "", fmt.Errorf("%w: entry name of %d bytes: at most %d are accepted (MaxNameLength): %s", ErrCorrupt, len(name), MaxNameLength, quote(name))
	case strings.IndexByte(name, 0) >= 0:
		return "", fmt.Errorf("%w: entry name %s contains NUL", ErrUnsafe, quote(name))
	case name[0] == '/':
		return "", fmt.Errorf("%w: absolute entry name %s", ErrUnsafe, quote(name))
	}
	clean := true
	for start := 0; start < len(name); {
		end := strings.IndexByte(name[start:], '/')
		if end < 0 {
			end = len(name)
		} else {
			end += start
		}
		switch part := name[start:end]; {
		case part == "..":
			return "", fmt.Errorf("%w: entry name %s leaves the target", ErrUnsafe, quote(name))
		case part == "" || part == ".":
			clean = false
		case len(part) > MaxComponentLength:
			return "", fmt.Errorf("%w: entry %s has a name component of %d bytes; Linux filesystems hold at most %d (NAME_MAX)", ErrCorrupt, quote(name), len(part), MaxComponentLength)
		}
		start = end + 1
	}
	if clean && name[len(name)-1] != '/' {
		return name, nil
	}
	var b strings.Builder
	b.Grow(len(name))
	for _, part := range strings.Split(name, "/") {
		if part == "" || part == "." {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('/')
		}
		b.WriteString(part)
	}
	return b.String(), nil
}

// skippedName says why a restore never writes a cleaned name, or "".
func skippedName(name string) string {
	if name == lostFound || strings.HasPrefix(name, lostFound+"/") {
		return "lost+found at the root belongs to the volume's filesystem"
	}
	for start := 0; start < len(name); {
		if strings.HasPrefix(name[start:], ReservedPrefix) {
			return "names starting with " + ReservedPrefix + " are snapshot-job's own"
		}
		i := strings.IndexByte(name[start:], '/')
		if i < 0 {
			break
		}
		start += i + 1
	}
	return ""
}

// quote shortens a name for a message: hostile archives carry 64 KiB
// names, and one log line should stay readable.
func quote(name string) string {
	const keep = 200
	if len(name) <= keep {
		return fmt.Sprintf("%q", name)
	}
	return fmt.Sprintf("%q... (%d bytes)", name[:keep], len(name))
}

// digestSet is an open-addressing hash set of digests, each slot holding
// 61 bits of a digest, its kind and an occupied bit. It is split into
// shards that grow one at a time, so that growing never holds two copies
// of the whole table: memory stays within 8 bytes per slot at a load of
// one half or more.
type digestSet struct {
	shards [digestShards]digestShard
	n      int
}

const (
	digestShards   = 256
	digestShardBit = 56 // the top 8 bits pick the shard
	digestKeyMask  = ^uint64(7)
)

type digestShard struct {
	slots []uint64
	n     int
}

func slotValue(d uint64, k kind) uint64 { return d&digestKeyMask | uint64(k-1)<<1 | 1 }

// get returns the kind recorded for d (kindNone if absent) and the slot
// where it is or would go.
func (s *digestSet) get(d uint64, probes *int64) (kind, int) {
	sh := &s.shards[d>>digestShardBit]
	if len(sh.slots) == 0 {
		return kindNone, -1
	}
	mask := len(sh.slots) - 1
	for i := int(d>>3) & mask; ; i = (i + 1) & mask {
		*probes++
		v := sh.slots[i]
		if v == 0 {
			return kindNone, i
		}
		if v&digestKeyMask == d&digestKeyMask {
			return kind(v>>1&3) + 1, i
		}
	}
}

// set overwrites the kind in a slot get returned for d.
func (s *digestSet) set(slot int, d uint64, k kind) {
	s.shards[d>>digestShardBit].slots[slot] = slotValue(d, k)
}

// add inserts d, which get found absent.
func (s *digestSet) add(d uint64, k kind, probes *int64) {
	sh := &s.shards[d>>digestShardBit]
	if (sh.n+1)*4 > len(sh.slots)*3 {
		sh.grow()
	}
	mask := len(sh.slots) - 1
	i := int(d>>3) & mask
	for sh.slots[i] != 0 {
		*probes++
		i = (i + 1) & mask
	}
	sh.slots[i] = slotValue(d, k)
	sh.n++
	s.n++
}

func (sh *digestShard) grow() {
	old := sh.slots
	size := max(2*len(old), 64)
	sh.slots = make([]uint64, size)
	mask := size - 1
	for _, v := range old {
		if v == 0 {
			continue
		}
		i := int(v>>3) & mask
		for sh.slots[i] != 0 {
			i = (i + 1) & mask
		}
		sh.slots[i] = v
	}
}

// shortName is quote without the quotes, for log attributes.
func shortName(name string) string {
	const keep = 200
	if len(name) <= keep {
		return name
	}
	return fmt.Sprintf("%s... (%d bytes)", name[:keep], len(name))
}
