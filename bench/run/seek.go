package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/snapshot-job/snapshot-job/internal/testenv"
)

// seekNodes is how many node folders the seek mode's dataset has: one
// folder is about 1/30 of the data, what restoring one node selects.
const seekNodes = 30

// seekFolder is the folder the one-folder rows restore.
const seekFolder = "node-00"

// seekRow is a row of the seek table: a row of the main table (its
// samples and their medians) and what the server sent in each run.
type seekRow struct {
	row
	fetched []testenv.Counts
}

func (r *seekRow) add(s sample, c testenv.Counts, err error) bool {
	if err != nil {
		r.err = err
		fmt.Fprintf(os.Stderr, "bench: %s FAILED: %v\n", r.name, err)
		return false
	}
	r.samples = append(r.samples, s)
	r.fetched = append(r.fetched, c)
	fmt.Fprintf(os.Stderr, "bench:   %-44s %7.2f s  fetched %9.1f MiB in %d requests\n", r.name, s.wall.Seconds(), float64(c.Bytes)/(1<<20), c.Requests)
	return true
}

func (r *seekRow) bytes() float64 {
	var v []float64
	for _, c := range r.fetched {
		v = append(v, float64(c.Bytes))
	}
	return median(v)
}

func (r *seekRow) requests() float64 {
	var v []float64
	for _, c := range r.fetched {
		v = append(v, float64(c.Requests))
	}
	return median(v)
}

// seekRows are one size's rows, in the order printed.
type seekRows struct {
	backup, files, partial, full, awsPartial *seekRow
	shm1, shmAll                             *seekRow
	ageBackup, ageFull, agePartial           *seekRow
	tlsBackup, tlsFiles, tlsPartial, tlsFull *seekRow
	tlsAWSPartial                            *seekRow

	object, ageObject int64 // stored bytes
	folderZ           int64 // tar -cf - node-00 | zstd -3 | wc -c
	folderBytes       int64 // the folder's file bytes
	check             string
	checkPass         bool
	// from round 1's logs: the files output's start and its last log
	// line, and the one-folder restores' "snapshot restored" lines
	filesExcerpt, partialLine, agePartialLine string
}

func (s *seekRows) all() []*seekRow {
	return []*seekRow{s.backup, s.files, s.partial, s.full, s.awsPartial, s.shm1, s.shmAll,
		s.ageBackup, s.ageFull, s.agePartial, s.tlsBackup, s.tlsFiles, s.tlsPartial, s.tlsFull, s.tlsAWSPartial}
}

func newSeekRows() *seekRows {
	n := func(s string) *seekRow { return &seekRow{row: row{name: s}} }
	return &seekRows{
		backup: n("snapshot-job backup"), files: n("snapshot-job files"),
		partial:    n("snapshot-job restore " + seekFolder + " (SNAPSHOT_RESTORE_PATHS)"),
		full:       n("snapshot-job restore (full)"),
		awsPartial: n("aws s3 cp | zstd -d | tar -x " + seekFolder),
		shm1:       n("snapshot-job restore into /dev/shm, GOMAXPROCS=1"),
		shmAll:     n("snapshot-job restore into /dev/shm, all cores"),
		ageBackup:  n("snapshot-job backup, encrypted (age)"),
		ageFull:    n("snapshot-job restore, encrypted (age)"),
		agePartial: n("snapshot-job restore " + seekFolder + ", encrypted (age)"),
		tlsBackup:  n("HTTPS: snapshot-job backup"), tlsFiles: n("HTTPS: snapshot-job files"),
		tlsPartial:    n("HTTPS: snapshot-job restore " + seekFolder),
		tlsFull:       n("HTTPS: snapshot-job restore (full)"),
		tlsAWSPartial: n("HTTPS: aws s3 cp | zstd -d | tar -x " + seekFolder),
	}
}

// endpointSet is how the rows reach the server: through a counting proxy,
// plain or HTTPS.
type endpointSet struct {
	proxy  *testenv.CountingProxy
	caFile string // AWS_CA_BUNDLE for https, "" for plain
	// the server's keys when they are not b.srv's
	access, secret string
}

