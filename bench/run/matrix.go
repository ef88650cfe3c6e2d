package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/snapshot-job/snapshot-job/internal/config"
	"github.com/snapshot-job/snapshot-job/internal/setting"
)

// combo is one setting of the tuning variables.
type combo struct {
	level, concurrency, partSize string
	backup, restore              *row
}

func (c combo) env() []string {
	return []string{
		"SNAPSHOT_COMPRESSION_LEVEL=" + c.level,
		"SNAPSHOT_UPLOAD_CONCURRENCY=" + c.concurrency,
		"SNAPSHOT_PART_SIZE=" + c.partSize,
	}
}

// matrix runs snapshot-job backup and restore over compression levels,
// concurrencies and part sizes, so that the defaults come from
// measurements. Rounds go over every combination in turn, so a busy
// moment on a shared machine hits one run of many settings, not every
// run of one.
func (b *bench) matrix(ctx context.Context) error {
	sizes, err := parseSizes(b.opts.size)
	if err != nil {
		return fmt.Errorf("BENCH_SIZE: %w", err)
	}
	if len(sizes) != 1 {
		return fmt.Errorf("BENCH_SIZE=%s: one size", b.opts.size)
	}
	levels, concs, parts := splitList(b.opts.levels), splitList(b.opts.concurrency), splitList(b.opts.partSizes)
	for _, l := range levels {
		if !contains(config.CompressionLevels, l) {
			return fmt.Errorf("BENCH_LEVELS: %q is not one of %s", l, strings.Join(config.CompressionLevels, ", "))
		}
	}
	for _, c := range concs {
		if n, err := strconv.Atoi(c); err != nil || n < 1 {
			return fmt.Errorf("BENCH_CONCURRENCY: %q is not a positive number", c)
		}
	}
	for _, p := range parts {
		if _, err := setting.ParseSize(p); err != nil {
			return fmt.Errorf("BENCH_PART_SIZES: %w", err)
		}
	}
	for _, kv := range b.extraEnv {
		for _, name := range []string{"SNAPSHOT_COMPRESSION_LEVEL=", "SNAPSHOT_UPLOAD_CONCURRENCY=", "SNAPSHOT_PART_SIZE="} {
			if strings.HasPrefix(kv, name) {
				return fmt.Errorf("BENCH_ENV sets %s, which the matrix varies", strings.TrimSuffix(name, "="))
			}
		}
	}
	var combos []*combo
	for _, l := range levels {
		for _, c := range concs {
			for _, p := range parts {
				combos = append(combos, &combo{level: l, concurrency: c, partSize: p,
					backup: &row{name: "backup " + l + " " + c + " " + p}, restore: &row{name: "restore " + l + " " + c + " " + p}})
			}
		}
	}
	sets, cleanup, err := b.setup(ctx, sizes, 3, bucketSnapshot)
	defer cleanup()
	if err != nil {
		return err
	}
	ds := sets[0]
	for r := 1; r <= b.opts.runs; r++ {
		b.progress(fmt.Sprintf("round %d of %d over %d settings", r, b.opts.runs, len(combos)))
		for i, c := range combos {
			if err := ctx.Err(); err != nil {
				return err
			}
			if c.backup.err != nil {
				continue
			}
			prefix := fmt.Sprintf("matrix-%d-run-%d/", i, r)
			tag := fmt.Sprintf("%s-c%s-p%s-%d", c.level, c.concurrency, c.partSize, r)
			s, res, err := b.snapshotBackup(ctx, ds, prefix, b.logFile("matrix-backup-"+tag), c.env()...)
			if c.backup.add(s, err) {
				if c.backup.stored == 0 {
					c.backup.stored = res.Bytes
				}
				dir, err := b.emptyDir("restore")
				if err != nil {
					return err
				}
				s, err := b.snapshotRestore(ctx, prefix, res.Key, dir, b.logFile("matrix-restore-"+tag), c.env()...)
				c.restore.add(s, err)
				os.RemoveAll(dir)
			}
			if err := b.removePrefix(ctx, bucketSnapshot, prefix); err != nil {
				return err
			}
		}
	}

	var sb strings.Builder
	fmt.Fprintf(&sb, "## make bench-defaults: snapshot-job settings, %s dataset, %d run(s) each\n\n", sizes[0].label, b.opts.runs)
	b.writeHeader(&sb, ds)
	bestB, bestR := -1, -1
	for i, c := range combos {
		if c.backup.ok() && (bestB < 0 || c.backup.medianWall() < combos[bestB].backup.medianWall()) {
			bestB = i
		}
		if c.restore.ok() && (bestR < 0 || c.restore.medianWall() < combos[bestR].restore.medianWall()) {
			bestR = i
		}
	}
	mibs := float64(ds.Bytes) / (1 << 20)
	fmt.Fprintf(&sb, "| level | concurrency | part size | backup median s | backup MiB/s | backup peak RSS MiB | restore median s | restore MiB/s | restore peak RSS MiB | stored MiB | ratio |\n")
	fmt.Fprintf(&sb, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	var failed []string
	for i, c := range combos {
		if !c.backup.ok() || !c.restore.ok() {
			fmt.Fprintf(&sb, "| %s | %s | %s | FAILED | | | | | | | |\n", c.level, c.concurrency, c.partSize)
			failed = append(failed, c.backup.name)
			continue
		}
		bs, rs := fmt.Sprintf("%.2f", c.backup.medianWall()), fmt.Sprintf("%.2f", c.restore.medianWall())
		if i == bestB {
			bs = "**" + bs + "**"
		}
		if i == bestR {
			rs = "**" + rs + "**"
		}
		fmt.Fprintf(&sb, "| %s | %s | %s | %s | %.0f | %.0f | %s | %.0f | %.0f | %.0f | %.2f |\n",
			c.level, c.concurrency, c.partSize, bs, mibs/c.backup.medianWall(), c.backup.maxRSS(),
			rs, mibs/c.restore.medianWall(), c.restore.maxRSS(), float64(c.backup.stored)/(1<<20), float64(ds.Bytes)/float64(c.backup.stored))
	}
	fmt.Fprintf(&sb, "\nmedians of the runs' wall time, fastest in bold; peak RSS = the largest of the runs; ratio = dataset bytes / stored bytes. Restore uses the same SNAPSHOT_UPLOAD_CONCURRENCY and SNAPSHOT_PART_SIZE for its ranged download.\n")
	fmt.Fprintf(&sb, "\nload average at the end: %s; `uptime`: %s\n", loadAvg(), uptime())
	if err := b.writeResult("results-matrix-"+sizes[0].label+".md", sb.String()); err != nil {
		return err
	}
	if len(failed) > 0 {
		return fmt.Errorf("failed: %s (logs in %s)", strings.Join(failed, "; "), b.logs)
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
