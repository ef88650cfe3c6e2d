package retention

import (
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/snapshot-job/snapshot-job/internal/snapname"
)

// fuzzBase sits next to a year boundary with a week that spans it
// (2026-W53), so that small offsets cross day, week, month and year edges.
var fuzzBase = time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)

// decodeSnaps turns fuzz bytes into snapshots, three bytes each: a signed
// day offset from fuzzBase, an hour, and a minute whose top bit picks one
// of two names. Equal times under one name repeat a key (a listing that
// repeats itself); under two names they tie.
func decodeSnaps(data []byte) []Snapshot {
	var out []Snapshot
	for i := 0; i+3 <= len(data) && len(out) < 120; i += 3 {
		t := fuzzBase.Add(time.Duration(int8(data[i]))*24*time.Hour +
			time.Duration(data[i+1]%24)*time.Hour +
			time.Duration(data[i+2]&0x7f%60)*time.Minute)
		n := "a"
		if data[i+2]&0x80 != 0 {
			n = "b"
		}
		out = append(out, Snapshot{Key: snapname.Key("p/", n, t), Time: t})
	}
	return out
}

func fuzzPolicy(last, daily, weekly, monthly uint8, maxAge uint16) Policy {
	return Policy{
		KeepLast:    int(last%10) - 1, // -1 exercises "negative is off"
		KeepDaily:   int(daily % 10),
		KeepWeekly:  int(weekly % 8),
		KeepMonthly: int(monthly % 8),
		MaxAge:      time.Duration(maxAge%(24*200)) * time.Hour / 2,
	}
}

// oracle states the contract with sets instead of Plan's single pass: the
// union of the rules over the snapshots that are not in the future, plus
// the future ones, the newest and the one just written.
func oracle(in []Snapshot, p Policy, now time.Time, jw string) map[string]bool {
	all := map[string]Snapshot{}
	for _, s := range in {
		all[s.Key] = s
	}
	keep := map[string]bool{}
	if !p.Enabled() {
		for k := range all {
			keep[k] = true
		}
		return keep
	}
	var present []Snapshot
	for k, s := range all {
		switch {
		case k == jw:
			keep[k] = true
			present = append(present, s)
		case s.Time.After(now):
			keep[k] = true
		default:
			present = append(present, s)
		}
	}
	newer := func(a, b Snapshot) bool { return a.Time.After(b.Time) || a.Time.Equal(b.Time) && a.Key < b.Key }
	slices.SortFunc(present, func(a, b Snapshot) int {
		if newer(a, b) {
			return -1
		}
		return 1
	})
	for i, s := range present {
		if i == 0 || i < p.KeepLast || p.MaxAge > 0 && now.Sub(s.Time) <= p.MaxAge {
			keep[s.Key] = true
		}
	}
	for _, r := range []struct {
		n  int
		of func(time.Time) string
	}{
		{p.KeepDaily, func(t time.Time) string { return t.UTC().Format(time.DateOnly) }},
		{p.KeepWeekly, func(t time.Time) string { y, w := t.UTC().ISOWeek(); return fmt.Sprint(y, w) }},
		{p.KeepMonthly, func(t time.Time) string { return t.UTC().Format("2006-01") }},
	} {
		newest := map[string]Snapshot{}
		for _, s := range present {
			if n, ok := newest[r.of(s.Time)]; !ok || newer(s, n) {
				newest[r.of(s.Time)] = s
			}
		}
		tops := slices.Collect(func(yield func(Snapshot) bool) {
			for _, s := range newest {
				if !yield(s) {
					return
				}
			}
		})
		slices.SortFunc(tops, func(a, b Snapshot) int {
			if newer(a, b) {
				return -1
			}
			return 1
		})
		for i := 0; i < r.n && i < len(tops); i++ {
			keep[tops[i].Key] = true
		}
	}
	return keep
}

func FuzzPlan(f *testing.F) {
	// Seeds beyond these live in testdata/fuzz/FuzzPlan.
	f.Add([]byte{0, 10, 0, 0, 11, 0, 0xff, 23, 59, 0xfb, 0, 0}, uint8(3), uint8(2), uint8(2), uint8(2), uint16(0), int16(12), uint8(1))
	f.Add([]byte{}, uint8(4), uint8(0), uint8(0), uint8(0), uint16(10), int16(0), uint8(0))
	f.Add([]byte{0, 1, 0, 0, 1, 0x80, 0, 1, 0}, uint8(2), uint8(1), uint8(0), uint8(0), uint16(0), int16(1), uint8(2))
	f.Fuzz(func(t *testing.T, data []byte, last, daily, weekly, monthly uint8, maxAge uint16, nowHours int16, jwIndex uint8) {
		in := decodeSnaps(data)
		p := fuzzPolicy(last, daily, weekly, monthly, maxAge)
		now := fuzzBase.Add(time.Duration(nowHours) * time.Hour)
		jw := ""
		if jwIndex > 0 && len(in) > 0 {
			jw = in[int(jwIndex-1)%len(in)].Key
		}

		ds := Plan(in, p, now, jw)
		checkShape(t, in, ds)

		want := oracle(in, p, now, jw)
		for _, d := range ds {
			if d.Keep != want[d.Key] {
				t.Errorf("%s: keep = %v, the contract says %v (%s)", d.Key, d.Keep, want[d.Key], d.Reason())
			}
		}
		if len(ds) > 0 {
			if !ds[0].Keep {
				t.Errorf("the newest snapshot %s is deleted", ds[0].Key)
			}
		}
		for _, d := range ds {
			if !d.Keep && (!p.Enabled() || d.Key == jw) {
				t.Errorf("%s deleted (policy %v, just written %q)", d.Key, p, jw)
			}
		}

		// Same input in another order: same plan.
		rev := slices.Clone(in)
		slices.Reverse(rev)
		if again := Plan(rev, p, now, jw); !reflect.DeepEqual(again, ds) {
			t.Errorf("plan depends on input order")
		}

		// Idempotent: planning again over what was kept deletes nothing.
		var keptSnaps []Snapshot
		for _, d := range ds {
			if d.Keep {
				keptSnaps = append(keptSnaps, d.Snapshot)
			}
		}
		for _, d := range Plan(keptSnaps, p, now, jw) {
			if !d.Keep {
				t.Errorf("second plan over the kept set deletes %s", d.Key)
			}
		}

		// Pruning after every backup leaves exactly what one prune over
		// the whole history leaves: the job may run retention on every
		// backup, after an outage, or only via the prune verb.
		order := slices.Clone(ds)
		slices.Reverse(order) // oldest first
		var stored []Snapshot
		var final Decision
		for _, d := range order {
			stored = append(stored, d.Snapshot)
			var next []Snapshot
			for _, e := range Plan(stored, p, d.Time, d.Key) {
				if e.Keep {
					next = append(next, e.Snapshot)
				}
			}
			stored, final = next, d
		}
		if len(order) > 0 {
			var batch []Snapshot
			for _, d := range Plan(in, p, final.Time, final.Key) {
				if d.Keep {
					batch = append(batch, d.Snapshot)
				}
			}
			if !reflect.DeepEqual(stored, batch) {
				t.Errorf("pruning after each backup left %v, one prune at the end leaves %v", stored, batch)
			}
		}
	})
}

var validName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

func FuzzMatch(f *testing.F) {
	f.Add("snapshots/", "kubeshark", int64(0), "")
	f.Add("", "s", int64(-1), "x")
	f.Add("a/b/", "a-b", int64(1<<40), "/kubeshark-20261126T031500Z.tar.zst")
	f.Fuzz(func(t *testing.T, prefix, name string, secs int64, junk string) {
		// Matching is only asked for with a normalised prefix and a valid
		// name (config refuses others).
		if prefix != "" && !strings.HasSuffix(prefix, "/") || !validName.MatchString(name) {
			return
		}
		const lo, hi = 0, 253402300799 // 1970-01-01 .. 9999-12-31T23:59:59Z
		secs = lo + (secs%(hi-lo+1)+(hi-lo+1))%(hi-lo+1)
		at := time.Unix(secs, 0).UTC()
		ours := snapname.Key(prefix, name, at)
		stamp := at.Format(snapname.Layout)

		decoys := []string{
			ours + ".bak", ours + ".tmp", ours + "/", ours + junk + "x",
			"x" + junk + ours,
			prefix + "sub/" + name + "-" + stamp + snapname.Ext,
			prefix + name + "/" + name + "-" + stamp + snapname.Ext,
			prefix + name + "-latest" + snapname.Ext,
			prefix + "latest",
			prefix + name + snapname.Ext,
			prefix + name + "-2-" + stamp + snapname.Ext,
			prefix + name + "2-" + stamp + snapname.Ext,
			prefix + "x" + name + "-" + stamp + snapname.Ext,
			prefix + name + "-" + stamp + ".tar",
			prefix + name + "-" + strings.ToLower(stamp) + snapname.Ext,
			prefix + name + "-" + strings.TrimSuffix(stamp, "Z") + snapname.Ext,
		}
		if prefix != "" {
			bare := strings.TrimSuffix(prefix, "/")
			decoys = append(decoys,
				bare+"2/"+name+"-"+stamp+snapname.Ext, // snapshots2/ next to snapshots/
				bare+name+"-"+stamp+snapname.Ext,      // the prefix without its slash
				name+"-"+stamp+snapname.Ext,           // the parent "folder"
			)
		}
		keys := append(slices.Clone(decoys), ours, junk, prefix+junk, ours)
		got := Match(prefix, name, keys)
		for _, s := range got {
			if snapname.Key(prefix, name, s.Time) != s.Key {
				t.Fatalf("Match returned %q at %s, which is not the key of that time", s.Key, s.Time)
			}
			if slices.Contains(decoys, s.Key) && s.Key != ours {
				t.Fatalf("Match returned the decoy %q", s.Key)
			}
		}
		if !slices.Contains(got, Snapshot{Key: ours, Time: at}) {
			t.Fatalf("Match(%q, %q) missed %q: %v", prefix, name, ours, got)
		}
		if n := len(got); n > 3 { // ours, and junk/prefix+junk if they happen to be snapshot keys
			t.Fatalf("Match returned %d snapshots: %v", n, got)
		}
	})
}
