package main

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/snapshot-job/snapshot-job/internal/snapname"
)

// retentionCase is a policy and the exact keys it must leave. The seeded
// snapshots are old fixed dates (days, ISO weeks and months do not depend
// on today) plus two recent ones for MAX_AGE.
type retentionCase struct {
	name string
	env  []string
	keep []string // snapshot keys left, besides every decoy
}

func retentionCases(now time.Time) ([]string, []retentionCase) {
	k := func(s string) string { return "snapshots/kubeshark-" + s + ".tar.zst" }
	recent1 := snapname.Key("snapshots/", "kubeshark", now.Add(-time.Hour))
	recent2 := snapname.Key("snapshots/", "kubeshark", now.Add(-72*time.Hour))
	seeded := []string{
		k("20251130T230000Z"),                        // Sun, 2025-W48, November
		k("20251201T080000Z"), k("20251201T200000Z"), // Mon 2025-12-01, 2025-W49
		k("20251207T230000Z"),                        // Sun, 2025-W49
		k("20251229T100000Z"),                        // Mon, 2026-W01 (ISO week spans the new year)
		k("20260101T100000Z"), k("20260101T120000Z"), // Thu, 2026-W01, January
		recent2, recent1,
	}
	cases := []retentionCase{
		{"keep-last 3", []string{"SNAPSHOT_RETENTION_KEEP_LAST", "3"},
			[]string{k("20260101T120000Z"), recent2, recent1}},
		{"keep-daily 4", []string{"SNAPSHOT_RETENTION_KEEP_DAILY", "4"},
			[]string{k("20260101T120000Z"), recent2, recent1, k("20251229T100000Z")}},
		{"keep-weekly 3", []string{"SNAPSHOT_RETENTION_KEEP_WEEKLY", "3"},
			// recent1 and recent2 may share a week or not; the newest of
			// the three most recent weeks is computed below.
			nil},
		{"keep-monthly 3", []string{"SNAPSHOT_RETENTION_KEEP_MONTHLY", "3"}, nil},
		{"max-age 2d", []string{"SNAPSHOT_RETENTION_MAX_AGE", "2d"}, []string{recent1}},
		{"max-age 4d + keep-last 1 (union)", []string{"SNAPSHOT_RETENTION_MAX_AGE", "4d", "SNAPSHOT_RETENTION_KEEP_LAST", "1"},
			[]string{recent2, recent1}},
		{"daily 1 + monthly 4 (union)", []string{"SNAPSHOT_RETENTION_KEEP_DAILY", "1", "SNAPSHOT_RETENTION_KEEP_MONTHLY", "4"}, nil},
	}
	// Rules whose answer depends on where today falls are computed from
	// the calendar, the same way an operator would by hand.
	periodNewest := func(period func(time.Time) string, n int) []string {
		var out []string
		seen := map[string]bool{}
		for i := len(seeded) - 1; i >= 0 && len(seen) < n; i-- {
			t, _ := snapname.Parse("snapshots/", "kubeshark", seeded[i])
			if p := period(t); !seen[p] {
				seen[p] = true
				out = append(out, seeded[i])
			}
		}
		return out
	}
	week := func(t time.Time) string {
		y, w := t.ISOWeek()
		return fmt.Sprintf("%d-W%02d", y, w)
	}
	month := func(t time.Time) string { return t.Format("2006-01") }
	day := func(t time.Time) string { return t.Format("2006-01-02") }
	for i := range cases {
		switch cases[i].name {
		case "keep-weekly 3":
			cases[i].keep = periodNewest(week, 3)
		case "keep-monthly 3":
			cases[i].keep = periodNewest(month, 3)
		case "daily 1 + monthly 4 (union)":
			cases[i].keep = append(periodNewest(day, 1), periodNewest(month, 4)...)
		}
	}
	return seeded, cases
}

// checkRetention seeds a store, runs prune with each case's policy and
// compares what is left, decoys included.
func checkRetention(t *testing.T, seed func(t *testing.T, keys []string) (env, func() []string)) {
	now := time.Now().UTC()
	seeded, cases := retentionCases(now)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, list := seed(t, append(slices.Clone(seeded), decoys...))
			expect(t, runJob(t, e.with(tc.env...), "prune"), 0)
			want := append(slices.Clone(tc.keep), decoys...)
			slices.Sort(want)
			want = slices.Compact(want)
			got := list()
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("left:\n  %q\nwant:\n  %q", got, want)
			}
		})
	}
}
