package archive

// Bounds on what one archive may hold. They keep restore and verify
// within a fixed amount of memory and time whatever an archive contains,
// and a backup never writes what a restore would refuse.
const (
	// MaxNameLength is the longest entry name, in bytes: far beyond any
	// real tree (PATH_MAX is 4096), well below archive/tar's 1 MiB limit
	// on a PAX record.
	MaxNameLength = 64 << 10
)