// env is what the rows' environment gets on top (later entries win).
func (e endpointSet) env() []string {
	var env []string
	if e.caFile != "" {
		env = append(env, "AWS_CA_BUNDLE="+e.caFile)
	}
	if e.access != "" {
		env = append(env, "SNAPSHOT_AWS_ACCESS_KEY="+e.access, "SNAPSHOT_AWS_SECRET_KEY="+e.secret,
			"AWS_ACCESS_KEY_ID="+e.access, "AWS_SECRET_ACCESS_KEY="+e.secret)
	}
	return env
}

// seek measures the seekable-snapshot rows (make bench-seek) at every
// size of BENCH_SEEK_SIZES.
func (b *bench) seek(ctx context.Context) error {
	sizes, err := parseSizes(b.opts.seekSizes)
	if err != nil {
		return fmt.Errorf("BENCH_SEEK_SIZES: %w", err)
	}
	b.nodes = seekNodes
	// Objects: plain and encrypted kept at once, one restore target.
	sets, cleanup, err := b.setup(ctx, sizes, 3, bucketSnapshot, bucketAWS)
	defer cleanup()
	if err != nil {
		return err
	}
	plainProxy, err := testenv.StartCountingProxy(b.srv.Endpoint, "", "", "")
	if err != nil {
		return err
	}
	defer plainProxy.Close()
	plain := endpointSet{proxy: plainProxy}
	tlsSet, stopTLS, err := b.startTLS(ctx)
	defer stopTLS()
	if err != nil {
		return err
	}
	recipient, identity, err := b.ageKey(ctx)
	if err != nil {
		return err
	}
	var shmFree int64
	if shmFree, err = freeBytes("/dev/shm"); err != nil {
		shmFree = 0
	}
	perSize := make([]*seekRows, len(sets))
	for i, ds := range sets {
		rows := newSeekRows()
		perSize[i] = rows
		if rows.folderZ, rows.folderBytes, err = b.folderSize(ctx, ds); err != nil {
			return err
		}
		for r := 1; r <= b.opts.runs; r++ {
			if err := ctx.Err(); err != nil {
				return err
			}
			b.progress(fmt.Sprintf("%s round %d of %d", sizes[i].label, r, b.opts.runs))
			tag := fmt.Sprintf("%s-%d", sizes[i].label, r)
			if err := b.seekRound(ctx, ds, tag, r, plain, false, rows, shmFree, recipient, identity); err != nil {
				return err
			}
			if err := b.seekRound(ctx, ds, tag, r, tlsSet, true, rows, 0, "", ""); err != nil {
				return err
			}
		}
	}
	idx := b.indexCost(ctx)
	return b.seekReport(sizes, sets, perSize, idx)
}

