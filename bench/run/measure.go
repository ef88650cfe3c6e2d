package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// timeFormat is what GNU time writes for each measured process: peak
// resident set size in KiB, user and system CPU seconds.
const timeFormat = "%M %U %S"

// stage is one process of a measured command line.
type stage []string

// command is what one row runs: a single process or a shell pipeline of
// stages. Every stage runs under its own GNU time, so that the peak RSS of
// each process is known (the largest is the row's peak; their sum bounds
// what the pipeline held at once).
type command struct {
	stages []stage
	stdout string // redirect the last stage's output here (empty: the log)
	env    []string
}

// sample is one measured run.
type sample struct {
	wall time.Duration
	rss  []int64 // peak RSS per process, KiB
	cpu  float64 // user+system seconds of all processes
}

func (s sample) maxRSS() int64 { return slices.Max(s.rss) }

func (s sample) sumRSS() int64 {
	var n int64
	for _, r := range s.rss {
		n += r
	}
	return n
}

// shellQuote quotes s for bash.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=@%+,", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func joinArgs(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = shellQuote(a)
	}
	return strings.Join(q, " ")
}

// String shows the command as a person would type it (without the time
// wrappers).
func (c command) String() string {
	parts := make([]string, len(c.stages))
	for i, s := range c.stages {
		parts[i] = joinArgs(s)
	}
	line := strings.Join(parts, " | ")
	if c.stdout != "" {
		line += " > " + shellQuote(c.stdout)
	}
	return line
}

// argv builds what is executed: the process itself under GNU time, or
// bash -o pipefail with every stage under GNU time. Each stage writes its
// figures to timeFiles[i].
func (c command) argv(timeBin string, timeFiles []string) []string {
	wrap := func(i int) []string {
		return append([]string{timeBin, "-q", "-f", timeFormat, "-o", timeFiles[i]}, c.stages[i]...)
	}
	if len(c.stages) == 1 && c.stdout == "" {
		return wrap(0)
	}
	parts := make([]string, len(c.stages))
	for i := range c.stages {
		parts[i] = joinArgs(wrap(i))
	}
	line := strings.Join(parts, " | ")
	if c.stdout != "" {
		line += " > " + shellQuote(c.stdout)
	}
	return []string{"bash", "-o", "pipefail", "-c", line}
}

// parseTimeFile reads what GNU time wrote with timeFormat.
func parseTimeFile(b []byte) (rssKiB int64, cpu float64, err error) {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	f := strings.Fields(lines[len(lines)-1])
	if len(f) != 3 {
		return 0, 0, fmt.Errorf("unexpected GNU time output %q", b)
	}
	rssKiB, err = strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("GNU time output %q: %w", b, err)
	}
	for _, s := range f[1:] {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("GNU time output %q: %w", b, err)
		}
		cpu += v
	}
	return rssKiB, cpu, nil
}

// measure runs c once and returns its wall time (taken here, around the
// whole command) and each process's peak RSS and CPU time (from GNU time).
// Output goes to logFile; a failure quotes its tail.
func (b *bench) measure(ctx context.Context, c command, logFile string) (sample, error) {
	dir, err := os.MkdirTemp(b.work, "time-")
	if err != nil {
		return sample{}, err
	}
	defer os.RemoveAll(dir)
	files := make([]string, len(c.stages))
	for i := range files {
		files[i] = filepath.Join(dir, fmt.Sprintf("stage-%d", i))
	}
	log, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return sample{}, err
	}
	defer log.Close()
	fmt.Fprintf(log, "$ %s\n", c)
	argv := c.argv(b.tools.time, files)
	cmd := processGroupCommand(ctx, argv)
	cmd.Env = c.env
	cmd.Stdout, cmd.Stderr = log, log
	start := time.Now()
	err = cmd.Run()
	s := sample{wall: time.Since(start)}
	if err != nil {
		return s, fmt.Errorf("%s: %w (log: %s)\n%s", c, err, logFile, tailFile(logFile, 1500))
	}
	for _, f := range files {
		out, err := os.ReadFile(f)
		if err != nil {
			return s, fmt.Errorf("GNU time wrote nothing for %s: %w", c, err)
		}
		rss, cpu, err := parseTimeFile(out)
		if err != nil {
			return s, err
		}
		s.rss = append(s.rss, rss)
		s.cpu += cpu
	}
	return s, nil
}

// processGroupCommand runs argv in its own process group, so that
// cancelling (Ctrl-C) stops every process of a pipeline, not only bash.
func processGroupCommand(ctx context.Context, argv []string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error {
		if cmd.Process == nil {
			return nil
		}
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = 10 * time.Second
	return cmd
}

// run runs an unmeasured helper command and returns its output.
func (b *bench) run(ctx context.Context, env []string, argv ...string) (string, error) {
	cmd := processGroupCommand(ctx, argv)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", joinArgs(argv), err, tail(string(out), 1500))
	}
	return string(out), nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return tail(string(b), n)
}

// median of the samples' values (the mean of the middle two for an even
// count).
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}
