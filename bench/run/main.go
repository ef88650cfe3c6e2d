// Command run is the benchmark behind `make bench`, `make bench-mem` and
// `make bench-defaults`: it runs snapshot-job and the tools an operator
// would use instead against one local versitygw, on one generated
// dataset, and prints one markdown table. docs/performance.md explains it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/snapshot-job/snapshot-job/internal/setting"
)

type options struct {
	mode      string // table, mem, matrix or seek
	size      string
	sizes     string // mem mode
	seekSizes string // seek mode
	runs      int
	dir       string // datasets and scratch space
	server    string // where versitygw keeps its objects; "" = under dir
	results   string // where the result files go
	env       string // extra environment for snapshot-job, "K=V K=V"
	only      string // comma-separated row filter (table mode)
	strict    bool

	bin, gendata, versitygw string

	levels, concurrency, partSizes string // matrix mode
}

func main() {
	var o options
	flag.StringVar(&o.mode, "mode", "table", "table (make bench), mem (make bench-mem), matrix (make bench-defaults) or seek (make bench-seek)")
	flag.StringVar(&o.seekSizes, "seek-sizes", "1GiB,4GiB", "dataset sizes of the seek mode")
	flag.StringVar(&o.size, "size", "1GiB", "dataset size (table and matrix modes)")
	flag.StringVar(&o.sizes, "mem-sizes", "1GiB,4GiB", "dataset sizes compared by the mem mode")
	flag.IntVar(&o.runs, "runs", 3, "runs per row; the table shows medians")
	flag.StringVar(&o.dir, "dir", ".tools/bench", "datasets (cached by size) and scratch space")
	flag.StringVar(&o.results, "results", ".tools/bench", "where results-*.md are written")
	flag.StringVar(&o.server, "server-dir", "", "where versitygw keeps its objects (default: the scratch space under -dir, i.e. the dataset's disk); e.g. /dev/shm for a store that does not share the client's disk")
	flag.StringVar(&o.env, "env", "", "extra environment for snapshot-job, e.g. 'SNAPSHOT_UPLOAD_CONCURRENCY=8 SNAPSHOT_PART_SIZE=32MiB'")
	flag.StringVar(&o.only, "only", "", "comma-separated rows to run (table mode): snapshot-job,aws,rclone,restic,limit")
	flag.BoolVar(&o.strict, "strict", false, "exit 3 when a target is missed")
	flag.StringVar(&o.bin, "bin", "bin/snapshot-job", "snapshot-job binary")
	flag.StringVar(&o.gendata, "gendata", ".tools/bin/gendata", "dataset generator binary (bench/gendata)")
	flag.StringVar(&o.versitygw, "versitygw", ".tools/bin/versitygw", "versitygw binary (make tools)")
	flag.StringVar(&o.levels, "levels", "fastest,default", "matrix: SNAPSHOT_COMPRESSION_LEVEL values")
	flag.StringVar(&o.concurrency, "concurrency", "2,4,8", "matrix: SNAPSHOT_UPLOAD_CONCURRENCY values")
	flag.StringVar(&o.partSizes, "part-sizes", "8MiB,16MiB,32MiB", "matrix: SNAPSHOT_PART_SIZE values")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, o)
	interrupted := ctx.Err() != nil
	stop()
	var missed targetsMissed
	switch {
	case interrupted:
		fmt.Fprintln(os.Stderr, "bench: interrupted; the server is stopped and the scratch space removed")
		os.Exit(130)
	case errors.As(err, &missed):
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(3)
	case err != nil:
		fmt.Fprintln(os.Stderr, "bench: FAILED:", err)
		os.Exit(1)
	}
}

type targetsMissed struct{ names []string }

func (t targetsMissed) Error() string {
	return "targets missed: " + strings.Join(t.names, "; ")
}

func run(ctx context.Context, o options) error {
	if o.runs < 1 {
		return fmt.Errorf("BENCH_RUNS=%d: at least 1 run", o.runs)
	}
	for _, p := range []*string{&o.bin, &o.gendata, &o.versitygw, &o.dir, &o.results} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return err
		}
		*p = abs
	}
	for _, f := range []struct{ path, hint string }{
		{o.bin, "make build"}, {o.gendata, "go build -o .tools/bin/gendata ./bench/gendata"}, {o.versitygw, "make tools"},
	} {
		if _, err := os.Stat(f.path); err != nil {
			return fmt.Errorf("%s is missing: run %s (make bench does)", f.path, f.hint)
		}
	}
	extra, err := parseEnv(o.env)
	if err != nil {
		return err
	}
	b := &bench{opts: o, extraEnv: extra}
	switch o.mode {
	case "table":
		return b.table(ctx)
	case "mem":
		return b.mem(ctx)
	case "matrix":
		return b.matrix(ctx)
	case "seek":
		return b.seek(ctx)
	}
	return fmt.Errorf("unknown mode %q: use table, mem, matrix or seek", o.mode)
}

// goRuntimeVars tune the Go runtime of snapshot-job (it respects
// GOMEMLIMIT), so BENCH_ENV accepts them too.
var goRuntimeVars = []string{"GOMEMLIMIT", "GOGC", "GOMAXPROCS", "GODEBUG"}

// parseEnv reads BENCH_ENV: space-separated NAME=value pairs for
// snapshot-job (its only configuration is the environment).
func parseEnv(s string) ([]string, error) {
	var out []string
	for _, kv := range strings.Fields(s) {
		name, _, ok := strings.Cut(kv, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("BENCH_ENV: %q is not NAME=value", kv)
		}
		if !strings.HasPrefix(name, setting.Prefix+"_") && !slices.Contains(goRuntimeVars, name) {
			return nil, fmt.Errorf("BENCH_ENV: %s is neither a %s_ variable nor one of %s", name, setting.Prefix, strings.Join(goRuntimeVars, ", "))
		}
		out = append(out, kv)
	}
	return out, nil
}

// parseSizes reads a comma-separated list of sizes.
func parseSizes(s string) ([]sizeArg, error) {
	var out []sizeArg
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := setting.ParseSize(f)
		if err != nil {
			return nil, err
		}
		if n < 16<<20 {
			return nil, fmt.Errorf("size %s: at least 16MiB (the dataset has thousands of small files plus pcaps)", f)
		}
		out = append(out, sizeArg{label: f, bytes: int64(n)})
	}
	if len(out) == 0 {
		return nil, errors.New("no size given")
	}
	return out, nil
}

type sizeArg struct {
	label string
	bytes int64
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