// seekRound is one round at one size over one endpoint; with tls it
// runs only the S3 rows again.
func (b *bench) seekRound(ctx context.Context, ds dataset, tag string, r int, ep endpointSet, tls bool, rows *seekRows, shmFree int64, recipient, identity string) error {
	pick := func(plainRow, tlsRow *seekRow) *seekRow {
		if tls {
			return tlsRow
		}
		return plainRow
	}
	prefix := fmt.Sprintf("seek-%s-%t/", tag, tls)
	extra := append(ep.env(), "SNAPSHOT_AWS_ENDPOINT="+ep.proxy.URL)
	logName := func(s string) string {
		return b.logFile(fmt.Sprintf("seek-%s-%s%s", s, tag, map[bool]string{true: "-https"}[tls]))
	}
	measured := func(row *seekRow, f func() (sample, error)) bool {
		before := ep.proxy.Counts()
		s, err := f()
		return row.add(s, ep.proxy.Counts().Sub(before), err)
	}
	var res termResult
	row := pick(rows.backup, rows.tlsBackup)
	row.cmdline = "SNAPSHOT_AWS_ENDPOINT=<proxy> " + b.opts.bin + " backup"
	if !measured(row, func() (sample, error) {
		s, t, err := b.snapshotBackup(ctx, ds, prefix, logName("backup"), extra...)
		res = t
		return s, err
	}) {
		return b.removePrefix(ctx, bucketSnapshot, prefix)
	}
	if !tls {
		rows.object = res.Bytes
	}
	keyEnv := append(slices.Clone(extra), "SNAPSHOT_RESTORE_KEY="+res.Key)
	row = pick(rows.files, rows.tlsFiles)
	row.cmdline = "SNAPSHOT_RESTORE_KEY=<key> " + b.opts.bin + " files"
	measured(row, func() (sample, error) {
		env := b.snapshotEnv(prefix, filepath.Join(b.work, "termination-log"), keyEnv...)
		b.cache.before()
		return b.measure(ctx, command{stages: []stage{{b.opts.bin, "files"}}, env: env}, logName("files"))
	})
	if r == 1 && !tls {
		rows.filesExcerpt = filesExcerpt(tailFile(logName("files"), 1<<20))
	}
	restore := func(row *seekRow, name, dir string, env ...string) error {
		target, err := b.emptyDir(filepath.Base(dir))
		if dir != filepath.Base(dir) {
			target, err = dir, os.RemoveAll(dir)
			if err == nil {
				err = os.MkdirAll(dir, 0o755)
			}
		}
		if err != nil {
			return err
		}
		measured(row, func() (sample, error) {
			return b.snapshotRestore(ctx, prefix, res.Key, target, logName(name), append(slices.Clone(extra), env...)...)
		})
		if row == rows.partial && r == 1 && row.ok() {
			rows.check, rows.checkPass = b.checkFolder(ctx, ds, target)
			rows.partialLine = logLine(tailFile(logName(name), 1<<20), `"snapshot restored"`)
		}
		if row == rows.agePartial && r == 1 && row.ok() {
			rows.agePartialLine = logLine(tailFile(logName(name), 1<<20), `"snapshot restored"`)
		}
		return os.RemoveAll(target)
	}
	row = pick(rows.partial, rows.tlsPartial)
	row.cmdline = "SNAPSHOT_RESTORE_PATHS=" + seekFolder + " SNAPSHOT_RESTORE_KEY=<key> SNAPSHOT_RESTORE_DIR=<empty dir> " + b.opts.bin + " restore"
	if err := restore(row, "partial", "restore", "SNAPSHOT_RESTORE_PATHS="+seekFolder); err != nil {
		return err
	}
	row = pick(rows.full, rows.tlsFull)
	row.cmdline = "SNAPSHOT_RESTORE_KEY=<key> SNAPSHOT_RESTORE_DIR=<empty dir> " + b.opts.bin + " restore"
	if err := restore(row, "full", "restore"); err != nil {
		return err
	}
	// The aws-cli way to one folder: the whole object through zstd, tar
	// keeping one member.
	row = pick(rows.awsPartial, rows.tlsAWSPartial)
	dir, err := b.emptyDir("restore")
	if err != nil {
		return err
	}
	t := b.tools
	c := command{stages: []stage{{t.aws, "--endpoint-url", ep.proxy.URL, "s3", "cp", "s3://" + bucketSnapshot + "/" + res.Key, "-"},
		{t.zstd, "-d", "-q"}, {t.tar, "-xf", "-", "-C", dir, seekFolder}}, env: append(b.awsEnv(), ep.env()...)}
	row.cmdline = c.String()
	measured(row, func() (sample, error) { b.cache.before(); return b.measure(ctx, c, logName("aws-partial")) })
	os.RemoveAll(dir)

	if !tls {
		// Full restores into tmpfs, one core and all: what decoding on
		// every core gains when the disk is not the limit.
		if shmFree > ds.Bytes+(512<<20) {
			shm := filepath.Join("/dev/shm", "snapshot-job-bench-restore")
			rows.shm1.cmdline = "GOMAXPROCS=1 SNAPSHOT_RESTORE_DIR=/dev/shm/… " + b.opts.bin + " restore"
			if err := restore(rows.shm1, "shm-1", shm, "GOMAXPROCS=1"); err != nil {
				return err
			}
			rows.shmAll.cmdline = "SNAPSHOT_RESTORE_DIR=/dev/shm/… " + b.opts.bin + " restore"
			if err := restore(rows.shmAll, "shm-all", shm); err != nil {
				return err
			}
		} else if r == 1 {
			rows.shm1.err = fmt.Errorf("/dev/shm has %s free, less than the dataset + 512 MiB", mib(shmFree))
			rows.shmAll.err = rows.shm1.err
		}
	}
	if err := b.removePrefix(ctx, bucketSnapshot, prefix); err != nil {
		return err
	}
	if tls || recipient == "" {
		return nil
	}
	// Encrypted: the same backup and restores through age.
	prefix = fmt.Sprintf("seek-%s-age/", tag)
	rows.ageBackup.cmdline = "SNAPSHOT_ENCRYPTION_RECIPIENTS=<age1… from age-keygen> " + b.opts.bin + " backup"
	if !measured(rows.ageBackup, func() (sample, error) {
		s, t, err := b.snapshotBackup(ctx, ds, prefix, logName("age-backup"), append(slices.Clone(extra), "SNAPSHOT_ENCRYPTION_RECIPIENTS="+recipient)...)
		res = t
		return s, err
	}) {
		return b.removePrefix(ctx, bucketSnapshot, prefix)
	}
	rows.ageObject = res.Bytes
	idEnv := "SNAPSHOT_ENCRYPTION_IDENTITY=" + identity
	rows.ageFull.cmdline = "SNAPSHOT_ENCRYPTION_IDENTITY=<AGE-SECRET-KEY-…> SNAPSHOT_RESTORE_KEY=<key> " + b.opts.bin + " restore"
	if err := restore(rows.ageFull, "age-full", "restore", idEnv); err != nil {
		return err
	}
	rows.agePartial.cmdline = "SNAPSHOT_ENCRYPTION_IDENTITY=<…> SNAPSHOT_RESTORE_PATHS=" + seekFolder + " " + b.opts.bin + " restore"
	if err := restore(rows.agePartial, "age-partial", "restore", idEnv, "SNAPSHOT_RESTORE_PATHS="+seekFolder); err != nil {
		return err
	}
	return b.removePrefix(ctx, bucketSnapshot, prefix)
}

