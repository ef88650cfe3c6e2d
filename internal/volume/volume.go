// Package volume makes the runs that share a snapshot volume visible to
// each other through the volume itself, which is all that pods on
// different nodes have in common.
//
// A restore holds a lock file, LockName, in its target directory for its
// whole run (Acquire). The file stays after the restore: it records a
// generation number that every restore increments, so that a backup that
// read the volume while a restore came and went can tell (Watch). A run
// is seen as alive while it holds an flock on the file (exact on one node,
// and across nodes where the filesystem shares locks, as NFSv4 and CephFS
// do) or, where locks are not shared, while it keeps touching the file
// (a heartbeat every few seconds). A lock is taken over only when its
// holder is provably gone: on the same kernel (same boot id) a free flock
// proves it; from another node, a heartbeat older than StaleAfter is taken
// as proof, and a holder that was merely frozen finds its lock lost at its
// next heartbeat and stops before it moves anything.
package volume

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/snapshot-job/snapshot-job/internal/archive"
)

// ErrBusy: another run holds the volume, a restore is extracting into it
// or was interrupted while moving files in (exit 9; a retry later helps).
var ErrBusy = errors.New("volume busy")

// LockName is the lock file a restore keeps in its target directory.
const LockName = archive.ReservedPrefix + "lock"

// Timing of the heartbeat. A holder touches its lock every Heartbeat; a
// lock from another node untouched for StaleAfter is abandoned. The
// margin between them covers clock skew between nodes (NTP keeps it far
// below a second) and a holder's short stalls (GC, a slow volume).
const (
	Heartbeat  = 10 * time.Second
	StaleAfter = 2 * time.Minute
)

// Phase says how far a restore holding the lock has come, for whoever
// finds the lock abandoned.
type Phase string

const (
	// Extracting: writing into its staging directory only; the target is
	// untouched.
	Extracting Phase = "extracting"
	// Committing: moving entries into the target; an interruption leaves
	// it mixed until the next restore rolls the commit back.
	Committing Phase = "committing"
	// Committed: every entry is in place; only cleanup is left.
	Committed Phase = "committed"
)

// record is the lock file's content: one JSON object padded with spaces
// to recordSize, always written whole at offset 0 in one call, so that a
// reader never sees a mix of two records on a local filesystem (and
// retries a record that does not parse, for those where it could).
type record struct {
	State      string    `json:"state"` // "restoring" or "idle"
	Generation uint64    `json:"generation"`
	Phase      Phase     `json:"phase,omitempty"`
	Token      string    `json:"token,omitempty"`
	Host       string    `json:"host,omitempty"` // the pod's hostname
	Node       string    `json:"node,omitempty"` // NODE_NAME when the chart sets it
	BootID     string    `json:"boot_id,omitempty"`
	PID        int       `json:"pid,omitempty"`
	Started    time.Time `json:"started,omitzero"`
	Ended      time.Time `json:"ended,omitzero"`
}

const (
	stateRestoring = "restoring"
	stateIdle      = "idle"
	recordSize     = 1024
)

func (r record) marshal() ([]byte, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	if len(b) >= recordSize {
		// Only a hostname or node name of hundreds of bytes gets here.
		r.Host, r.Node = truncate(r.Host, 64), truncate(r.Node, 64)
		if b, err = json.Marshal(r); err != nil {
			return nil, err
		}
	}
	out := bytes.Repeat([]byte{' '}, recordSize)
	copy(out, b)
	out[recordSize-1] = '\n'
	return out, nil
}

func parseRecord(b []byte) (record, error) {
	var r record
	b = bytes.TrimRight(b, " \n\x00")
	if err := json.Unmarshal(b, &r); err != nil {
		return r, err
	}
	if r.State != stateIdle && r.State != stateRestoring {
		return r, fmt.Errorf("unknown state %q", r.State)
	}
	return r, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// owner describes the holder of a record for messages.
func (r record) owner() string {
	var parts []string
	if r.Host != "" {
		parts = append(parts, "pod "+r.Host)
	}
	if r.Node != "" {
		parts = append(parts, "node "+r.Node)
	}
	if r.PID != 0 {
		parts = append(parts, fmt.Sprintf("pid %d", r.PID))
	}
	if !r.Started.IsZero() {
		parts = append(parts, "since "+r.Started.UTC().Format(time.RFC3339))
	}
	if len(parts) == 0 {
		return "an unknown run"
	}
	return strings.Join(parts, ", ")
}

// self is what this process writes about itself into a lock.
type self struct {
	host, node, bootID string
	pid                int
}

func whoAmI() self {
	host, _ := os.Hostname()
	boot, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	return self{
		host:   host,
		node:   strings.TrimSpace(os.Getenv("NODE_NAME")),
		bootID: strings.TrimSpace(string(boot)),
		pid:    os.Getpid(),
	}
}
