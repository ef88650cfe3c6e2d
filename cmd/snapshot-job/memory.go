package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/snapshot-job/snapshot-job/internal/archive"
	"github.com/snapshot-job/snapshot-job/internal/config"
	"github.com/snapshot-job/snapshot-job/internal/job"
	"github.com/snapshot-job/snapshot-job/internal/setting"
	"github.com/snapshot-job/snapshot-job/internal/store"
)

// The job's memory is planned, not hoped for: the buffers of a transfer
// (parts or ranges in flight, the compressor's frames, the decoder) are
// sized so that they fit in the pod's limit before anything moves. An
// OOM kill (137) is retried by the Job and re-reads the whole volume each
// time; a plan that cannot fit is a configuration error (exit 2) that
// says how much memory to give.
const (
	// cgroupRoot is where a container sees its own cgroup.
	cgroupRoot = "/sys/fs/cgroup"
	// baseBytes is the rest of the process: the runtime, goroutine
	// stacks, the SDKs' clients, the walk, per-request garbage.
	baseBytes = 64 << 20
	// writeBehindBytes is the extraction's write-behind.
	writeBehindBytes = 4 << 20
	// unlimitedV1 is where cgroup v1 reports "no limit" (the largest page
	// multiple); anything above it is no limit either.
	unlimitedV1 = 1 << 62
)

// memLimit is the memory the job may use, and where that came from.
type memLimit struct {
	bytes  int64 // 0: no limit
	source string
}

func (l memLimit) String() string {
	if l.bytes == 0 {
		return "none"
	}
	return mib(l.bytes) + " (" + l.source + ")"
}

// readMemLimit is GOMEMLIMIT when set, else the cgroup's memory limit
// (v2 memory.max, v1 memory/memory.limit_in_bytes under root), else no
// limit.
func readMemLimit(getenv func(string) string, root string) (memLimit, error) {
	if v := strings.TrimSpace(getenv("GOMEMLIMIT")); v != "" {
		n, err := parseGoMemLimit(v)
		if err != nil {
			return memLimit{}, fmt.Errorf("%w: GOMEMLIMIT=%q: %w", setting.ErrInvalid, v, err)
		}
		if n == math.MaxInt64 {
			return memLimit{source: "GOMEMLIMIT=off"}, nil
		}
		return memLimit{bytes: n, source: "GOMEMLIMIT"}, nil
	}
	for _, f := range []struct{ path, source string }{
		{filepath.Join(root, "memory.max"), "cgroup v2 memory.max"},
		{filepath.Join(root, "memory", "memory.limit_in_bytes"), "cgroup v1 memory.limit_in_bytes"},
	} {
		b, err := os.ReadFile(f.path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return memLimit{}, fmt.Errorf("reading the memory limit from %s: %w", f.path, err)
		}
		s := strings.TrimSpace(string(b))
		if s == "max" {
			return memLimit{source: f.source + " (max)"}, nil
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return memLimit{}, fmt.Errorf("reading the memory limit from %s: %q is not a number", f.path, s)
		}
		if n >= unlimitedV1 {
			return memLimit{source: f.source + " (unlimited)"}, nil
		}
		return memLimit{bytes: n, source: f.source}, nil
	}
	return memLimit{source: "no cgroup limit"}, nil
}

// parseGoMemLimit reads GOMEMLIMIT as the Go runtime does: bytes with an
// optional B, KiB, MiB, GiB or TiB suffix, or "off".
func parseGoMemLimit(s string) (int64, error) {
	if s == "off" {
		return math.MaxInt64, nil
	}
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}} {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = rest, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/mult {
		return 0, errors.New("not a byte count (e.g. 512MiB)")
	}
	return n * mult, nil
}

// memPlan is how the buffers of one run are sized.
type memPlan struct {
	limit         memLimit
	partsInFlight int   // parts (backup) or ranges (restore) in flight; 0: the store streams
	partSize      int64 // part or range size
	workers       int   // compression workers (backup)
	entries       int64 // the snapshot's entries, whose index a backup holds
	bytes         int64 // planned
}

