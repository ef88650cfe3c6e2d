package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// tools are the external programs, resolved once.
type tools struct {
	aws, zstd, rclone, restic, time, tar, diff, bash string
}

// debianTool is a program the benchmark needs and the Debian package that
// brings it. aws is looked up at /usr/bin/aws on purpose: the targets compare
// against the awscli Debian ships, and a pip or pyenv aws found earlier on
// PATH is another program (v1, other defaults).
type debianTool struct {
	name, path, pkg string
	dst             *string
}

func (t *tools) wanted(mode string) []debianTool {
	all := []debianTool{
		{"aws", "/usr/bin/aws", "awscli", &t.aws},
		{"GNU time", "/usr/bin/time", "time", &t.time},
		{"tar", "tar", "tar", &t.tar},
		{"zstd", "zstd", "zstd", &t.zstd},
		{"diff", "diff", "diffutils", &t.diff},
		{"bash", "bash", "bash", &t.bash},
	}
	if mode == "table" {
		all = append(all,
			debianTool{"rclone", "rclone", "rclone", &t.rclone},
			debianTool{"restic", "restic", "restic", &t.restic})
	}
	return all
}

// resolveTools finds every program the mode needs and installs the
// missing ones from Debian (apt-get update && apt-get install -y) when
// running as root; otherwise it names the command to run.
func resolveTools(ctx context.Context, mode string) (tools, error) {
	var t tools
	find := func() []string {
		var missing []string
		for _, w := range t.wanted(mode) {
			p, err := exec.LookPath(w.path)
			if err != nil {
				missing = append(missing, w.pkg)
				continue
			}
			*w.dst = p
		}
		return missing
	}
	missing := find()
	if len(missing) == 0 {
		return t, nil
	}
	if os.Geteuid() != 0 {
		return t, fmt.Errorf("missing Debian packages %s: run  sudo apt-get update && sudo apt-get install -y %s",
			strings.Join(missing, " "), strings.Join(missing, " "))
	}
	fmt.Fprintf(os.Stderr, "bench: installing missing Debian packages: %s\n", strings.Join(missing, " "))
	for _, argv := range [][]string{
		{"apt-get", "update"},
		append([]string{"apt-get", "install", "-y", "--no-install-recommends"}, missing...),
	} {
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if err := cmd.Run(); err != nil {
			return t, fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
		}
	}
	if missing = find(); len(missing) != 0 {
		return t, fmt.Errorf("still missing after apt-get install: %s", strings.Join(missing, " "))
	}
	return t, nil
}

// versions returns "tool: version" lines for the facts header.
func (b *bench) versions(ctx context.Context) [][2]string {
	first := func(argv ...string) string {
		out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
		if err != nil && len(out) == 0 {
			return "unknown (" + err.Error() + ")"
		}
		line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		return strings.TrimSpace(line)
	}
	t := b.tools
	rows := [][2]string{
		{"snapshot-job", first(b.opts.bin, "version")},
		{"versitygw", goModVersion(ctx, b.opts.versitygw)},
		{"go", runtime.Version()},
		{"aws (" + t.aws + ")", first(t.aws, "--version")},
		{"zstd", strings.Trim(first(t.zstd, "--version"), "* ")},
		{"tar", first(t.tar, "--version")},
		{"GNU time", "time " + dpkgVersion(ctx, "time")},
		{"bash", first(t.bash, "--version")},
	}
	if t.rclone != "" {
		rows = append(rows, [2]string{"rclone", first(t.rclone, "version")})
	}
	if t.restic != "" {
		rows = append(rows, [2]string{"restic", first(t.restic, "version")})
	}
	return rows
}

// goModVersion reads the module version built into a Go binary
// (versitygw installed with go install reports "git" itself).
func goModVersion(ctx context.Context, bin string) string {
	out, err := exec.CommandContext(ctx, "go", "version", "-m", bin).Output()
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == "mod" {
			return f[1] + " " + f[2]
		}
	}
	return "unknown"
}

