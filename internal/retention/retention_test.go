package retention

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/snapshot-job/snapshot-job/internal/snapname"
)

const (
	prefix = "snapshots/"
	name   = "kubeshark"
)

func ts(t testing.TB, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func key(t testing.TB, s string) string { return snapname.Key(prefix, name, ts(t, s)) }

// snaps builds the snapshots of name under prefix at the given times,
// through Match as the job will.
func snaps(t testing.TB, times ...string) []Snapshot {
	keys := make([]string, len(times))
	for i, s := range times {
		keys[i] = key(t, s)
	}
	got := Match(prefix, name, keys)
	if len(got) != len(times) {
		t.Fatalf("Match kept %d of %d keys", len(got), len(times))
	}
	return got
}

// kept returns the names' times of the kept decisions, in plan order.
func kept(ds []Decision) []string {
	var out []string
	for _, d := range ds {
		if d.Keep {
			out = append(out, d.Time.UTC().Format(time.RFC3339))
		}
	}
	return out
}

// checkShape asserts what holds for every plan: each input key exactly
// once, newest first, ties by key, reasons always given.
func checkShape(t *testing.T, in []Snapshot, ds []Decision) {
	t.Helper()
	want := map[string]bool{}
	for _, s := range in {
		want[s.Key] = true
	}
	if len(ds) != len(want) {
		t.Fatalf("plan has %d decisions for %d distinct keys", len(ds), len(want))
	}
	for i, d := range ds {
		if !want[d.Key] {
			t.Fatalf("decision %d for %q, which is not an input or is repeated", i, d.Key)
		}
		delete(want, d.Key)
		if len(d.Reasons) == 0 {
			t.Errorf("%s: no reason", d.Key)
		}
		if !d.Keep && !slices.Equal(d.Reasons, []string{ReasonNone}) {
			t.Errorf("%s deleted with reasons %q", d.Key, d.Reasons)
		}
		if i > 0 {
			p := ds[i-1]
			if p.Time.Before(d.Time) || p.Time.Equal(d.Time) && p.Key > d.Key {
				t.Errorf("decision %d (%s %s) sorts before %d (%s %s)", i-1, p.Key, p.Time, i, d.Key, d.Time)
			}
		}
	}
}

func TestCalendarFacts(t *testing.T) {
	// The table below leans on these; a wrong assumption here would make
	// its expectations wrong, not the code.
	for _, c := range []struct {
		at   string
		day  time.Weekday
		year int
		week int
	}{
		{"2026-11-22T12:00:00Z", time.Sunday, 2026, 47},
		{"2026-11-23T12:00:00Z", time.Monday, 2026, 48},
		{"2026-11-29T12:00:00Z", time.Sunday, 2026, 48},
		{"2026-11-30T12:00:00Z", time.Monday, 2026, 49},
		{"2026-12-27T12:00:00Z", time.Sunday, 2026, 52},
		{"2026-12-28T12:00:00Z", time.Monday, 2026, 53},
		{"2027-01-01T12:00:00Z", time.Friday, 2026, 53},
		{"2027-01-03T12:00:00Z", time.Sunday, 2026, 53},
		{"2027-01-04T12:00:00Z", time.Monday, 2027, 1},
		{"2024-12-29T12:00:00Z", time.Sunday, 2024, 52},
		{"2024-12-30T12:00:00Z", time.Monday, 2025, 1},
	} {
		at := ts(t, c.at)
		y, w := at.ISOWeek()
		if at.Weekday() != c.day || y != c.year || w != c.week {
			t.Errorf("%s is %s of %d-W%02d, the table assumes %s of %d-W%02d", c.at, at.Weekday(), y, w, c.day, c.year, c.week)
		}
	}
}

func TestPlan(t *testing.T) {
	for _, c := range []struct {
		name        string
		times       []string
		p           Policy
		now         string
		justWritten string // a time of one of times, or ""
		want        []string
	}{
		{
			name:  "empty list",
			p:     Policy{KeepLast: 3, MaxAge: time.Hour},
			now:   "2026-11-26T12:00:00Z",
			times: nil,
			want:  nil,
		},
		{
			name:  "no rule keeps everything, however old",
			times: []string{"2001-01-01T00:00:00Z", "2026-11-26T10:00:00Z", "2030-01-01T00:00:00Z"},
			now:   "2026-11-26T12:00:00Z",
			want:  []string{"2030-01-01T00:00:00Z", "2026-11-26T10:00:00Z", "2001-01-01T00:00:00Z"},
		},
		{
			name:  "negative counts are off, not keep-all",
			times: []string{"2026-11-26T09:00:00Z", "2026-11-26T10:00:00Z"},
			p:     Policy{KeepLast: -1, KeepDaily: -1, KeepWeekly: -1, KeepMonthly: -1, MaxAge: -time.Hour},
			now:   "2026-11-26T12:00:00Z",
			want:  []string{"2026-11-26T10:00:00Z", "2026-11-26T09:00:00Z"},
		},
		{
			name:  "keep-last 3 of 5",
			times: []string{"2026-11-26T10:00:00Z", "2026-11-26T11:00:00Z", "2026-11-26T12:00:00Z", "2026-11-26T13:00:00Z", "2026-11-26T14:00:00Z"},
			p:     Policy{KeepLast: 3},
			now:   "2026-11-26T14:30:00Z",
			want:  []string{"2026-11-26T14:00:00Z", "2026-11-26T13:00:00Z", "2026-11-26T12:00:00Z"},
		},
		{
			name:  "keep-last larger than the list",
			times: []string{"2026-11-26T10:00:00Z", "2020-11-26T11:00:00Z"},
			p:     Policy{KeepLast: 30},
			now:   "2026-11-26T14:30:00Z",
			want:  []string{"2026-11-26T10:00:00Z", "2020-11-26T11:00:00Z"},
		},
		{
			name:  "day boundary: last second of a day and first of the next are different days",
			times: []string{"2026-11-24T12:00:00Z", "2026-11-25T00:00:00Z", "2026-11-25T23:59:59Z", "2026-11-26T00:00:00Z", "2026-11-26T06:00:00Z"},
			p:     Policy{KeepDaily: 2},
			now:   "2026-11-26T07:00:00Z",
			want:  []string{"2026-11-26T06:00:00Z", "2026-11-25T23:59:59Z"},
		},
		{
			name:  "daily counts only days that have snapshots",
			times: []string{"2026-11-01T05:00:00Z", "2026-11-01T06:00:00Z", "2026-11-05T01:00:00Z", "2026-11-20T10:00:00Z", "2026-11-20T11:00:00Z"},
			p:     Policy{KeepDaily: 3},
			now:   "2026-11-26T00:00:00Z",
			want:  []string{"2026-11-20T11:00:00Z", "2026-11-05T01:00:00Z", "2026-11-01T06:00:00Z"},
		},
		{
			name:  "ISO week boundary: Sunday 23:59:59 and Monday 00:00 are different weeks",
			times: []string{"2026-11-22T23:59:59Z", "2026-11-23T00:00:00Z", "2026-11-29T10:00:00Z", "2026-11-29T23:59:59Z", "2026-11-30T00:00:00Z", "2026-12-01T00:00:00Z"},
			p:     Policy{KeepWeekly: 2},
			now:   "2026-12-02T00:00:00Z",
			want:  []string{"2026-12-01T00:00:00Z", "2026-11-29T23:59:59Z"},
		},
		{
			name:  "weeks that have snapshots, not calendar weeks",
			times: []string{"2026-06-01T00:00:00Z", "2026-09-01T00:00:00Z", "2026-09-02T00:00:00Z", "2026-11-30T00:00:00Z"},
			p:     Policy{KeepWeekly: 3},
			now:   "2026-12-02T00:00:00Z",
			want:  []string{"2026-11-30T00:00:00Z", "2026-09-02T00:00:00Z", "2026-06-01T00:00:00Z"},
		},
		{
			name:  "a week spanning the new year is one week (2026-W53)",
			times: []string{"2026-12-27T12:00:00Z", "2026-12-28T00:00:00Z", "2026-12-31T23:59:59Z", "2027-01-01T00:00:00Z", "2027-01-03T23:59:59Z", "2027-01-04T00:00:00Z"},
			p:     Policy{KeepWeekly: 2},
			now:   "2027-01-04T01:00:00Z",
			want:  []string{"2027-01-04T00:00:00Z", "2027-01-03T23:59:59Z"},
		},
		{
			name:  "the same week split by months",
			times: []string{"2026-12-27T12:00:00Z", "2026-12-28T00:00:00Z", "2026-12-31T23:59:59Z", "2027-01-01T00:00:00Z", "2027-01-03T23:59:59Z", "2027-01-04T00:00:00Z"},
			p:     Policy{KeepMonthly: 2},
			now:   "2027-01-04T01:00:00Z",
			want:  []string{"2027-01-04T00:00:00Z", "2026-12-31T23:59:59Z"},
		},
		{
			name:  "the same week split by days",
			times: []string{"2026-12-27T12:00:00Z", "2026-12-28T00:00:00Z", "2026-12-31T23:59:59Z", "2027-01-01T00:00:00Z", "2027-01-03T23:59:59Z", "2027-01-04T00:00:00Z"},
			p:     Policy{KeepDaily: 4},
			now:   "2027-01-04T01:00:00Z",
			want:  []string{"2027-01-04T00:00:00Z", "2027-01-03T23:59:59Z", "2027-01-01T00:00:00Z", "2026-12-31T23:59:59Z"},
		},
		{
			name:  "a week spanning the new year counts once",
			times: []string{"2026-12-20T12:00:00Z", "2026-12-31T12:00:00Z", "2027-01-02T12:00:00Z"},
			p:     Policy{KeepWeekly: 2},
			now:   "2027-01-02T13:00:00Z",
			want:  []string{"2027-01-02T12:00:00Z", "2026-12-20T12:00:00Z"},
		},
		{
			name:  "week 1 that starts in December (2025-W01)",
			times: []string{"2024-12-29T12:00:00Z", "2024-12-30T00:00:00Z", "2025-01-01T00:00:00Z", "2025-01-06T00:00:00Z"},
			p:     Policy{KeepWeekly: 2},
			now:   "2025-01-07T00:00:00Z",
			want:  []string{"2025-01-06T00:00:00Z", "2025-01-01T00:00:00Z"},
		},
		{
			name:  "week 1 that starts in December, by months",
			times: []string{"2024-12-29T12:00:00Z", "2024-12-30T00:00:00Z", "2025-01-01T00:00:00Z", "2025-01-06T00:00:00Z"},
			p:     Policy{KeepMonthly: 2},
			now:   "2025-01-07T00:00:00Z",
			want:  []string{"2025-01-06T00:00:00Z", "2024-12-30T00:00:00Z"},
		},
		{
			name:  "month boundary",
			times: []string{"2026-10-31T23:59:59Z", "2026-11-01T00:00:00Z", "2026-11-30T23:59:59Z", "2026-12-01T00:00:00Z", "2026-12-15T00:00:00Z"},
			p:     Policy{KeepMonthly: 2},
			now:   "2026-12-16T00:00:00Z",
			want:  []string{"2026-12-15T00:00:00Z", "2026-11-30T23:59:59Z"},
		},
		{
			name:  "leap day",
			times: []string{"2028-02-28T23:00:00Z", "2028-02-29T23:00:00Z", "2028-03-01T00:00:00Z"},
			p:     Policy{KeepDaily: 2, KeepMonthly: 2},
			now:   "2028-03-01T01:00:00Z",
			want:  []string{"2028-03-01T00:00:00Z", "2028-02-29T23:00:00Z"},
		},
		{
			name:  "year boundary",
			times: []string{"2026-12-31T22:00:00Z", "2026-12-31T23:59:59Z", "2027-01-01T00:00:00Z", "2027-01-01T01:00:00Z"},
			p:     Policy{KeepMonthly: 3},
			now:   "2027-01-01T02:00:00Z",
			want:  []string{"2027-01-01T01:00:00Z", "2026-12-31T23:59:59Z"},
		},
		{
			name:  "months that have snapshots, across a gap of a year",
			times: []string{"2025-03-10T00:00:00Z", "2025-03-20T00:00:00Z", "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z"},
			p:     Policy{KeepMonthly: 3},
			now:   "2026-12-16T00:00:00Z",
			want:  []string{"2026-12-01T00:00:00Z", "2026-11-01T00:00:00Z", "2025-03-20T00:00:00Z"},
		},
		{
			name:  "union of rules",
			times: []string{"2026-10-15T00:00:00Z", "2026-11-20T00:00:00Z", "2026-11-25T08:00:00Z", "2026-11-25T09:00:00Z", "2026-11-26T08:00:00Z", "2026-11-26T09:00:00Z", "2026-11-26T10:00:00Z"},
			p:     Policy{KeepLast: 2, KeepDaily: 2, KeepMonthly: 2, MaxAge: 26 * time.Hour},
			now:   "2026-11-26T10:30:00Z",
			// last: 10:00, 09:00; daily: 26T10, 25T09; monthly: 26T10 (Nov), 10-15 (Oct);
			// max age 26h reaches back to 25T08:30.
			want: []string{"2026-11-26T10:00:00Z", "2026-11-26T09:00:00Z", "2026-11-26T08:00:00Z", "2026-11-25T09:00:00Z", "2026-10-15T00:00:00Z"},
		},
		{
			name:        "a policy that keeps nothing but the new one",
			times:       []string{"2026-11-26T03:00:00Z", "2026-11-26T04:00:00Z", "2026-11-26T05:00:00Z", "2026-11-26T06:00:00Z"},
			p:           Policy{MaxAge: 30 * time.Minute},
			now:         "2026-11-26T06:00:00Z",
			justWritten: "2026-11-26T06:00:00Z",
			want:        []string{"2026-11-26T06:00:00Z"},
		},
		{
			name:  "max age alone never deletes the newest (prune long after the last backup)",
			times: []string{"2026-09-01T00:00:00Z", "2026-10-01T00:00:00Z"},
			p:     Policy{MaxAge: 7 * 24 * time.Hour},
			now:   "2026-11-26T00:00:00Z",
			want:  []string{"2026-10-01T00:00:00Z"},
		},
		{
			name:  "max age exactly at the boundary is kept, one second more is deleted",
			times: []string{"2026-11-25T11:59:59Z", "2026-11-25T12:00:00Z", "2026-11-26T11:00:00Z"},
			p:     Policy{MaxAge: 24 * time.Hour},
			now:   "2026-11-26T12:00:00Z",
			want:  []string{"2026-11-26T11:00:00Z", "2026-11-25T12:00:00Z"},
		},
		{
			name:        "the snapshot just written is kept even when its name's time is odd",
			times:       []string{"2020-01-01T00:00:00Z", "2026-11-26T09:00:00Z", "2026-11-26T10:00:00Z", "2026-11-26T11:00:00Z"},
			p:           Policy{KeepLast: 2},
			now:         "2026-11-26T12:00:00Z",
			justWritten: "2020-01-01T00:00:00Z",
			want:        []string{"2026-11-26T11:00:00Z", "2026-11-26T10:00:00Z", "2020-01-01T00:00:00Z"},
		},
		{
			name:        "the snapshot just written counts even if named a second after the run's start",
			times:       []string{"2026-11-26T10:00:00Z", "2026-11-26T11:00:00Z", "2026-11-26T12:00:01Z"},
			p:           Policy{KeepLast: 2},
			now:         "2026-11-26T12:00:00Z",
			justWritten: "2026-11-26T12:00:01Z",
			want:        []string{"2026-11-26T12:00:01Z", "2026-11-26T11:00:00Z"},
		},
		{
			name:  "future-dated snapshots are kept and take no keep-last slot",
			times: []string{"2026-11-26T09:00:00Z", "2026-11-26T10:00:00Z", "2026-11-26T11:00:00Z", "2026-11-26T13:00:00Z", "2026-11-27T01:00:00Z", "2026-11-27T02:00:00Z"},
			p:     Policy{KeepLast: 2},
			now:   "2026-11-26T12:00:00Z",
			want:  []string{"2026-11-27T02:00:00Z", "2026-11-27T01:00:00Z", "2026-11-26T13:00:00Z", "2026-11-26T11:00:00Z", "2026-11-26T10:00:00Z"},
		},
		{
			name:  "future-dated snapshots take no day",
			times: []string{"2026-11-25T10:00:00Z", "2026-11-26T09:00:00Z", "2026-11-26T11:00:00Z", "2026-11-27T01:00:00Z", "2026-11-28T01:00:00Z"},
			p:     Policy{KeepDaily: 1},
			now:   "2026-11-26T12:00:00Z",
			want:  []string{"2026-11-28T01:00:00Z", "2026-11-27T01:00:00Z", "2026-11-26T11:00:00Z"},
		},
		{
			name:  "a snapshot named at the run's start is not in the future",
			times: []string{"2026-11-26T11:00:00Z", "2026-11-26T12:00:00Z"},
			p:     Policy{KeepLast: 1},
			now:   "2026-11-26T12:00:00Z",
			want:  []string{"2026-11-26T12:00:00Z"},
		},
		{
			name:  "a zero now (a caller's bug) deletes nothing: every snapshot is in its future",
			times: []string{"2026-11-26T10:00:00Z", "2026-11-26T11:00:00Z"},
			p:     Policy{KeepLast: 1, MaxAge: time.Hour},
			now:   "0001-01-01T00:00:00Z",
			want:  []string{"2026-11-26T11:00:00Z", "2026-11-26T10:00:00Z"},
		},
		{
			name:        "the snapshot just written need not be in the listing",
			times:       []string{"2026-11-26T10:00:00Z", "2026-11-26T11:00:00Z"},
			p:           Policy{KeepLast: 1},
			now:         "2026-11-26T12:00:00Z",
			justWritten: "2026-11-26T12:00:00Z", // not among times: a listing that lags
			want:        []string{"2026-11-26T11:00:00Z"},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := snaps(t, c.times...)
			jw := ""
			if c.justWritten != "" {
				jw = key(t, c.justWritten)
			}
			ds := Plan(in, c.p, ts(t, c.now), jw)
			checkShape(t, in, ds)
			if got := kept(ds); !slices.Equal(got, c.want) {
				t.Errorf("kept %v\nwant %v\nplan:\n%s", got, c.want, dump(ds))
			}
			// Whatever the listing order, the plan is the same.
			rev := slices.Clone(in)
			slices.Reverse(rev)
			if again := Plan(rev, c.p, ts(t, c.now), jw); !reflect.DeepEqual(again, ds) {
				t.Errorf("plan depends on input order:\n%s\nvs\n%s", dump(ds), dump(again))
			}
		})
	}
}