func (p memPlan) log(log *slog.Logger, verb string, estimate int64) {
	attrs := []any{"limit_bytes", p.limit.bytes, "source", p.limit.source,
		"parts_in_flight", p.partsInFlight, "part_size", p.partSize, "planned_bytes", p.bytes}
	if verb == "backup" {
		attrs = append(attrs, "workers", p.workers, "size_estimate", estimate, "entries", p.entries,
			"index_bytes", p.entries*archive.IndexBytesPerEntry)
	}
	log.Info("memory plan", attrs...)
}

// planner sizes the buffers of a run within its limit.
type planner struct {
	limit       memLimit
	store       storeMemory
	partSize    int64 // SNAPSHOT_PART_SIZE
	concurrency int   // SNAPSHOT_UPLOAD_CONCURRENCY
	frame       int64 // the compressor's frame size at the configured level
	workers     int   // compression workers by default (GOMAXPROCS)
}

func newPlanner(cfg config.Config, limit memLimit) planner {
	return planner{
		limit:       limit,
		store:       storeMemoryFor(cfg.Provider),
		partSize:    int64(cfg.PartSize),
		concurrency: cfg.UploadConcurrency,
		frame:       archive.FrameSize(cfg.CompressionLevel),
		workers:     runtime.GOMAXPROCS(0),
	}
}

func (p planner) fits(n int64) bool { return p.limit.bytes == 0 || n <= p.limit.bytes }

// backup plans an upload of about estimate bytes and entries entries:
// the part size the store's part-count limit calls for, then as many
// parts in flight as fit (up to SNAPSHOT_UPLOAD_CONCURRENCY), keeping
// parts in flight before compression workers (a part in flight is the
// network's throughput, a worker only one core's share). The index of the
// entries is held until the end of the object, whatever the workers and
// parts.
func (p planner) backup(estimate, entries int64) (memPlan, error) {
	part := p.store.limits.PartSize(estimate, p.partSize)
	index := entries * archive.IndexBytesPerEntry
	need := func(parts, workers int) int64 {
		n := int64(baseBytes) + int64(workers+2)*2*p.frame + index
		if p.store.buffered {
			n += int64(parts+p.store.putExtra) * part
		}
		return n
	}
	plan := memPlan{limit: p.limit, partSize: part, entries: entries}
	if !p.store.buffered {
		plan.partSize = 0
	}
	for parts := max(p.concurrency, 1); parts >= 1; parts-- {
		for workers := max(p.workers, 1); workers >= 1; workers-- {
			if n := need(parts, workers); p.fits(n) {
				if p.store.buffered {
					plan.partsInFlight = parts
				}
				plan.workers, plan.bytes = workers, n
				return plan, nil
			}
		}
		if !p.store.buffered {
			break
		}
	}
	least := need(1, 1)
	// The index is named when it is what a limit has to grow for.
	indexNote := ""
	if index >= 1<<20 {
		indexNote = fmt.Sprintf(" (%s of it for the index of its %d entries)", mib(index), entries)
	}
	if !p.store.buffered {
		return memPlan{}, fmt.Errorf("%w: a backup needs at least %s (compression, the index of the entries and the job itself)%s; the limit is %s: raise resources.limits.memory to at least %s",
			setting.ErrInvalid, mib(least), indexNote, p.limit, quantity(least))
	}
	lower := ""
	if p.partSize > p.store.limits.PartSize(estimate, 0) {
		lower = ", or lower SNAPSHOT_PART_SIZE"
	}
	return memPlan{}, fmt.Errorf("%w: a snapshot of about %s needs parts of %s; even one part in flight needs %s%s; the limit is %s: raise resources.limits.memory to at least %s%s",
		setting.ErrInvalid, human(estimate), mib(part), mib(least), indexNote, p.limit, quantity(least), lower)
}

