package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"filippo.io/age"
)

// row is one line of the table: an operation measured once per round.
type row struct {
	group   string // the -only key: snapshot-job, aws, rclone, restic, limit
	name    string
	cmdline string
	samples []sample
	stored  int64   // bytes stored by the first run, 0 when unknown
	ratio   float64 // dataset bytes / stored bytes, 0 when unknown
	note    string
	err     error
}

func (r *row) add(s sample, err error) bool {
	if err != nil {
		r.err = err
		fmt.Fprintf(os.Stderr, "bench: %s FAILED: %v\n", r.name, err)
		return false
	}
	r.samples = append(r.samples, s)
	fmt.Fprintf(os.Stderr, "bench:   %-34s %7.2f s  peak RSS %5.0f MiB\n", r.name, s.wall.Seconds(), float64(s.maxRSS())/1024)
	return true
}

func (r *row) ok() bool { return r.err == nil && len(r.samples) > 0 }

func (r *row) walls() []float64 {
	var v []float64
	for _, s := range r.samples {
		v = append(v, s.wall.Seconds())
	}
	return v
}

func (r *row) medianWall() float64 { return median(r.walls()) }

func (r *row) medianRSS() float64 {
	var v []float64
	for _, s := range r.samples {
		v = append(v, float64(s.maxRSS())/1024)
	}
	return median(v)
}

func (r *row) maxRSS() float64 {
	var m int64
	for _, s := range r.samples {
		m = max(m, s.maxRSS())
	}
	return float64(m) / 1024
}

func (r *row) medianSumRSS() float64 {
	var v []float64
	for _, s := range r.samples {
		v = append(v, float64(s.sumRSS())/1024)
	}
	return median(v)
}

func (r *row) medianCPU() float64 {
	var v []float64
	for _, s := range r.samples {
		v = append(v, s.cpu)
	}
	return median(v)
}

// checks are the one-off correctness checks of the first round.
type checks struct {
	entries     string // zstd -d | tar -t | wc -l against the dataset
	entriesPass bool
	tree        string // diff -r of the restored tree
	treePass    bool
	treeAge     string // the same, of the encrypted snapshot
	treeAgePass bool
}

var zstdRatioRE = regexp.MustCompile(`:\s*([0-9.]+)%\s*\(`)

// tableRows are the rows of the table, in the order printed.
type tableRows struct {
	sjBackup, sjBackupAge, awsBackup, rcloneBackup, resticBackup, limit *row
	sjRestore, sjRestoreAge, awsRestore, awsRestoreSync                 *row

	// ageRecipient and ageIdentity are a key pair made for this run, for
	// the encrypted rows.
	ageRecipient, ageIdentity string
}

func (t *tableRows) all() []*row {
	return []*row{t.sjBackup, t.sjBackupAge, t.awsBackup, t.rcloneBackup, t.resticBackup, t.limit, t.sjRestore, t.sjRestoreAge, t.awsRestore, t.awsRestoreSync}
}