func dump(ds []Decision) string {
	var b strings.Builder
	for _, d := range ds {
		verdict := "delete"
		if d.Keep {
			verdict = "keep  "
		}
		b.WriteString(verdict + " " + d.Key + ": " + d.Reason() + "\n")
	}
	return b.String()
}

func TestPlanReasons(t *testing.T) {
	in := snaps(t, "2026-12-31T23:59:59Z", "2027-01-01T00:00:00Z", "2027-01-03T10:00:00Z", "2027-01-04T00:00:00Z", "2027-01-04T06:00:00Z")
	now := ts(t, "2027-01-04T06:00:00Z")
	ds := Plan(in, Policy{KeepLast: 2, KeepDaily: 2, KeepWeekly: 2, KeepMonthly: 2, MaxAge: 6 * time.Hour}, now, key(t, "2027-01-04T06:00:00Z"))
	want := [][]string{
		{ReasonJustWritten, ReasonNewest, "last (#1 of 2)", "daily 2027-01-04 (#1 of 2)", "weekly 2027-W01 (#1 of 2)", "monthly 2027-01 (#1 of 2)", "within max age 6h0m0s"},
		{"last (#2 of 2)", "within max age 6h0m0s"},
		{"daily 2027-01-03 (#2 of 2)", "weekly 2026-W53 (#2 of 2)"},
		{ReasonNone},
		{"monthly 2026-12 (#2 of 2)"},
	}
	if len(ds) != len(want) {
		t.Fatalf("%d decisions, want %d", len(ds), len(want))
	}
	for i, d := range ds {
		if !slices.Equal(d.Reasons, want[i]) {
			t.Errorf("%s: reasons %q, want %q", d.Key, d.Reasons, want[i])
		}
		if d.Keep != (want[i][0] != ReasonNone) {
			t.Errorf("%s: keep = %v with reasons %q", d.Key, d.Keep, d.Reasons)
		}
	}

	future := Plan(snaps(t, "2026-11-26T13:00:00Z"), Policy{KeepLast: 1}, ts(t, "2026-11-26T12:00:00Z"), "")
	if len(future) != 1 || !future[0].Keep || !strings.Contains(future[0].Reason(), "dated after this run's start 2026-11-26T12:00:00Z") {
		t.Errorf("future-dated snapshot: %+v", future)
	}
	none := Plan(snaps(t, "2026-11-26T13:00:00Z"), Policy{}, ts(t, "2026-11-26T12:00:00Z"), "")
	if len(none) != 1 || !none[0].Keep || !slices.Equal(none[0].Reasons, []string{ReasonNoRule}) {
		t.Errorf("no rule: %+v", none)
	}
}