// checkFolder compares the one restored folder with the dataset's and
// checks that nothing else was restored.
func (b *bench) checkFolder(ctx context.Context, ds dataset, dir string) (string, bool) {
	if _, err := b.run(ctx, nil, b.tools.diff, "-r", "--no-dereference", filepath.Join(ds.Dir, seekFolder), filepath.Join(dir, seekFolder)); err != nil {
		return "differs: " + err.Error(), false
	}
	names, err := os.ReadDir(dir)
	if err != nil {
		return err.Error(), false
	}
	var other []string
	for _, e := range names {
		if e.Name() != seekFolder && !strings.HasPrefix(e.Name(), ".snapshot-job-") {
			other = append(other, e.Name())
		}
	}
	if len(other) > 0 {
		return "also restored: " + strings.Join(other, ", "), false
	}
	return "`diff -r` of " + seekFolder + " finds no difference, nothing else restored (round 1)", true
}

// folderSize is the folder's compressed size the partial-restore target
// is measured against: tar -cf - -C DIR node-00 | zstd -3 | wc -c, and
// its file bytes.
func (b *bench) folderSize(ctx context.Context, ds dataset) (int64, int64, error) {
	out, err := b.run(ctx, nil, b.tools.bash, "-o", "pipefail", "-c",
		fmt.Sprintf("%s -cf - -C %s %s | %s -3 -q -T0 | wc -c", b.tools.tar, shellQuote(ds.Dir), seekFolder, b.tools.zstd))
	if err != nil {
		return 0, 0, err
	}
	z, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("wc -c printed %q", out)
	}
	f, err := countDataset(filepath.Join(ds.Dir, seekFolder), 0)
	return z, f.Bytes, err
}

