package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// indexResult is what the Go benchmark of the index's cost printed.
type indexResult struct {
	cmdline       string
	with, without float64 // median ns/op
	err           error
}

const indexBenchArgs = "test -run ^$ -bench ^BenchmarkWriteIndex$ -benchtime 5x -count 6 ./internal/archive/"

// indexCost runs BenchmarkWriteIndex (a backup of the 64 MiB bench
// dataset into io.Discard, with and without the index): the binary
// always writes an index, so the difference is only measurable there.
func (b *bench) indexCost(ctx context.Context) indexResult {
	res := indexResult{cmdline: "go " + indexBenchArgs}
	b.progress("BenchmarkWriteIndex")
	cmd := exec.CommandContext(ctx, "go", strings.Fields(indexBenchArgs)...)
	cmd.Env = os.Environ()
	out, err := cmd.CombinedOutput()
	os.WriteFile(b.logFile("seek-index-bench"), out, 0o644)
	if err != nil {
		res.err = fmt.Errorf("%s: %w: %s", res.cmdline, err, tail(string(out), 1500))
		return res
	}
	ns, err := parseBenchNs(string(out))
	if err != nil {
		res.err = err
		return res
	}
	res.with, res.without = median(ns["with"]), median(ns["without"])
	if res.with == 0 || res.without == 0 {
		res.err = fmt.Errorf("BenchmarkWriteIndex printed no with/without results: %s", tail(string(out), 1500))
	}
	return res
}

// parseBenchNs reads the ns/op of every sub-benchmark from go test
// -bench output, keyed by the sub-benchmark's name without the
// benchmark's and the -GOMAXPROCS suffix.
func parseBenchNs(out string) (map[string][]float64, error) {
	res := map[string][]float64{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		name := f[0]
		if _, sub, ok := strings.Cut(name, "/"); ok {
			name = sub
		}
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		for i := 1; i+1 < len(f); i++ {
			if f[i+1] == "ns/op" {
				v, err := strconv.ParseFloat(f[i], 64)
				if err != nil {
					return nil, fmt.Errorf("benchmark line %q: %w", line, err)
				}
				res[name] = append(res[name], v)
			}
		}
	}
	return res, nil
}