func TestPlanTiesAndDuplicates(t *testing.T) {
	at := ts(t, "2026-11-26T10:00:00Z")
	// Two keys with the same time cannot happen for one name, but the
	// plan must still not depend on listing order: ties go by key.
	in := []Snapshot{
		{Key: "b", Time: at},
		{Key: "c", Time: at.Add(-time.Hour)},
		{Key: "a", Time: at},
		{Key: "b", Time: at}, // a listing that repeats a key
	}
	for _, p := range []Policy{{KeepLast: 1}, {KeepDaily: 1}, {KeepWeekly: 1}, {KeepMonthly: 1}} {
		for _, order := range [][]Snapshot{in, {in[2], in[1], in[0]}, {in[1], in[3], in[0], in[2]}} {
			ds := Plan(order, p, at, "")
			checkShape(t, order, ds)
			var keys, keptKeys []string
			for _, d := range ds {
				keys = append(keys, d.Key)
				if d.Keep {
					keptKeys = append(keptKeys, d.Key)
				}
			}
			if !slices.Equal(keys, []string{"a", "b", "c"}) || !slices.Equal(keptKeys, []string{"a"}) {
				t.Errorf("%+v over %v: order %v, kept %v; want order [a b c], kept [a]", p, order, keys, keptKeys)
			}
		}
	}
}