// read plans a restore or verify: ranges of the part size, as many in
// flight as fit (up to SNAPSHOT_UPLOAD_CONCURRENCY), and the decoder.
func (p planner) read() (memPlan, error) {
	rng := store.PartSize(0, 0, 0, 0, p.partSize)
	need := func(ranges int) int64 {
		// The decoder: frames in flight on every core (up to
		// archive.MaxDecodeWorkers), see archive.DecodeMemory.
		n := int64(baseBytes+writeBehindBytes) + archive.DecodeMemory(archive.DecodeWorkers(p.workers))
		if p.store.buffered {
			n += int64(ranges+p.store.getExtra) * rng
		}
		return n
	}
	plan := memPlan{limit: p.limit}
	if !p.store.buffered {
		if n := need(0); p.fits(n) {
			plan.bytes = n
			return plan, nil
		}
	}
	for ranges := max(p.concurrency, 1); p.store.buffered && ranges >= 1; ranges-- {
		if n := need(ranges); p.fits(n) {
			plan.partsInFlight, plan.partSize, plan.bytes = ranges, rng, n
			return plan, nil
		}
	}
	least := need(1)
	if !p.store.buffered {
		least = need(0)
		return memPlan{}, fmt.Errorf("%w: reading a snapshot needs at least %s (decompression and the job itself); the limit is %s: raise resources.limits.memory to at least %s",
			setting.ErrInvalid, mib(least), p.limit, quantity(least))
	}
	return memPlan{}, fmt.Errorf("%w: reading a snapshot in ranges of %s needs %s even with one range in flight; the limit is %s: raise resources.limits.memory to at least %s, or lower SNAPSHOT_PART_SIZE",
		setting.ErrInvalid, mib(rng), mib(least), p.limit, quantity(least))
}

// planMemory reads the memory limit and prepares the plan of verb: a
// restore or verify is planned now (its ranges do not depend on the
// snapshot's size) and the store is built with its ranges in flight; a
// backup is planned by the returned function once the source is scanned.
//
// Unless GOGC is set, the collector runs at 25 % heap growth instead of
// 100 %: the heap is mostly a fixed set of large buffers reused for the
// whole run, and the garbage is per-request bookkeeping that accumulates
// with the snapshot's size (measured: a peak of 144 and 145 MiB for 1 and
// 4 GiB, against 148 and 157). Unless GOMEMLIMIT is set, the runtime's
// soft limit is set to the plan, so that the collector keeps the heap
// there instead of letting it grow to twice the live data.
func planMemory(cfg config.Config, verb string, log *slog.Logger) (config.Config, func(estimate, entries int64) (job.Plan, error), error) {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(25)
	}
	limit, err := readMemLimit(os.Getenv, cgroupRoot)
	if err != nil {
		return cfg, nil, err
	}
	p := newPlanner(cfg, limit)
	apply := func(plan memPlan) {
		if os.Getenv("GOMEMLIMIT") == "" {
			debug.SetMemoryLimit(plan.bytes)
		}
	}
	switch verb {
	case "restore", "verify", "files": // files reads a snapshot without an index whole
		plan, err := p.read()
		if err != nil {
			return cfg, nil, err
		}
		plan.log(log, verb, 0)
		apply(plan)
		if plan.partsInFlight > 0 {
			cfg.UploadConcurrency = plan.partsInFlight
		}
		return cfg, nil, nil
	case "backup":
		return cfg, func(estimate, entries int64) (job.Plan, error) {
			plan, err := p.backup(estimate, entries)
			if err != nil {
				return job.Plan{}, err
			}
			plan.log(log, verb, estimate)
			apply(plan)
			return job.Plan{PartsInFlight: plan.partsInFlight, PartSize: plan.partSize, Workers: plan.workers}, nil
		}, nil
	}
	// list and prune hold no transfer buffers.
	return cfg, nil, nil
}

// mib is n in whole MiB, rounded up: what a limit has to be at least.
func mib(n int64) string {
	return strconv.FormatInt((n+(1<<20)-1)>>20, 10) + " MiB"
}

// quantity is n as a Kubernetes quantity in whole Mi, rounded up, to
// paste into resources.limits.memory.
func quantity(n int64) string {
	return strconv.FormatInt((n+(1<<20)-1)>>20, 10) + "Mi"
}

// human is an approximate size for messages.
func human(n int64) string {
	switch {
	case n >= 1<<40:
		return fmt.Sprintf("%.1f TiB", float64(n)/(1<<40))
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	}
	return mib(n)
}