func dpkgVersion(ctx context.Context, pkg string) string {
	out, err := exec.CommandContext(ctx, "dpkg-query", "-W", "-f", "${Version}", pkg).Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

// machineFacts describes the machine for the header of every result.
func machineFacts(dir string) [][2]string {
	host, _ := os.Hostname()
	facts := [][2]string{
		{"date", time.Now().UTC().Format(time.RFC3339)},
		{"host", host},
		{"nproc (GOMAXPROCS)", fmt.Sprintf("%d (%d)", runtime.NumCPU(), runtime.GOMAXPROCS(0))},
		{"CPU", cpuModel()},
		{"memory", memTotal()},
		{"kernel", readTrim("/proc/sys/kernel/osrelease")},
		{"OS", osRelease()},
		{"BENCH_DIR filesystem", fsType(dir)},
		{"load average at start", loadAvg()},
	}
	return facts
}

func readTrim(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func memTotal() string {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var kib int64
		if n, _ := fmt.Sscanf(sc.Text(), "MemTotal: %d kB", &kib); n == 1 {
			return fmt.Sprintf("%.1f GiB", float64(kib)/(1<<20))
		}
	}
	return "unknown"
}

func osRelease() string {
	b, err := os.ReadFile("/etc/os-release")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return "unknown"
}

// loadAvg is the 1, 5 and 15 minute load average: the machine may be
// shared, and a busy neighbour shows here.
func loadAvg() string {
	f := strings.Fields(readTrim("/proc/loadavg"))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func fsType(dir string) string {
	out, err := exec.Command("df", "--output=source,fstype", dir).Output()
	if err != nil {
		return "unknown"
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return strings.Join(strings.Fields(lines[len(lines)-1]), " ")
}

// freeBytes is the space available to this user in dir.
func freeBytes(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * st.Bsize, nil
}

// checkSpace fails clearly when dir cannot hold need bytes.
func checkSpace(dir string, need int64, what string) error {
	free, err := freeBytes(dir)
	if err != nil {
		return err
	}
	if free < need {
		return fmt.Errorf("BENCH_DIR=%s has %s free; this run needs about %s (%s): free some space or set BENCH_DIR to a larger disk",
			dir, mib(free), mib(need), what)
	}
	return nil
}

func mib(n int64) string {
	if n >= 1<<30 {
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	}
	return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
}

// cache drops the page cache between runs when the machine lets us, so
// that every run reads the dataset from disk.
type cache struct {
	cold   bool
	reason string // why it stays warm
}

func probeCache() cache {
	if err := dropCaches(); err != nil {
		return cache{reason: err.Error()}
	}
	return cache{cold: true}
}

func dropCaches() error {
	syscall.Sync()
	return os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0)
}

func (c cache) String() string {
	if c.cold {
		return "cold: sync; echo 3 > /proc/sys/vm/drop_caches before every run"
	}
	return "warm cache (dropping it failed: " + c.reason + "); the dataset was read once before the first run"
}

// before prepares a run: write back what the last run left dirty (so no
// run pays for another's writeback) and drop the cache when possible.
func (c cache) before() {
	syscall.Sync()
	if c.cold {
		_ = dropCaches()
	}
}

// dataset is a generated snapshot volume, cached under BENCH_DIR by size.
type dataset struct {
	Dir     string `json:"dir"`
	Size    int64  `json:"size"`    // requested
	Bytes   int64  `json:"bytes"`   // file content bytes
	Files   int64  `json:"files"`   // regular files
	Entries int64  `json:"entries"` // files and directories below the root: what tar -t lists
}

// ensureDataset returns the cached dataset of this size, generating it
// with bench/gendata when it is missing or incomplete. The marker sits
// beside the dataset, not in it, so that it is not archived.
func (b *bench) ensureDataset(ctx context.Context, size sizeArg) (dataset, error) {
	dir := b.datasetDir(size)
	marker := dir + ".json"
	var ds dataset
	// A cached dataset is reused only when it still has what the marker
	// recorded (a walk of a few thousand entries is cheap).
	if m, err := os.ReadFile(marker); err == nil && json.Unmarshal(m, &ds) == nil && ds.Dir == dir {
		if now, err := countDataset(dir, size.bytes); err == nil && now == ds {
			return ds, nil
		}
		fmt.Fprintf(os.Stderr, "bench: the cached dataset %s changed or is incomplete; generating it again\n", dir)
	}
	os.Remove(marker)
	if err := os.RemoveAll(dir); err != nil {
		return ds, err
	}
	fmt.Fprintf(os.Stderr, "bench: generating the %s dataset in %s\n", size.label, dir)
	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return ds, err
	}
	argv := []string{b.opts.gendata, tmp, fmt.Sprint(size.bytes)}
	if b.nodes > 0 {
		argv = []string{b.opts.gendata, "-nodes", fmt.Sprint(b.nodes), tmp, fmt.Sprint(size.bytes)}
	}
	if out, err := b.run(ctx, os.Environ(), argv...); err != nil {
		return ds, fmt.Errorf("generating the dataset: %w", err)
	} else {
		fmt.Fprint(os.Stderr, "bench: gendata: ", out)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return ds, err
	}
	ds, err := countDataset(dir, size.bytes)
	if err != nil {
		return ds, err
	}
	m, _ := json.Marshal(ds)
	return ds, os.WriteFile(marker, m, 0o644)
}

// datasetDir is where the dataset of this size is cached: dataset-<bytes>,
// or dataset-<bytes>-n<nodes> for the variant spread over node folders.
func (b *bench) datasetDir(size sizeArg) string {
	name := fmt.Sprintf("dataset-%d", size.bytes)
	if b.nodes > 0 {
		name += fmt.Sprintf("-n%d", b.nodes)
	}
	return filepath.Join(b.opts.dir, name)
}

// countDataset counts the entries and bytes below dir.
func countDataset(dir string, size int64) (dataset, error) {
	ds := dataset{Dir: dir, Size: size}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		ds.Entries++
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			ds.Files++
			ds.Bytes += fi.Size()
		}
		return nil
	})
	return ds, err
}