func (b *bench) newTableRows(ds dataset) *tableRows {
	sjEnv := fmt.Sprintf("SNAPSHOT_CLOUD_PROVIDER=s3 SNAPSHOT_AWS_ENDPOINT=%s SNAPSHOT_AWS_FORCE_PATH_STYLE=true SNAPSHOT_AWS_REGION=%s SNAPSHOT_AWS_BUCKET=%s SNAPSHOT_SOURCE_DIR=%s SNAPSHOT_CLOUD_PREFIX=run-N/ %s",
		b.srv.Endpoint, region, bucketSnapshot, shellQuote(ds.Dir), strings.Join(append(slices.Clone(b.extraEnv), ""), " "))
	id, err := age.GenerateX25519Identity()
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return &tableRows{
		ageRecipient:   id.Recipient().String(),
		ageIdentity:    id.String(),
		sjBackup:       &row{group: "snapshot-job", name: "snapshot-job backup", cmdline: sjEnv + b.opts.bin + " backup", note: "plus SNAPSHOT_AWS_ACCESS_KEY and _SECRET_KEY"},
		sjBackupAge:    &row{group: "snapshot-job", name: "snapshot-job backup, encrypted (age)", cmdline: sjEnv + "SNAPSHOT_ENCRYPTION_RECIPIENTS=<age1... made for the run> " + b.opts.bin + " backup", note: "one X25519 recipient"},
		sjRestoreAge:   &row{group: "snapshot-job", name: "snapshot-job restore, encrypted (age)", cmdline: sjEnv + "SNAPSHOT_ENCRYPTION_IDENTITY=<its identity> SNAPSHOT_RESTORE_KEY=<key stored> SNAPSHOT_RESTORE_DIR=<empty dir> " + b.opts.bin + " restore", note: "includes its final syncfs"},
		awsBackup:      &row{group: "aws", name: "tar | zstd -3 -T0 | aws s3 cp", note: "aws cli defaults: multipart_chunksize 8 MiB, max_concurrent_requests 10"},
		rcloneBackup:   &row{group: "rclone", name: "tar | zstd -3 -T0 | rclone rcat", note: "rclone defaults: --s3-chunk-size 5 MiB, --s3-upload-concurrency 4"},
		resticBackup:   &row{group: "restic", name: "restic backup (fresh repo)", note: "restic init before, untimed; repository format and compression at restic's defaults"},
		limit:          &row{group: "limit", name: "tar | zstd -1 -T0 > /dev/null", note: "the compression limit; -v only prints the ratio at the end"},
		sjRestore:      &row{group: "snapshot-job", name: "snapshot-job restore", cmdline: sjEnv + "SNAPSHOT_RESTORE_KEY=<key stored> SNAPSHOT_RESTORE_DIR=<empty dir> " + b.opts.bin + " restore", note: "includes its final syncfs"},
		awsRestore:     &row{group: "aws", name: "aws s3 cp | zstd -d | tar -x"},
		awsRestoreSync: &row{group: "aws", name: "aws s3 cp | zstd -d | tar -x; sync -f", note: "the row above plus a syncfs of the target, timed separately: the durability snapshot-job restore pays for"},
	}
}

// tableGroups are the values BENCH_ONLY accepts.
var tableGroups = []string{"snapshot-job", "aws", "rclone", "restic", "limit"}

// table measures every row BENCH_ONLY selects, BENCH_RUNS rounds of
// them, and writes the table with the targets.
func (b *bench) table(ctx context.Context) error {
	sizes, err := parseSizes(b.opts.size)
	if err != nil {
		return fmt.Errorf("BENCH_SIZE: %w", err)
	}
	if len(sizes) != 1 {
		return fmt.Errorf("BENCH_SIZE=%s: one size (make bench-mem compares sizes)", b.opts.size)
	}
	only := splitList(b.opts.only)
	for _, o := range only {
		if !slices.Contains(tableGroups, o) {
			return fmt.Errorf("BENCH_ONLY: unknown row %q: use %s", o, strings.Join(tableGroups, ", "))
		}
	}
	want := func(g string) bool { return len(only) == 0 || slices.Contains(only, g) }
	// Objects of one round: snapshot-job, aws, rclone and restic, plus
	// one restore target.
	sets, cleanup, err := b.setup(ctx, sizes, 5, bucketSnapshot, bucketAWS, bucketRclone, bucketRestic)
	defer cleanup()
	if err != nil {
		return err
	}
	ds := sets[0]
	rows := b.newTableRows(ds)
	var chk checks
	for r := 1; r <= b.opts.runs; r++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		b.progress(fmt.Sprintf("round %d of %d", r, b.opts.runs))
		for _, round := range []struct {
			group string
			first *row
			run   func() error
		}{
			{"snapshot-job", rows.sjBackup, func() error { return b.roundSnapshotJob(ctx, ds, r, rows, &chk) }},
			{"aws", rows.awsBackup, func() error { return b.roundAWS(ctx, ds, r, rows) }},
			{"rclone", rows.rcloneBackup, func() error { return b.roundRclone(ctx, ds, r, rows) }},
			{"restic", rows.resticBackup, func() error { return b.roundRestic(ctx, ds, r, rows) }},
			{"limit", rows.limit, func() error { b.roundLimit(ctx, ds, r, rows); return nil }},
		} {
			// A tool that failed once is not run again.
			if want(round.group) && round.first.err == nil {
				if err := round.run(); err != nil {
					return err
				}
			}
		}
	}
	return b.tableReport(sizes[0], ds, rows, chk, want)
}