func (b *bench) seekReport(sizes []sizeArg, sets []dataset, perSize []*seekRows, idx indexResult) error {
	var sb strings.Builder
	fmt.Fprintf(&sb, "## make bench-seek: seekable snapshots, %d run(s)\n\n", b.opts.runs)
	b.writeHeader(&sb, sets...)
	fmt.Fprintf(&sb, "bytes fetched and requests are counted by a reverse proxy in front of versitygw (response body bytes the server sent); %% = bytes fetched / stored object.\n\n")
	var missed, failed []string
	verdict := func(name string, ok bool) string {
		if ok {
			return "PASS"
		}
		missed = append(missed, name)
		return "**FAIL**"
	}
	for i, rows := range perSize {
		ds := sets[i]
		fmt.Fprintf(&sb, "### %s (%s, %d node folders)\n\n", sizes[i].label, mib(ds.Bytes), seekNodes)
		fmt.Fprintf(&sb, "| operation | median s | min–max s | MiB/s | fetched MiB | %% of object | requests | peak RSS MiB | CPU s |\n")
		fmt.Fprintf(&sb, "|---|--:|--:|--:|--:|--:|--:|--:|--:|\n")
		for _, r := range rows.all() {
			if r.err != nil {
				fmt.Fprintf(&sb, "| %s | FAILED: %s | | | | | | | |\n", cell(r.name), cell(firstLine(r.err.Error())))
				failed = append(failed, sizes[i].label+" "+r.name)
				continue
			}
			if !r.ok() {
				continue
			}
			obj := rows.object
			if strings.Contains(r.name, "encrypted") {
				obj = rows.ageObject
			}
			w := r.walls()
			pct := "—"
			if obj > 0 {
				pct = fmt.Sprintf("%.2f", 100*r.bytes()/float64(obj))
			}
			data := float64(ds.Bytes)
			if strings.Contains(r.name, seekFolder) {
				data = float64(rows.folderBytes)
			}
			rate := "—"
			if !strings.Contains(r.name, "files") {
				rate = fmt.Sprintf("%.0f", data/(1<<20)/r.medianWall())
			}
			fmt.Fprintf(&sb, "| %s | %.2f | %.2f–%.2f | %s | %.1f | %s | %.0f | %.0f | %.1f |\n", cell(r.name), r.medianWall(), minOf(w), maxOf(w),
				rate, r.bytes()/(1<<20), pct, r.requests(), r.medianRSS(), r.medianCPU())
		}
		fmt.Fprintf(&sb, "\nstored: %s plain, %s encrypted; %s: %s of files, %s as `tar -cf - -C DIR %s | zstd -3 | wc -c`; index size = what `files` fetched. MiB/s = the data restored (the folder's bytes for the one-folder rows) / median.\n\n",
			mib(rows.object), mib(rows.ageObject), seekFolder, mib(rows.folderBytes), mib(rows.folderZ), seekFolder)
		fmt.Fprintf(&sb, "| target | measured | result |\n|---|---|---|\n")
		if rows.files.ok() && rows.object > 0 {
			q := 100 * rows.files.bytes() / float64(rows.object)
			fmt.Fprintf(&sb, "| files fetches ≤ 1 %% of the object | %.0f B / %s = **%.3f %%** | %s |\n", rows.files.bytes(), mib(rows.object), q, verdict(sizes[i].label+" files ≤ 1 %", q <= 1))
		}
		bound := func(name string, r *seekRow) {
			if !r.ok() || !rows.files.ok() {
				fmt.Fprintf(&sb, "| %s | not measured | n/a |\n", name)
				return
			}
			limit := 1.2*float64(rows.folderZ) + rows.files.bytes()
			fmt.Fprintf(&sb, "| %s | %s / (1.2 × %s + %s) = **%.2f** | %s |\n", name, mib(int64(r.bytes())), mib(rows.folderZ), mib(int64(rows.files.bytes())),
				r.bytes()/limit, verdict(sizes[i].label+" "+name, r.bytes() <= limit))
		}
		bound("one-folder restore fetches ≤ 1.2 × folder compressed + index", rows.partial)
		if rows.partial.ok() && rows.full.ok() {
			q := rows.partial.medianWall() / rows.full.medianWall()
			fmt.Fprintf(&sb, "| one-folder restore ≤ 0.1 × full restore time | %.2f s / %.2f s = **%.2f** | %s |\n", rows.partial.medianWall(), rows.full.medianWall(), q, verdict(sizes[i].label+" one-folder time ≤ 0.1 × full", q <= 0.1))
		}
		if rows.partial.ok() && rows.awsPartial.ok() {
			fmt.Fprintf(&sb, "| one-folder restore against the aws-cli pipeline, for comparison | %.2f s / %.2f s = **%.2f**; %s / %s fetched | info |\n",
				rows.partial.medianWall(), rows.awsPartial.medianWall(), rows.partial.medianWall()/rows.awsPartial.medianWall(), mib(int64(rows.partial.bytes())), mib(int64(rows.awsPartial.bytes())))
		}
		if rows.shm1.ok() && rows.shmAll.ok() {
			q := rows.shm1.medianWall() / rows.shmAll.medianWall()
			fmt.Fprintf(&sb, "| tmpfs restore, all cores ≥ 1.5 × faster than GOMAXPROCS=1 | %.2f s / %.2f s = **%.2f×** | %s |\n", rows.shm1.medianWall(), rows.shmAll.medianWall(), q, verdict(sizes[i].label+" tmpfs all cores ≥ 1.5×", q >= 1.5))
		}
		bound("encrypted one-folder restore fetches ≤ 1.2 × folder compressed + index", rows.agePartial)
		for _, p := range [][2]*seekRow{{rows.ageBackup, rows.backup}, {rows.ageFull, rows.full}, {rows.tlsBackup, rows.backup}, {rows.tlsFull, rows.full}, {rows.tlsPartial, rows.partial}} {
			if p[0].ok() && p[1].ok() {
				fmt.Fprintf(&sb, "| %s against plain | %.2f s / %.2f s = **%+.0f %%** time, CPU %.1f s / %.1f s | info |\n", cell(p[0].name), p[0].medianWall(), p[1].medianWall(),
					100*(p[0].medianWall()/p[1].medianWall()-1), p[0].medianCPU(), p[1].medianCPU())
			}
		}
		if rows.check != "" {
			fmt.Fprintf(&sb, "| one-folder restore restores exactly the folder | %s | %s |\n", cell(rows.check), verdict(sizes[i].label+" one-folder tree", rows.checkPass))
			if !rows.checkPass {
				failed = append(failed, sizes[i].label+" one-folder tree")
			}
		}
		for _, x := range [][2]string{{"`snapshot-job files` (first 15 lines and its last log line)", rows.filesExcerpt},
			{"the one-folder restore's log line", rows.partialLine}, {"the encrypted one-folder restore's log line", rows.agePartialLine}} {
			if x[1] != "" {
				fmt.Fprintf(&sb, "\n%s:\n\n```\n%s\n```\n", x[0], x[1])
			}
		}
		fmt.Fprintf(&sb, "\n")
	}
	fmt.Fprintf(&sb, "### The index's cost on backup throughput\n\n| target | measured | result |\n|---|---|---|\n")
	if idx.err != nil {
		fmt.Fprintf(&sb, "| backup throughput loses ≤ 3 %% to the index | FAILED: %s | n/a |\n", cell(firstLine(idx.err.Error())))
		failed = append(failed, "index benchmark")
	} else {
		q := 100 * (idx.with/idx.without - 1)
		fmt.Fprintf(&sb, "| backup throughput loses ≤ 3 %% to the index | %.0f ms with / %.0f ms without per 64 MiB = **%+.1f %%** | %s |\n",
			idx.with/1e6, idx.without/1e6, q, verdict("index cost ≤ 3 %", q <= 3))
	}
	fmt.Fprintf(&sb, "\n`%s` (medians of 3 × 5 backups of the 64 MiB bench dataset into io.Discard, with and without the index and its checksums)\n", idx.cmdline)
	fmt.Fprintf(&sb, "\n| row | command |\n|---|---|\n")
	for _, r := range perSize[len(perSize)-1].all() {
		if r.cmdline != "" {
			fmt.Fprintf(&sb, "| %s | `%s` |\n", cell(r.name), cell(r.cmdline))
		}
	}
	fmt.Fprintf(&sb, "\nload average at the end: %s; `uptime`: %s\n", loadAvg(), uptime())
	if err := b.writeResult("results-seek.md", sb.String()); err != nil {
		return err
	}
	if len(failed) > 0 {
		return fmt.Errorf("%s (logs in %s)", strings.Join(failed, "; "), b.logs)
	}
	if b.opts.strict && len(missed) > 0 {
		return targetsMissed{missed}
	}
	return nil
}

func minOf(v []float64) float64 {
	m := v[0]
	for _, x := range v {
		m = min(m, x)
	}
	return m
}

func maxOf(v []float64) float64 {
	m := v[0]
	for _, x := range v {
		m = max(m, x)
	}
	return m
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}