func TestPlanUsesUTC(t *testing.T) {
	// 2026-11-26T02:00Z is still the 25th in New York; periods are UTC
	// whatever zone the times arrive in.
	ny := time.FixedZone("EST", -5*3600)
	in := snaps(t, "2026-11-25T20:00:00Z", "2026-11-26T02:00:00Z", "2026-11-30T02:00:00Z", "2026-12-01T02:00:00Z")
	local := slices.Clone(in)
	for i := range local {
		local[i].Time = local[i].Time.In(ny)
	}
	now := ts(t, "2026-12-01T03:00:00Z")
	for _, p := range []Policy{{KeepDaily: 3}, {KeepWeekly: 2}, {KeepMonthly: 2}} {
		want := Plan(in, p, now, "")
		got := Plan(local, p, now.In(ny), "")
		for i := range got {
			got[i].Time = got[i].Time.UTC()
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%v: plan over New York times:\n%s\nover UTC:\n%s", p, dump(got), dump(want))
		}
	}
}

func TestPlanDoesNotModifyInput(t *testing.T) {
	in := snaps(t, "2026-11-26T10:00:00Z", "2026-11-26T11:00:00Z", "2026-11-26T09:00:00Z")
	slices.Reverse(in)
	before := slices.Clone(in)
	Plan(in, Policy{KeepLast: 1}, ts(t, "2026-11-26T12:00:00Z"), "")
	if !slices.Equal(in, before) {
		t.Errorf("Plan reordered its input: %v, was %v", in, before)
	}
}

