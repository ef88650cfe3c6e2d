package archive

// Bounds on what one archive may hold. They keep restore and verify
// within a fixed amount of memory and time whatever an archive contains,
// and a backup never writes what a restore would refuse. An archive that
// goes beyond one is refused as corrupt (exit 7) by verify and restore
// alike, with a message naming the bound, before anything moves into the
// target.
const (
	// MaxNameLength is the longest entry name, in bytes: far beyond any
	// real tree (PATH_MAX is 4096), well below archive/tar's 1 MiB limit
	// on a PAX record. It applies to hard link targets too.
	MaxNameLength = 64 << 10

	// MaxComponentLength is the longest name of one file or directory
	// (NAME_MAX): no Linux filesystem can hold a longer one, so a restore
	// could not write it.
	MaxComponentLength = 255

	// MaxSymlinkTarget is the longest symlink target the kernel accepts
	// (PATH_MAX less the terminating NUL).
	MaxSymlinkTarget = 4095

	// MaxNames is the number of distinct paths one archive may hold:
	// its entries plus the parent directories their names imply. The
	// reader keeps a 64-bit digest of each (never the name itself), in a
	// table of at most 8 bytes per slot at a load of one half or more:
	// 64 MiB at the bound, whatever the names' lengths.
	MaxNames = 1 << 22

	// MaxImpliedDirs is the number of directories an archive may imply
	// at one time without listing them as entries (a name "a/b/c" with no
	// entry "a/" or "a/b/" implies two). Tar and snapshot-job list every
	// directory, usually before its contents, so real archives imply
	// none or a few. The bound keeps a small hostile object (one 64 KiB
	// name implies 32,000 directories) from making a restore create
	// millions of directories before the archive is refused.
	MaxImpliedDirs = 1 << 16

	// MaxSparseSize is the total size of the sparse entries (GNU tar
	// --sparse) of one archive. The holes of a sparse file are not in the
	// stream, so reading them costs time that the object's size does not
	// bound: a 10 KB object can claim exabytes. 1 TiB of holes takes about
	// 15 s to verify and a minute to restore. snapshot-job itself never
	// writes sparse entries (it stores zeros, which compress to nothing).
	MaxSparseSize = 1 << 40

	// MaxDirMetadata bounds the memory a restore uses to remember the
	// directories of the archive, whose modes and times can only be
	// applied once everything below them is in place: the bytes of their
	// names plus dirMetaOverhead per directory. 64 MiB holds 500,000
	// directories with 80-byte names.
	MaxDirMetadata = 64 << 20
)

// dirMetaOverhead is what one remembered directory costs beside its name
// (see dirMeta), counted against MaxDirMetadata.
const dirMetaOverhead = 56