// startTLS starts a second versitygw serving HTTPS with a certificate
// of a CA made for the run, and a counting proxy serving HTTPS with the
// same certificate in front of it; clients trust the CA through
// AWS_CA_BUNDLE.
func (b *bench) startTLS(ctx context.Context) (endpointSet, func(), error) {
	noop := func() {}
	dir := filepath.Join(b.work, "tls")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return endpointSet{}, noop, err
	}
	ca, cert, key, err := testenv.WriteCA(dir)
	if err != nil {
		return endpointSet{}, noop, err
	}
	setup := testenv.VersitySetup{Bin: b.opts.versitygw, Dir: filepath.Join(dir, "s3"), IAMDir: filepath.Join(dir, "iam"),
		SidecarDir: filepath.Join(dir, "sidecar"), CertFile: cert, KeyFile: key, CAFile: ca}
	for _, d := range []string{setup.Dir, setup.IAMDir, setup.SidecarDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return endpointSet{}, noop, err
		}
	}
	srv, err := testenv.LaunchVersity(ctx, setup)
	if err != nil {
		return endpointSet{}, noop, err
	}
	p, err := testenv.StartCountingProxy(srv.Endpoint, cert, key, ca)
	if err != nil {
		srv.Stop()
		return endpointSet{}, noop, err
	}
	stop := func() { p.Close(); srv.Stop() }
	ep := endpointSet{proxy: p, caFile: ca, access: srv.AccessKey, secret: srv.SecretKey}
	if _, err := b.run(ctx, append(b.awsEnv(), ep.env()...), b.tools.aws, "--endpoint-url", p.URL, "s3api", "create-bucket", "--bucket", bucketSnapshot); err != nil {
		stop()
		return endpointSet{}, noop, err
	}
	return ep, stop, nil
}

// ageKey makes a key pair with age-keygen, as an operator would.
func (b *bench) ageKey(ctx context.Context) (recipient, identity string, err error) {
	f := filepath.Join(b.work, "age-key.txt")
	if _, err := b.run(ctx, nil, "age-keygen", "-o", f); err != nil {
		return "", "", fmt.Errorf("age-keygen (Debian package age): %w", err)
	}
	return parseAgeKeyFile(f)
}

// parseAgeKeyFile reads what age-keygen -o wrote: a "# public key:"
// comment and the AGE-SECRET-KEY line.
func parseAgeKeyFile(path string) (recipient, identity string, err error) {
	fh, err := os.Open(path)
	if err != nil {
		return "", "", err
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if v, ok := strings.CutPrefix(line, "# public key:"); ok {
			recipient = strings.TrimSpace(v)
		} else if strings.HasPrefix(line, "AGE-SECRET-KEY-") {
			identity = line
		}
	}
	if recipient == "" || identity == "" {
		return "", "", fmt.Errorf("%s: no public key comment or no AGE-SECRET-KEY line", path)
	}
	return recipient, identity, sc.Err()
}

// filesExcerpt is the first 15 lines of what `files` printed and its
// last log line. Both are JSON lines in the same file (the bench sets
// SNAPSHOT_LOG_FORMAT=json); log lines are the ones with a level.
func filesExcerpt(log string) string {
	var out, logs []string
	for i, line := range strings.Split(strings.TrimRight(log, "\n"), "\n") {
		switch {
		case i == 0 && strings.HasPrefix(line, "$ "):
		case strings.Contains(line, `"level":`):
			logs = append(logs, line)
		case len(out) < 15:
			out = append(out, line)
		}
	}
	if len(logs) > 0 {
		out = append(out, "…", logs[len(logs)-1])
	}
	return strings.Join(out, "\n")
}

// logLine is the last line of log that contains marker.
func logLine(log, marker string) string {
	lines := strings.Split(log, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], marker) {
			return lines[i]
		}
	}
	return ""
}
