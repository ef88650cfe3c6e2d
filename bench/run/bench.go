package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/snapshot-job/snapshot-job/internal/testenv"
)

// bench is one invocation: the tools, the server and the scratch space.
type bench struct {
	opts     options
	extraEnv []string
	nodes    int // node folders of the datasets; 0: testenv.GenerateDataset's

	tools          tools
	work           string // scratch directory, removed at the end
	serverDir      string // versitygw's objects when -server-dir is set, removed at the end
	logs           string // per-run logs, kept for reading after a failure
	srv            *testenv.VersityProcess
	awsConfig      string
	resticPassword string
	cache          cache
	facts          [][2]string
	versionRows    [][2]string
	loads          []string // the load average when each round started
}

// progress announces a round and records the load average at its start:
// on a shared machine it explains a slow round.
func (b *bench) progress(round string) {
	l := loadAvg()
	b.loads = append(b.loads, round+": "+l)
	fmt.Fprintf(os.Stderr, "bench: %s (load average %s)\n", round, l)
}

// setup resolves the tools, checks the space, generates the datasets and
// starts the server. The returned function stops and removes everything
// but the cached datasets and the logs.
func (b *bench) setup(ctx context.Context, sizes []sizeArg, spaceFactor int64, buckets ...string) ([]dataset, func(), error) {
	noop := func() {}
	var err error
	if b.tools, err = resolveTools(ctx, b.opts.mode); err != nil {
		return nil, noop, err
	}
	for _, d := range []string{b.opts.dir, b.opts.results} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, noop, err
		}
	}
	// Space: every dataset not yet cached, plus, for the largest, the
	// objects and restore targets one run keeps at a time (spaceFactor
	// times the dataset, as if nothing compressed), plus a margin.
	var need, largest int64
	for _, s := range sizes {
		if _, err := os.Stat(b.datasetDir(s) + ".json"); err != nil {
			need += s.bytes
		}
		largest = max(largest, s.bytes)
	}
	need += spaceFactor*largest + 1<<30
	if err := checkSpace(b.opts.dir, need, fmt.Sprintf("datasets not yet cached, plus %d× the largest dataset for objects and restore targets, plus 1 GiB", spaceFactor)); err != nil {
		return nil, noop, err
	}
	b.facts = machineFacts(b.opts.dir)
	b.versionRows = b.versions(ctx)
	var sets []dataset
	for _, s := range sizes {
		ds, err := b.ensureDataset(ctx, s)
		if err != nil {
			return nil, noop, err
		}
		sets = append(sets, ds)
	}
	if b.work, err = os.MkdirTemp(b.opts.dir, "run-"); err != nil {
		return nil, noop, err
	}
	b.logs = filepath.Join(b.opts.dir, "logs", time.Now().UTC().Format("20060102T150405Z")+"-"+b.opts.mode)
	if err := os.MkdirAll(b.logs, 0o755); err != nil {
		return nil, noop, err
	}
	b.awsConfig = filepath.Join(b.work, "aws-config")
	if err := writeAWSConfig(b.awsConfig); err != nil {
		return nil, noop, err
	}
	b.resticPassword = randomHex(16)
	cleanup := func() {
		b.srv.Stop()
		for _, d := range []string{b.work, b.serverDir} {
			if d == "" {
				continue
			}
			if err := os.RemoveAll(d); err != nil {
				fmt.Fprintln(os.Stderr, "bench: cleaning up:", err)
			}
		}
	}
	serverDir := b.work
	if b.opts.server != "" {
		if serverDir, err = os.MkdirTemp(b.opts.server, "snapshot-job-bench-s3-"); err != nil {
			cleanup()
			return nil, noop, err
		}
		b.serverDir = serverDir
	}
	if b.srv, err = startServer(ctx, b.opts.versitygw, serverDir); err != nil {
		cleanup()
		return nil, noop, err
	}
	if err := b.createBuckets(ctx, buckets...); err != nil {
		cleanup()
		return nil, noop, err
	}
	b.cache = probeCache()
	if !b.cache.cold {
		// Without a way to drop the cache, read every dataset once so
		// that the first run is not the only cold one.
		for _, ds := range sets {
			if _, err := b.run(ctx, nil, "bash", "-c", "tar -cf - -C "+shellQuote(ds.Dir)+" . | cat > /dev/null"); err != nil {
				cleanup()
				return nil, noop, err
			}
		}
	}
	fmt.Fprintf(os.Stderr, "bench: versitygw on %s, page cache %s, logs in %s\n", b.srv.Endpoint, map[bool]string{true: "dropped per run", false: "warm"}[b.cache.cold], b.logs)
	return sets, cleanup, nil
}

// termResult is snapshot-job's termination message.
type termResult struct {
	Key      string `json:"key"`
	Bytes    int64  `json:"bytes"`
	Entries  int64  `json:"entries"`
	ExitCode int    `json:"exit_code"`
	Error    string `json:"error"`
}

func (b *bench) logFile(name string) string { return filepath.Join(b.logs, name+".log") }

// emptyDir returns a fresh empty directory under the scratch space.
func (b *bench) emptyDir(name string) (string, error) {
	d := filepath.Join(b.work, name)
	if err := os.RemoveAll(d); err != nil {
		return "", err
	}
	return d, os.MkdirAll(d, 0o755)
}

// snapshotBackup runs and measures `snapshot-job backup` of ds under a
// fresh prefix.
func (b *bench) snapshotBackup(ctx context.Context, ds dataset, prefix, log string, extra ...string) (sample, termResult, error) {
	term := filepath.Join(b.work, "termination-log")
	os.Remove(term)
	env := b.snapshotEnv(prefix, term, append([]string{"SNAPSHOT_SOURCE_DIR=" + ds.Dir}, extra...)...)
	b.cache.before()
	s, err := b.measure(ctx, command{stages: []stage{{b.opts.bin, "backup"}}, env: env}, log)
	var res termResult
	if err != nil {
		return s, res, err
	}
	m, err := os.ReadFile(term)
	if err != nil {
		return s, res, fmt.Errorf("snapshot-job wrote no termination message: %w", err)
	}
	if err := json.Unmarshal(m, &res); err != nil {
		return s, res, fmt.Errorf("termination message %q: %w", m, err)
	}
	if res.Key == "" || res.Bytes == 0 {
		return s, res, fmt.Errorf("termination message names no stored object: %s", m)
	}
	return s, res, nil
}

// snapshotRestore runs and measures `snapshot-job restore` of key into
// the empty directory dir.
func (b *bench) snapshotRestore(ctx context.Context, prefix, key, dir, log string, extra ...string) (sample, error) {
	env := b.snapshotEnv(prefix, filepath.Join(b.work, "termination-log"),
		append([]string{"SNAPSHOT_RESTORE_KEY=" + key, "SNAPSHOT_RESTORE_DIR=" + dir}, extra...)...)
	b.cache.before()
	return b.measure(ctx, command{stages: []stage{{b.opts.bin, "restore"}}, env: env}, log)
}

// writeResult prints the report and saves it under the results directory.
func (b *bench) writeResult(name, report string) error {
	fmt.Print(report)
	p := filepath.Join(b.opts.results, name)
	if err := os.WriteFile(p, []byte(report), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "bench: saved %s\n", p)
	return nil
}