// roundSnapshotJob backs up, restores, checks the object and the tree
// (round 1) and removes the object.
func (b *bench) roundSnapshotJob(ctx context.Context, ds dataset, r int, rows *tableRows, chk *checks) error {
	prefix := fmt.Sprintf("run-%d/", r)
	s, res, err := b.snapshotBackup(ctx, ds, prefix, b.logFile(fmt.Sprintf("snapshot-job-backup-%d", r)))
	if rows.sjBackup.add(s, err) {
		if rows.sjBackup.stored == 0 {
			rows.sjBackup.stored = res.Bytes
		}
		if r == 1 {
			chk.entries, chk.entriesPass = b.checkEntries(ctx, ds, res)
		}
		dir, err := b.emptyDir("restore")
		if err != nil {
			return err
		}
		s, err := b.snapshotRestore(ctx, prefix, res.Key, dir, b.logFile(fmt.Sprintf("snapshot-job-restore-%d", r)))
		if rows.sjRestore.add(s, err) && r == 1 {
			chk.tree, chk.treePass = b.checkTree(ctx, ds, dir)
		}
		os.RemoveAll(dir)
	}
	if err := b.removePrefix(ctx, bucketSnapshot, prefix); err != nil {
		return err
	}
	// The same, encrypted: what age costs on top.
	prefix = fmt.Sprintf("run-%d-age/", r)
	s, res, err = b.snapshotBackup(ctx, ds, prefix, b.logFile(fmt.Sprintf("snapshot-job-backup-age-%d", r)), "SNAPSHOT_ENCRYPTION_RECIPIENTS="+rows.ageRecipient)
	if rows.sjBackupAge.add(s, err) {
		if rows.sjBackupAge.stored == 0 {
			rows.sjBackupAge.stored = res.Bytes
		}
		dir, err := b.emptyDir("restore")
		if err != nil {
			return err
		}
		s, err := b.snapshotRestore(ctx, prefix, res.Key, dir, b.logFile(fmt.Sprintf("snapshot-job-restore-age-%d", r)), "SNAPSHOT_ENCRYPTION_IDENTITY="+rows.ageIdentity)
		if rows.sjRestoreAge.add(s, err) && r == 1 {
			chk.treeAge, chk.treeAgePass = b.checkTree(ctx, ds, dir)
		}
		os.RemoveAll(dir)
	}
	return b.removePrefix(ctx, bucketSnapshot, prefix)
}

func (b *bench) tarC(ds dataset) stage { return stage{b.tools.tar, "-cf", "-", "-C", ds.Dir, "."} }

// roundAWS backs up with tar | zstd | aws s3 cp, restores the other way
// round, with and without a syncfs, and removes the object.
func (b *bench) roundAWS(ctx context.Context, ds dataset, r int, rows *tableRows) error {
	t, ep := b.tools, b.srv.Endpoint
	key := fmt.Sprintf("run-%d.tar.zst", r)
	url := "s3://" + bucketAWS + "/" + key
	c := command{stages: []stage{b.tarC(ds), {t.zstd, "-3", "-T0", "-q"}, {t.aws, "--endpoint-url", ep, "s3", "cp", "-", url}}, env: b.awsEnv()}
	rows.awsBackup.cmdline = c.String()
	b.cache.before()
	if rows.awsBackup.add(b.measure(ctx, c, b.logFile(fmt.Sprintf("aws-backup-%d", r)))) {
		if rows.awsBackup.stored == 0 {
			rows.awsBackup.stored, _ = b.storedBytes(ctx, bucketAWS, key)
		}
		dir, err := b.emptyDir("restore")
		if err != nil {
			return err
		}
		c := command{stages: []stage{{t.aws, "--endpoint-url", ep, "s3", "cp", url, "-"}, {t.zstd, "-d", "-q"}, {t.tar, "-xf", "-", "-C", dir}}, env: b.awsEnv()}
		rows.awsRestore.cmdline = c.String()
		rows.awsRestoreSync.cmdline = c.String() + "; sync -f " + shellQuote(dir)
		b.cache.before()
		s, err := b.measure(ctx, c, b.logFile(fmt.Sprintf("aws-restore-%d", r)))
		if rows.awsRestore.add(s, err) {
			start := time.Now()
			err := exec.CommandContext(ctx, "sync", "-f", dir).Run()
			s.wall += time.Since(start)
			rows.awsRestoreSync.add(s, err)
		}
		os.RemoveAll(dir)
	}
	return b.removePrefix(ctx, bucketAWS, key)
}

