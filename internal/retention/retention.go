// Package retention decides which snapshots a prune keeps and which it
// deletes. It does no I/O: the job lists keys, calls Match and Plan, logs
// every Decision and deletes only those with Keep == false.
//
// The rules are a union, as in restic's forget: a snapshot is kept when
// any rule keeps it. On top of the user's rules three safety rules always
// apply once any rule is set:
//
//   - the snapshot this run wrote is kept, whatever its name says;
//   - the newest snapshot is kept, so that a MaxAge-only policy run long
//     after the last backup (the prune verb, a paused CronJob) can never
//     empty the bucket;
//   - a snapshot dated after the run's start is kept and takes no part in
//     the counting (see Plan).
package retention

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/snapshot-job/snapshot-job/internal/snapname"
)

// Policy is the set of keep rules. A zero or negative field switches its
// rule off.
type Policy struct {
	KeepLast    int           // the N newest snapshots
	KeepDaily   int           // the newest of each of the N most recent UTC days that have snapshots
	KeepWeekly  int           // likewise for ISO weeks (UTC)
	KeepMonthly int           // likewise for calendar months (UTC)
	MaxAge      time.Duration // snapshots not older than this, measured from the run's start
}

// Enabled reports whether any rule is set. Without one nothing is deleted.
func (p Policy) Enabled() bool {
	return p.KeepLast > 0 || p.KeepDaily > 0 || p.KeepWeekly > 0 || p.KeepMonthly > 0 || p.MaxAge > 0
}

// String names the rules that are set, for the log line that starts a prune.
func (p Policy) String() string {
	var rules []string
	for _, r := range []struct {
		n    int
		name string
	}{{p.KeepLast, "keep-last"}, {p.KeepDaily, "keep-daily"}, {p.KeepWeekly, "keep-weekly"}, {p.KeepMonthly, "keep-monthly"}} {
		if r.n > 0 {
			rules = append(rules, fmt.Sprintf("%s %d", r.name, r.n))
		}
	}
	if p.MaxAge > 0 {
		rules = append(rules, "max-age "+p.MaxAge.String())
	}
	if len(rules) == 0 {
		return "no rule (keep everything)"
	}
	return strings.Join(rules, ", ")
}

// Snapshot is one matching object and the time in its name.
type Snapshot struct {
	Key  string
	Time time.Time
}

// Match returns the keys that are snapshots of name directly under prefix,
// with the times in their names, newest first, each key once. prefix must
// be the same normalised prefix the backup passes to snapname.Key (empty or
// ending in '/'). Everything else (other names, sub-folders, .bak copies,
// "latest" aliases, neighbouring prefixes such as "snapshots2/") is left
// out, so it can never reach a plan and never be deleted.
func Match(prefix, name string, keys []string) []Snapshot {
	var out []Snapshot
	for _, k := range keys {
		if t, ok := snapname.Parse(prefix, name, k); ok {
			out = append(out, Snapshot{Key: k, Time: t})
		}
	}
	sortNewestFirst(out)
	return uniqueKeys(out)
}

// Decision is the verdict on one snapshot. Reasons names every rule that
// keeps it; for a deletion it says why none does.
type Decision struct {
	Snapshot
	Keep    bool
	Reasons []string
}

// Reason joins Reasons for a log attribute.
func (d Decision) Reason() string { return strings.Join(d.Reasons, "; ") }

// Reason texts that tests and callers may compare against.
const (
	ReasonNoRule      = "no retention rule set"
	ReasonJustWritten = "just written by this run"
	ReasonNewest      = "newest snapshot"
	ReasonNone        = "no rule keeps it"
)