func TestMatch(t *testing.T) {
	ours := []string{
		"snapshots/kubeshark-20261126T031500Z.tar.zst",
		"snapshots/kubeshark-20261127T031500Z.tar.zst",
		"snapshots/kubeshark-20251231T235959Z.tar.zst",
	}
	decoys := []string{
		"snapshots/kubeshark-20261126T031500Z.tar.zst.bak",
		"snapshots/kubeshark-20261126T031500Z.tar",
		"snapshots/kubeshark-20261126T031500Z.tar.zst.tmp",
		"snapshots/kubeshark-latest.tar.zst",
		"snapshots/latest",
		"snapshots/kubeshark.tar.zst",
		"snapshots/sub/kubeshark-20261126T031500Z.tar.zst",
		"snapshots/kubeshark/kubeshark-20261126T031500Z.tar.zst",
		"snapshots2/kubeshark-20261126T031500Z.tar.zst",
		"snapshotskubeshark-20261126T031500Z.tar.zst",
		"kubeshark-20261126T031500Z.tar.zst",
		"other/snapshots/kubeshark-20261126T031500Z.tar.zst",
		"snapshots/kubeshark-2-20261126T031500Z.tar.zst",
		"snapshots/kubeshark2-20261126T031500Z.tar.zst",
		"snapshots/kubesharkx-20261126T031500Z.tar.zst",
		"snapshots/other-20261126T031500Z.tar.zst",
		"snapshots/kubeshark-20261126T031500.tar.zst",
		"snapshots/kubeshark-20261126t031500z.tar.zst",
		"snapshots/kubeshark-20261326T031500Z.tar.zst",
		"snapshots/kubeshark-20261126T031500Z.TAR.ZST",
		"snapshots/kubeshark-20261126T031500Z.tar.zst/",
		"snapshots/",
		"",
	}
	keys := append(slices.Clone(decoys), ours...)
	keys = append(keys, ours[0]) // listed twice
	got := Match(prefix, name, keys)
	want := []Snapshot{
		{Key: ours[1], Time: time.Date(2026, 11, 27, 3, 15, 0, 0, time.UTC)},
		{Key: ours[0], Time: time.Date(2026, 11, 26, 3, 15, 0, 0, time.UTC)},
		{Key: ours[2], Time: time.Date(2025, 12, 31, 23, 59, 59, 0, time.UTC)},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Match = %v\nwant %v", got, want)
	}
	if got := Match(prefix, name, decoys); len(got) != 0 {
		t.Errorf("Match over decoys only = %v", got)
	}
	if got := Match("", name, []string{"kubeshark-20261126T031500Z.tar.zst", ours[0]}); len(got) != 1 || got[0].Key != "kubeshark-20261126T031500Z.tar.zst" {
		t.Errorf("Match with empty prefix = %v", got)
	}
	if got := Match(prefix, name, nil); got != nil {
		t.Errorf("Match(nil) = %v", got)
	}
}