// roundRclone backs up with tar | zstd | rclone rcat and removes the
// object.
func (b *bench) roundRclone(ctx context.Context, ds dataset, r int, rows *tableRows) error {
	key := fmt.Sprintf("run-%d.tar.zst", r)
	c := command{stages: []stage{b.tarC(ds), {b.tools.zstd, "-3", "-T0", "-q"}, {b.tools.rclone, "rcat", "bench:" + bucketRclone + "/" + key}}, env: b.rcloneEnv()}
	rows.rcloneBackup.cmdline = c.String()
	b.cache.before()
	if rows.rcloneBackup.add(b.measure(ctx, c, b.logFile(fmt.Sprintf("rclone-backup-%d", r)))) && rows.rcloneBackup.stored == 0 {
		rows.rcloneBackup.stored, _ = b.storedBytes(ctx, bucketRclone, key)
	}
	return b.removePrefix(ctx, bucketRclone, key)
}

// roundRestic backs up into a fresh restic repository and removes it.
func (b *bench) roundRestic(ctx context.Context, ds dataset, r int, rows *tableRows) error {
	repo := fmt.Sprintf("repo-%d", r)
	cacheDir, err := b.emptyDir("restic-cache")
	if err != nil {
		return err
	}
	env := b.resticEnv(repo, cacheDir)
	log := b.logFile(fmt.Sprintf("restic-backup-%d", r))
	if _, err := b.run(ctx, env, b.tools.restic, "init"); err != nil {
		rows.resticBackup.add(sample{}, fmt.Errorf("restic init: %w", err))
	} else {
		c := command{stages: []stage{{b.tools.restic, "backup", ds.Dir}}, env: env}
		rows.resticBackup.cmdline = "RESTIC_REPOSITORY=s3:" + b.srv.Endpoint + "/" + bucketRestic + "/" + repo + " " + c.String()
		b.cache.before()
		if rows.resticBackup.add(b.measure(ctx, c, log)) && rows.resticBackup.stored == 0 {
			rows.resticBackup.stored, _ = b.storedBytes(ctx, bucketRestic, repo+"/")
		}
	}
	os.RemoveAll(cacheDir)
	return b.removePrefix(ctx, bucketRestic, repo+"/")
}

// roundLimit times tar | zstd -1 into /dev/null and reads zstd's ratio.
func (b *bench) roundLimit(ctx context.Context, ds dataset, r int, rows *tableRows) {
	c := command{stages: []stage{b.tarC(ds), {b.tools.zstd, "-1", "-T0", "-v"}}, stdout: "/dev/null", env: baseEnv()}
	rows.limit.cmdline = c.String()
	log := b.logFile(fmt.Sprintf("limit-%d", r))
	b.cache.before()
	if rows.limit.add(b.measure(ctx, c, log)) && rows.limit.ratio == 0 {
		if m := zstdRatioRE.FindAllStringSubmatch(tailFile(log, 4000), -1); len(m) > 0 {
			if pct, err := strconv.ParseFloat(m[len(m)-1][1], 64); err == nil && pct > 0 {
				rows.limit.ratio = 100 / pct
			}
		}
	}
}

// tableReport writes results-<size>.md and says what failed: a row, a
// check, or (with -strict) a target.
func (b *bench) tableReport(size sizeArg, ds dataset, rows *tableRows, chk checks, want func(string) bool) error {
	all := rows.all()
	for _, r := range all {
		if r.stored > 0 {
			r.ratio = float64(ds.Bytes) / float64(r.stored)
		}
	}
	if rows.awsRestore.err != nil {
		rows.awsRestoreSync.err = rows.awsRestore.err
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "## make bench: %s dataset, %d run(s)\n\n", size.label, b.opts.runs)
	b.writeHeader(&sb, ds)
	writeRows(&sb, ds, all)
	missed := writeTargets(&sb, rows.sjBackup, rows.sjRestore, rows.awsBackup, rows.awsRestore, rows.awsRestoreSync, rows.limit, chk)
	writeCommands(&sb, all)
	fmt.Fprintf(&sb, "\nload average at the end: %s; `uptime`: %s\n", loadAvg(), uptime())
	if err := b.writeResult("results-"+size.label+".md", sb.String()); err != nil {
		return err
	}
	var failed []string
	for _, r := range all {
		if r.err != nil {
			failed = append(failed, r.name)
		}
	}
	if !chk.entriesPass && want("snapshot-job") && rows.sjBackup.ok() {
		failed = append(failed, "object is not plain tar+zstd with every entry")
	}
	if !chk.treePass && rows.sjRestore.ok() {
		failed = append(failed, "restored tree differs from the dataset")
	}
	if !chk.treeAgePass && rows.sjRestoreAge.ok() {
		failed = append(failed, "tree restored from the encrypted snapshot differs from the dataset")
	}
	if len(failed) > 0 {
		return fmt.Errorf("%s (logs in %s)", strings.Join(failed, "; "), b.logs)
	}
	if b.opts.strict && len(missed) > 0 {
		return targetsMissed{missed}
	}
	return nil
}

