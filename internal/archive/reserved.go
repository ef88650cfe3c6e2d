package archive

import "strings"

// ReservedPrefix starts every name the job itself puts into a volume: the
// volume lock, a restore's staging directory, entries a restore moved
// aside. Backups never archive such names and restores never write them,
// at any depth, so that one run's working files can never become part of
// a snapshot, even when a run was killed and left them behind.
const ReservedPrefix = ".snapshot-job-"

// StagingPrefix starts the name of the directory a restore extracts into
// before moving entries into place. It lives inside the target so that
// the final moves are renames on one filesystem, even when the target is
// a volume's mount point.
const StagingPrefix = ReservedPrefix + "restore-"

// lostFound is the directory mkfs.ext4 puts at the root of a volume. It
// holds nothing of the snapshot's, and root owns it with mode 0700, so a
// non-root job could not read it anyway.
const lostFound = "lost+found"

// Reserved reports whether a file name (one path element) is one of the
// job's own.
func Reserved(name string) bool { return strings.HasPrefix(name, ReservedPrefix) }