func TestPolicyString(t *testing.T) {
	for p, want := range map[Policy]string{
		{}:             "no rule (keep everything)",
		{KeepLast: -2}: "no rule (keep everything)",
		{KeepLast: 24, KeepDaily: 7, KeepWeekly: 4, KeepMonthly: 6, MaxAge: 720 * time.Hour}: "keep-last 24, keep-daily 7, keep-weekly 4, keep-monthly 6, max-age 720h0m0s",
		{KeepMonthly: 1}: "keep-monthly 1",
	} {
		if got := p.String(); got != want {
			t.Errorf("%#v.String() = %q, want %q", p, got, want)
		}
	}
}

func ExamplePlan() {
	keys := []string{
		"snapshots/kubeshark-20261124T030000Z.tar.zst",
		"snapshots/kubeshark-20261125T030000Z.tar.zst",
		"snapshots/kubeshark-20261126T030000Z.tar.zst",
		"snapshots/kubeshark-20261126T030000Z.tar.zst.bak", // not ours: never in the plan
		"snapshots2/kubeshark-20200101T000000Z.tar.zst",    // neither
	}
	now := time.Date(2026, 11, 26, 3, 0, 0, 0, time.UTC)
	for _, d := range Plan(Match("snapshots/", "kubeshark", keys), Policy{KeepLast: 1, MaxAge: 24 * time.Hour}, now, "snapshots/kubeshark-20261126T030000Z.tar.zst") {
		fmt.Println(d.Keep, d.Key, d.Reason())
	}
	// Output:
	// true snapshots/kubeshark-20261126T030000Z.tar.zst just written by this run; newest snapshot; last (#1 of 1); within max age 24h0m0s
	// true snapshots/kubeshark-20261125T030000Z.tar.zst within max age 24h0m0s
	// false snapshots/kubeshark-20261124T030000Z.tar.zst no rule keeps it
}

// Encrypted and plain snapshots of one name are one series: turning
// encryption on or off never resets retention, nor keeps two of each.
func TestEncryptedAndPlainAreOneSeries(t *testing.T) {
	keys := []string{
		"s/k-20261101T000000Z.tar.zst",
		"s/k-20261102T000000Z.tar.zst.age",
		"s/k-20261103T000000Z.tar.zst",
		"s/k-20261104T000000Z.tar.zst.age",
		"s/k-20261104T000000Z.tar.zst.age.bak",
		"s/other-20261105T000000Z.tar.zst.age",
	}
	snaps := Match("s/", "k", keys)
	if len(snaps) != 4 || snaps[0].Key != keys[3] || snaps[3].Key != keys[0] {
		t.Fatalf("Match = %v, want the four snapshots of k, newest first", snaps)
	}
	var kept []string
	for _, d := range Plan(snaps, Policy{KeepLast: 2}, time.Date(2026, 11, 5, 0, 0, 0, 0, time.UTC), "") {
		if d.Keep {
			kept = append(kept, d.Key)
		}
	}
	if want := []string{keys[3], keys[2]}; !slices.Equal(kept, want) {
		t.Errorf("kept %q, want %q", kept, want)
	}
}