func uptime() string {
	out, err := exec.Command("uptime").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

// checkEntries reads the stored object back with the stock tools and
// counts its entries: the object must stay plain tar+zstd, and zstd -d
// also checks every frame's checksum.
func (b *bench) checkEntries(ctx context.Context, ds dataset, res termResult) (string, bool) {
	line := fmt.Sprintf("%s --endpoint-url %s s3 cp %s - | %s -d -q | %s -t | wc -l",
		shellQuote(b.tools.aws), b.srv.Endpoint, shellQuote("s3://"+bucketSnapshot+"/"+res.Key), b.tools.zstd, b.tools.tar)
	out, err := b.run(ctx, b.awsEnv(), "bash", "-o", "pipefail", "-c", line)
	if err != nil {
		return "failed: " + err.Error(), false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	if err != nil {
		return fmt.Sprintf("unexpected output %q", out), false
	}
	pass := n == ds.Entries && (res.Entries == 0 || res.Entries == ds.Entries)
	return fmt.Sprintf("`zstd -d | tar -t` lists %d entries; the dataset has %d; snapshot-job reported %d", n, ds.Entries, res.Entries), pass
}

// checkTree compares the restored tree with the dataset, leaving out the
// job's own names (the restore's volume lock stays in the target).
func (b *bench) checkTree(ctx context.Context, ds dataset, dir string) (string, bool) {
	if _, err := b.run(ctx, nil, b.tools.diff, "-r", "--no-dereference", "-x", ".snapshot-job-*", ds.Dir, dir); err != nil {
		return "differs: " + err.Error(), false
	}
	return "`diff -r` finds no difference (round 1)", true
}

func (b *bench) writeHeader(sb *strings.Builder, sets ...dataset) {
	fmt.Fprintf(sb, "| machine | |\n|---|---|\n")
	for _, f := range b.facts {
		fmt.Fprintf(sb, "| %s | %s |\n", f[0], f[1])
	}
	for _, v := range b.versionRows {
		fmt.Fprintf(sb, "| %s | %s |\n", v[0], strings.ReplaceAll(v[1], "|", "/"))
	}
	where := "on the same disk as the dataset"
	if b.opts.server != "" {
		where = "in " + b.opts.server + " (" + fsType(b.opts.server) + "), not on the dataset's disk"
	}
	fmt.Fprintf(sb, "| server | versitygw posix backend on 127.0.0.1, plain HTTP, objects %s |\n", where)
	fmt.Fprintf(sb, "| page cache | %s |\n", b.cache)
	for _, ds := range sets {
		fmt.Fprintf(sb, "| dataset | %s: %d files, %d entries, %s bytes (%.1f MiB) |\n", ds.Dir, ds.Files, ds.Entries, thousands(ds.Bytes), float64(ds.Bytes)/(1<<20))
	}
	fmt.Fprintf(sb, "| load average (1, 5, 15 min) | %s |\n", strings.Join(b.loads, "; "))
	settings := "defaults (no SNAPSHOT_COMPRESSION_LEVEL, _UPLOAD_CONCURRENCY, _PART_SIZE set)"
	if b.opts.mode == "matrix" {
		settings = "as in each row"
	}
	if len(b.extraEnv) > 0 {
		settings += "; BENCH_ENV: " + strings.Join(b.extraEnv, " ")
	}
	fmt.Fprintf(sb, "| snapshot-job settings | %s |\n\n", settings)
}

func writeRows(sb *strings.Builder, ds dataset, rows []*row) {
	fmt.Fprintf(sb, "| operation | median s | min–max s | MiB/s | peak RSS MiB | Σ RSS MiB | CPU s | stored MiB | ratio |\n")
	fmt.Fprintf(sb, "|---|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, r := range rows {
		if r.err != nil {
			fmt.Fprintf(sb, "| %s | FAILED | | | | | | | |\n", cell(r.name))
			continue
		}
		if !r.ok() {
			continue
		}
		w := r.walls()
		med := r.medianWall()
		stored, ratio := "—", "—"
		if r.stored > 0 {
			stored = fmt.Sprintf("%.0f", float64(r.stored)/(1<<20))
		}
		if r.ratio > 0 {
			ratio = fmt.Sprintf("%.2f", r.ratio)
		}
		fmt.Fprintf(sb, "| %s | %.2f | %.2f–%.2f | %.0f | %.0f | %.0f | %.1f | %s | %s |\n",
			cell(r.name), med, slices.Min(w), slices.Max(w), float64(ds.Bytes)/(1<<20)/med,
			r.medianRSS(), r.medianSumRSS(), r.medianCPU(), stored, ratio)
	}
	fmt.Fprintf(sb, "\nmedian, min and max of the runs' wall time; MiB/s = dataset bytes / median; peak RSS = the largest process (median over runs); Σ RSS = the sum of the processes' peaks (an upper bound of what a pipeline held at once); CPU = user+system seconds of all processes; ratio = dataset bytes / stored bytes (for the limit: zstd's own ratio over the tar stream).\n\n")
}

// writeTargets prints the ratios against the targets and returns the missed ones.
func writeTargets(sb *strings.Builder, sjB, sjR, awsB, awsR, awsRS, limit *row, chk checks) []string {
	var missed []string
	verdict := func(name string, ok bool) string {
		if ok {
			return "PASS"
		}
		missed = append(missed, name)
		return "**FAIL**"
	}
	fmt.Fprintf(sb, "| target | measured | result |\n|---|---|---|\n")
	ratioRow := func(name string, a, b *row, limit float64, info bool) {
		if !a.ok() || !b.ok() {
			fmt.Fprintf(sb, "| %s | not measured | n/a |\n", name)
			return
		}
		q := a.medianWall() / b.medianWall()
		res := ""
		if info {
			res = "info"
			if q <= limit {
				res += " (within)"
			} else {
				res += " (over)"
			}
		} else {
			res = verdict(name, q <= limit)
		}
		fmt.Fprintf(sb, "| %s | %.2f s / %.2f s = **%.2f** | %s |\n", name, a.medianWall(), b.medianWall(), q, res)
	}
	ratioRow("backup ≤ 0.5 × aws-cli pipeline backup", sjB, awsB, 0.5, false)
	ratioRow("backup ≤ 1.6 × compression limit", sjB, limit, 1.6, false)
	ratioRow("restore ≤ 0.8 × aws-cli pipeline restore", sjR, awsR, 0.8, false)
	ratioRow("restore ≤ 0.8 × (aws-cli restore + syncfs), for comparison", sjR, awsRS, 0.8, true)
	if sjB.ok() || sjR.ok() {
		peak := max(sjB.maxRSS(), sjR.maxRSS())
		fmt.Fprintf(sb, "| peak RSS ≤ 200 MiB (largest of every snapshot-job run) | backup %.0f MiB, restore %.0f MiB | %s |\n",
			sjB.maxRSS(), sjR.maxRSS(), verdict("peak RSS ≤ 200 MiB", peak <= 200))
	}
	if chk.entries != "" {
		fmt.Fprintf(sb, "| object is plain tar+zstd | %s | %s |\n", cell(chk.entries), verdict("plain tar+zstd", chk.entriesPass))
	}
	if chk.treeAge != "" {
		fmt.Fprintf(sb, "| tree restored from the encrypted snapshot equals the dataset | %s | %s |\n", cell(chk.treeAge), verdict("restored tree (age)", chk.treeAgePass))
	}
	if chk.tree != "" {
		fmt.Fprintf(sb, "| restored tree equals the dataset | %s | %s |\n", cell(chk.tree), verdict("restored tree", chk.treePass))
	}
	fmt.Fprintf(sb, "| peak RSS within 10 %% between 1 GiB and 4 GiB | see `make bench-mem` | |\n")
	return missed
}

func writeCommands(sb *strings.Builder, rows []*row) {
	fmt.Fprintf(sb, "\n| row | command | note |\n|---|---|---|\n")
	for _, r := range rows {
		if r.cmdline == "" {
			continue
		}
		fmt.Fprintf(sb, "| %s | `%s` | %s |\n", cell(r.name), cell(r.cmdline), r.note)
	}
}

func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	var out []byte
	for i, c := range []byte(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, c)
	}
	return string(out)
}

// cell escapes the pipes a markdown table cell may not hold.
func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
