package main

import (
	"context"
	"errors"
	"strings"

	"github.com/snapshot-job/snapshot-job/internal/archive"
	"github.com/snapshot-job/snapshot-job/internal/job"
	"github.com/snapshot-job/snapshot-job/internal/setting"
	"github.com/snapshot-job/snapshot-job/internal/store"
	"github.com/snapshot-job/snapshot-job/internal/volume"
)

// Exit codes of the contract.
const (
	exitOK        = 0
	exitInternal  = 1
	exitConfig    = 2
	exitAccess    = 3
	exitLocal     = 4
	exitTransfer  = 5
	exitPrune     = 6
	exitIntegrity = 7
	exitNothing   = 8
	exitBusy      = 9
)

// classify maps an error to its exit code and a hint on what to do. It is
// the only place that knows the codes. The order matters: a pruning
// failure wraps a store error, a corrupt download may follow a transfer.
// The hint depends on the verb: what a failure left behind, and what to
// do next, differ between a backup, a restore and a verify.
func classify(ctx context.Context, verb string, err error) (int, string) {
	if err == nil {
		return exitOK, ""
	}
	if ctx != nil {
		var sig *signalled
		if errors.As(context.Cause(ctx), &sig) {
			return signalCode(sig.sig), "stopped by " + sig.sig.String() + " after cleanup: no partial snapshot or staging directory was left; run the job again"
		}
	}
	switch {
	case errors.Is(err, archive.ErrIdentity):
		return exitConfig, "set SNAPSHOT_ENCRYPTION_IDENTITY from the Secret that holds the private key (the age identity or ssh private key of one of the snapshot's recipients); retrying will not help"
	case errors.Is(err, setting.ErrInvalid):
		return exitConfig, "fix the variable named above (or the pod's memory limit, when the message names it); retrying will not help"
	case errors.Is(err, job.ErrPrune):
		return exitPrune, "the new snapshot is stored; check that the job may list and delete objects under the prefix; the next run prunes again"
	case errors.Is(err, archive.ErrUnverifiable):
		return exitIntegrity, "the snapshot was not written by snapshot-job (its zstd frames carry no checksums), so verify cannot prove it intact; restore still works and warns; take a new snapshot with snapshot-job backup to get one verify can check"
	case errors.Is(err, archive.ErrCorrupt), errors.Is(err, archive.ErrUnsafe):
		switch verb {
		case "restore":
			return exitIntegrity, "the snapshot is damaged or unsafe and nothing was written; restore an older one with SNAPSHOT_RESTORE_KEY (list shows them)"
		case "verify":
			return exitIntegrity, "the snapshot is damaged or unsafe: a restore of it would stop and write nothing; verify the older ones with SNAPSHOT_RESTORE_KEY (list shows them) and take a new backup"
		case "files":
			return exitIntegrity, "the snapshot's index or archive is damaged: run verify on it, and list an older one with SNAPSHOT_RESTORE_KEY (list shows them)"
		}
		return exitIntegrity, "an integrity check failed and nothing was stored; run the job again, and report it with this log if it happens again"
	case errors.Is(err, job.ErrKeyNotFound):
		return exitNothing, "SNAPSHOT_RESTORE_KEY names no object: copy a key from the output of list, or use latest (SNAPSHOT_RESTORE_IF_MISSING=ok applies only to latest)"
	case errors.Is(err, job.ErrNothingToRestore):
		if verb == "restore" {
			return exitNothing, "no snapshot to restore: check SNAPSHOT_CLOUD_PREFIX and SNAPSHOT_NAME, or set SNAPSHOT_RESTORE_IF_MISSING=ok to succeed on a fresh install"
		}
		what := "no snapshot to " + verb
		if verb == "files" {
			what = "no snapshot to list the files of"
		}
		return exitNothing, what + ": check SNAPSHOT_CLOUD_PREFIX and SNAPSHOT_NAME (list shows the snapshots under the prefix)"
	case errors.Is(err, archive.ErrNoMatch):
		return exitNothing, "no entry of the snapshot matches SNAPSHOT_RESTORE_PATHS and nothing was written: check the paths against the snapshot's entries (they are relative to the restore directory, as stored), or leave the variable empty to restore everything"
	case errors.Is(err, job.ErrNotEmpty):
		return exitNothing, "the restore directory holds data: set SNAPSHOT_RESTORE_IF_NOT_EMPTY=skip to leave it, or overwrite to replace entries of the same name"
	case errors.Is(err, volume.ErrBusy):
		switch verb {
		case "backup":
			return exitBusy, "a restore is writing into SNAPSHOT_SOURCE_DIR, or was interrupted while moving files in, and nothing was stored; back up once it has finished (run an interrupted restore again to complete it); the Job retries (backoffLimit)"
		case "restore":
			return exitBusy, "another restore is writing into SNAPSHOT_RESTORE_DIR and nothing was written; run this one again once it has finished; the Job retries (backoffLimit)"
		}
		return exitBusy, "another run is using the volume; the Job retries (backoffLimit), or run it again once the other run has finished"
	case errors.Is(err, store.ErrAccess):
		return exitAccess, "check the bucket, container or store directory, the region or endpoint, and that the credentials (or the job's user) may use it"
	case errors.Is(err, archive.ErrSource):
		return exitLocal, "check that SNAPSHOT_SOURCE_DIR is mounted and readable by the job's user (runAsUser/fsGroup)"
	case errors.Is(err, archive.ErrTarget):
		return exitLocal, "check that SNAPSHOT_RESTORE_DIR is mounted read-write, writable by the job's user, and has space for the snapshot"
	case errors.Is(err, store.ErrExists):
		return exitTransfer, "an object with this name already exists (two runs in the same second?); run the job again"
	case errors.Is(err, store.ErrTransfer):
		return exitTransfer, "the store could not be reached or kept failing after retries; " + leftAsItWas(verb) + "run the job again"
	case errors.Is(err, context.DeadlineExceeded):
		return exitTransfer, "a deadline passed; " + leftAsItWas(verb) + "run the job again"
	}
	return exitInternal, "unexpected error: please report it with this log; running the job again may help"
}

// leftAsItWas says what a failed transfer left behind, for the verbs that
// write.
func leftAsItWas(verb string) string {
	switch verb {
	case "backup":
		return "nothing partial was stored; "
	case "restore":
		return "nothing was written to SNAPSHOT_RESTORE_DIR; "
	}
	return ""
}

// oneLine keeps error text on one line for logs and the termination
// message.
func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }
