package main

import (
	"context"
	"fmt"
	"os"
	"strings"
)

// mem runs snapshot-job backup and restore on datasets of several sizes
// (1 GiB and 4 GiB by default) and compares their peak RSS: memory must
// stay flat as the snapshot grows.
func (b *bench) mem(ctx context.Context) error {
	sizes, err := parseSizes(b.opts.sizes)
	if err != nil {
		return fmt.Errorf("BENCH_MEM_SIZES: %w", err)
	}
	sets, cleanup, err := b.setup(ctx, sizes, 3, bucketSnapshot)
	defer cleanup()
	if err != nil {
		return err
	}
	backups := make([]*row, len(sets))
	restores := make([]*row, len(sets))
	for i, ds := range sets {
		backups[i] = &row{name: "snapshot-job backup " + sizes[i].label}
		restores[i] = &row{name: "snapshot-job restore " + sizes[i].label}
		for r := 1; r <= b.opts.runs; r++ {
			if err := ctx.Err(); err != nil {
				return err
			}
			b.progress(fmt.Sprintf("%s run %d of %d", sizes[i].label, r, b.opts.runs))
			prefix := fmt.Sprintf("mem-%d-run-%d/", i, r)
			s, res, err := b.snapshotBackup(ctx, ds, prefix, b.logFile(fmt.Sprintf("mem-backup-%s-%d", sizes[i].label, r)))
			if !backups[i].add(s, err) {
				break
			}
			if backups[i].stored == 0 {
				backups[i].stored = res.Bytes
			}
			dir, err := b.emptyDir("restore")
			if err != nil {
				return err
			}
			s, err = b.snapshotRestore(ctx, prefix, res.Key, dir, b.logFile(fmt.Sprintf("mem-restore-%s-%d", sizes[i].label, r)))
			restores[i].add(s, err)
			os.RemoveAll(dir)
			if err := b.removePrefix(ctx, bucketSnapshot, prefix); err != nil {
				return err
			}
		}
	}

	var sb strings.Builder
	fmt.Fprintf(&sb, "## make bench-mem: peak RSS of snapshot-job by dataset size, %d run(s) each\n\n", b.opts.runs)
	b.writeHeader(&sb, sets...)
	fmt.Fprintf(&sb, "| dataset | backup median s | backup MiB/s | backup peak RSS MiB | restore median s | restore MiB/s | restore peak RSS MiB | stored MiB | ratio |\n")
	fmt.Fprintf(&sb, "|---|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	var failed []string
	for i, ds := range sets {
		bk, rs := backups[i], restores[i]
		if !bk.ok() || !rs.ok() {
			fmt.Fprintf(&sb, "| %s | FAILED | | | | | | | |\n", sizes[i].label)
			failed = append(failed, sizes[i].label)
			continue
		}
		mibs := float64(ds.Bytes) / (1 << 20)
		fmt.Fprintf(&sb, "| %s (%.0f MiB) | %.2f | %.0f | %.0f | %.2f | %.0f | %.0f | %.0f | %.2f |\n",
			sizes[i].label, mibs, bk.medianWall(), mibs/bk.medianWall(), bk.maxRSS(),
			rs.medianWall(), mibs/rs.medianWall(), rs.maxRSS(), float64(bk.stored)/(1<<20), float64(ds.Bytes)/float64(bk.stored))
	}
	fmt.Fprintf(&sb, "\npeak RSS = the largest of the runs (GNU time %%M of the snapshot-job process).\n\n")
	var missed []string
	if len(failed) == 0 && len(sets) > 1 {
		fmt.Fprintf(&sb, "| target | measured | result |\n|---|---|---|\n")
		first, last := 0, len(sets)-1
		for _, v := range []struct {
			verb string
			rows []*row
		}{{"backup", backups}, {"restore", restores}} {
			a, z := v.rows[first].maxRSS(), v.rows[last].maxRSS()
			q := z / a
			name := fmt.Sprintf("%s peak RSS within 10 %% between %s and %s", v.verb, sizes[first].label, sizes[last].label)
			res := "PASS"
			if q > 1.10 || q < 1/1.10 {
				res = "**FAIL**"
				missed = append(missed, name)
			}
			fmt.Fprintf(&sb, "| %s | %.0f MiB → %.0f MiB = **%.2f×** | %s |\n", name, a, z, q, res)
			peak := max(a, z)
			name = v.verb + " peak RSS ≤ 200 MiB"
			res = "PASS"
			if peak > 200 {
				res = "**FAIL**"
				missed = append(missed, name)
			}
			fmt.Fprintf(&sb, "| %s | %.0f MiB | %s |\n", name, peak, res)
		}
	}
	fmt.Fprintf(&sb, "\nload average at the end: %s; `uptime`: %s\n", loadAvg(), uptime())
	if err := b.writeResult("results-mem.md", sb.String()); err != nil {
		return err
	}
	if len(failed) > 0 {
		return fmt.Errorf("snapshot-job failed on %s (logs in %s)", strings.Join(failed, ", "), b.logs)
	}
	if b.opts.strict && len(missed) > 0 {
		return targetsMissed{missed}
	}
	return nil
}
