package retention

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/snapshot-job/snapshot-job/internal/snapname"
	"github.com/snapshot-job/snapshot-job/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite testdata/worked-example.md and the generated section of the docs")

const (
	exampleBegin = "<!-- retention-worked-example:begin (generated: go test ./internal/retention -run TestWorkedExample -update) -->\n"
	exampleEnd   = "<!-- retention-worked-example:end -->\n"
)

// workedExample runs a year of hourly backups, each followed by retention
// as the job does it (Match over the listing, then Plan with the run's
// start and the key just written), and renders what is left.
func workedExample(t *testing.T) string {
	p := Policy{KeepLast: 24, KeepDaily: 7, KeepWeekly: 4, KeepMonthly: 6}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	end := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	// Neighbours in the same bucket that pruning must never touch.
	decoys := []string{
		"snapshots/kubeshark-20250101T000000Z.tar.zst.bak",
		"snapshots/old/kubeshark-20250101T000000Z.tar.zst",
		"snapshots/other-20250101T000000Z.tar.zst",
		"snapshots2/kubeshark-20250101T000000Z.tar.zst",
		"kubeshark-20250101T000000Z.tar.zst",
	}
	bucket := slices.Clone(decoys)
	var all []string
	var last []Decision
	runs, deleted, peak := 0, 0, 0
	for at := start; at.Before(end); at = at.Add(time.Hour) {
		k := snapname.Key(prefix, name, at)
		bucket = append(bucket, k)
		all = append(all, k)
		runs++
		snaps := Match(prefix, name, bucket)
		peak = max(peak, len(snaps))
		last = Plan(snaps, p, at, k)
		gone := map[string]bool{}
		for _, d := range last {
			if !d.Keep {
				gone[d.Key] = true
				deleted++
			}
		}
		bucket = slices.DeleteFunc(bucket, func(k string) bool { return gone[k] })
	}
	for _, d := range decoys {
		if !slices.Contains(bucket, d) {
			t.Fatalf("a year of pruning deleted the decoy %q", d)
		}
	}

	// One prune over the whole year must agree with a prune after each
	// backup: an operator can switch retention on late, or run the prune
	// verb after an outage, and end up with the same set.
	final := last[0].Time
	var once, kept []string
	for _, d := range Plan(Match(prefix, name, append(slices.Clone(decoys), all...)), p, final, last[0].Key) {
		if d.Keep {
			once = append(once, d.Key)
		}
	}
	for _, d := range last {
		if d.Keep {
			kept = append(kept, d.Key)
		}
	}
	if !slices.Equal(once, kept) {
		t.Fatalf("one prune at the end keeps %d snapshots, pruning every hour keeps %d:\n%v\n%v", len(once), len(kept), once, kept)
	}

	var b strings.Builder
	fmt.Fprintf(&b, "Hourly backups from %s to %s UTC, each followed by retention with\n", start.Format("2006-01-02 15:04"), final.Format("2006-01-02 15:04"))
	fmt.Fprintf(&b, "`SNAPSHOT_RETENTION_KEEP_LAST=%d`, `_KEEP_DAILY=%d`, `_KEEP_WEEKLY=%d`, `_KEEP_MONTHLY=%d` (no `MAX_AGE`),\n", p.KeepLast, p.KeepDaily, p.KeepWeekly, p.KeepMonthly)
	fmt.Fprintf(&b, "`SNAPSHOT_CLOUD_PREFIX=%s`, `SNAPSHOT_NAME=%s`.\n\n", prefix, name)
	b.WriteString("| | |\n|---|---|\n")
	fmt.Fprintf(&b, "| backups written | %d |\n", runs)
	fmt.Fprintf(&b, "| snapshots deleted | %d |\n", deleted)
	fmt.Fprintf(&b, "| snapshots left after the last run | %d |\n", len(kept))
	fmt.Fprintf(&b, "| most snapshots stored at once (just before a prune) | %d |\n", peak)
	fmt.Fprintf(&b, "| one prune over the whole year instead of one per backup | same %d left |\n\n", len(once))
	b.WriteString("| snapshot left after the last run | kept by |\n|---|---|\n")
	for _, d := range last {
		if d.Keep {
			fmt.Fprintf(&b, "| `%s` | %s |\n", d.Key, d.Reason())
		}
	}
	return b.String()
}

// TestWorkedExample keeps the worked example in docs/retention.md equal to what
// the code does: the section between the markers must match.
func TestWorkedExample(t *testing.T) {
	got := workedExample(t)
	golden := filepath.Join("testdata", "worked-example.md")
	root := testenv.ModuleRoot(t)
	docs := []string{filepath.Join(root, "docs", "retention.md")}
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, doc := range docs {
			text, err := os.ReadFile(doc)
			if err != nil {
				continue
			}
			if before, after, ok := cutSection(string(text)); ok {
				if err := os.WriteFile(doc, []byte(before+exampleBegin+got+exampleEnd+after), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
	}

	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run the test with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("the worked example changed; if that is intended, run go test ./internal/retention -run TestWorkedExample -update\ngot:\n%s\nwant:\n%s", got, want)
	}
	found := 0
	for _, doc := range docs {
		text, err := os.ReadFile(doc)
		if err != nil {
			continue
		}
		before, after, ok := cutSection(string(text))
		if !ok {
			continue
		}
		found++
		section := strings.TrimSuffix(strings.TrimPrefix(string(text), before+exampleBegin), exampleEnd+after)
		if section != got {
			t.Errorf("%s: the worked example differs from what the code does; run go test ./internal/retention -run TestWorkedExample -update", doc)
		}
	}
	if found == 0 {
		t.Errorf("neither %s holds the generated worked example between %q and %q", strings.Join(docs, " nor "), exampleBegin, exampleEnd)
	}
}

// cutSection returns the text around the generated section.
func cutSection(text string) (before, after string, ok bool) {
	before, rest, ok := strings.Cut(text, exampleBegin)
	if !ok {
		return "", "", false
	}
	_, after, ok = strings.Cut(rest, exampleEnd)
	return before, after, ok
}