// Plan decides for every snapshot, newest first (ties: by key), each key
// once. It is pure: the same input gives the same output, whatever the
// input order.
//
// now is the run's start: MaxAge is measured from it (a snapshot exactly
// MaxAge old is kept, deletion needs "older than") and it decides what is
// in the future. A snapshot dated after now, other than justWritten, was
// written by a clock that runs ahead of ours; it is kept and does not take
// a KeepLast slot or a day/week/month, so a skewed writer can never push
// real snapshots out. Once now passes its time it is judged like any other.
// (A zero now therefore deletes nothing.)
//
// justWritten is the key this run stored ("" for the prune verb). It is
// always kept, and counted by the rules at the time in its name like any
// other snapshot, even if that time is a little after now.
func Plan(snaps []Snapshot, p Policy, now time.Time, justWritten string) []Decision {
	sorted := slices.Clone(snaps)
	sortNewestFirst(sorted)
	sorted = uniqueKeys(sorted)
	if len(sorted) == 0 {
		return nil
	}
	out := make([]Decision, len(sorted))
	if !p.Enabled() {
		for i, s := range sorted {
			out[i] = Decision{Snapshot: s, Keep: true, Reasons: []string{ReasonNoRule}}
		}
		return out
	}

	periods := []*period{
		{n: p.KeepDaily, name: "daily", of: func(t time.Time) string { return t.Format("2006-01-02") }},
		{n: p.KeepWeekly, name: "weekly", of: func(t time.Time) string {
			y, w := t.ISOWeek()
			return fmt.Sprintf("%04d-W%02d", y, w)
		}},
		{n: p.KeepMonthly, name: "monthly", of: func(t time.Time) string { return t.Format("2006-01") }},
	}
	counted := 0 // snapshots the rules have seen so far
	for i, s := range sorted {
		var why []string
		if justWritten != "" && s.Key == justWritten {
			why = append(why, ReasonJustWritten)
		} else if s.Time.After(now) {
			why = append(why, fmt.Sprintf("dated after this run's start %s (clock skew?); judged once that time has passed", now.UTC().Format(time.RFC3339)))
			out[i] = Decision{Snapshot: s, Keep: true, Reasons: why}
			continue
		}
		counted++
		if counted == 1 {
			why = append(why, ReasonNewest)
		}
		if counted <= p.KeepLast {
			why = append(why, fmt.Sprintf("last (#%d of %d)", counted, p.KeepLast))
		}
		t := s.Time.UTC()
		for _, pr := range periods {
			if r, ok := pr.keeps(t); ok {
				why = append(why, r)
			}
		}
		if p.MaxAge > 0 && now.Sub(s.Time) <= p.MaxAge {
			why = append(why, "within max age "+p.MaxAge.String())
		}
		keep := len(why) > 0
		if !keep {
			why = []string{ReasonNone}
		}
		out[i] = Decision{Snapshot: s, Keep: keep, Reasons: why}
	}
	return out
}

// period is one of the daily/weekly/monthly rules while Plan walks the
// snapshots newest first: the first snapshot seen in a period is its
// newest, and it is kept while fewer than n periods have been kept.
type period struct {
	n     int
	name  string
	of    func(time.Time) string
	kept  int
	last  string
	began bool
}

func (p *period) keeps(t time.Time) (string, bool) {
	if p.kept >= p.n {
		return "", false
	}
	id := p.of(t)
	if p.began && id == p.last {
		return "", false
	}
	p.began, p.last = true, id
	p.kept++
	return fmt.Sprintf("%s %s (#%d of %d)", p.name, id, p.kept, p.n), true
}

func sortNewestFirst(s []Snapshot) {
	slices.SortStableFunc(s, func(a, b Snapshot) int {
		if c := b.Time.Compare(a.Time); c != 0 {
			return c
		}
		return cmp.Compare(a.Key, b.Key)
	})
}

// uniqueKeys drops later entries of a key already seen, so that a listing
// that repeats a key yields one decision and one delete, never two.
func uniqueKeys(s []Snapshot) []Snapshot {
	seen := make(map[string]bool, len(s))
	return slices.DeleteFunc(s, func(x Snapshot) bool {
		dup := seen[x.Key]
		seen[x.Key] = true
		return dup
	})
}
