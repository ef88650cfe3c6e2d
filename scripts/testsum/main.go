// Command testsum turns `go test -json` into what a person watching
// `make test` needs: a line per package as it finishes, the output of each
// failed test as it fails, a note when nothing has finished for a while,
// and at the very end one closing line, "N passed, N failed", with the
// failed tests listed.
//
// Results are appended to a file so that several stages (chart tests,
// unit tests, fuzz targets, lint) add up to one summary:
//
//	go test -json ./... 2>&1 | testsum -record FILE
//	testsum -record FILE -result fail -kind check -name "go vet"
//	testsum -summary FILE -start UNIX_SECONDS
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

func main() {
	record := flag.String("record", "", "file to append results to")
	one := flag.String("result", "", "record one result (pass, fail, skip) instead of reading go test -json")
	kind := flag.String("kind", "check", "kind of the one result: test, fuzz or check")
	name := flag.String("name", "", "name of the one result")
	summary := flag.String("summary", "", "print the closing summary of this results file")
	start := flag.Int64("start", 0, "with -summary: when the run started (Unix seconds)")
	quiet := flag.Duration("heartbeat", time.Minute, "say what is still running after this long without output")
	flag.Parse()

	switch {
	case *summary != "":
		var elapsed time.Duration
		if *start > 0 {
			elapsed = time.Since(time.Unix(*start, 0))
		}
		os.Exit(summarize(os.Stdout, *summary, elapsed))
	case *record == "":
		fmt.Fprintln(os.Stderr, "testsum: -record or -summary is required")
		os.Exit(2)
	case *one != "":
		if *one != "pass" && *one != "fail" && *one != "skip" {
			fmt.Fprintln(os.Stderr, "testsum: -result is pass, fail or skip")
			os.Exit(2)
		}
		if err := appendResults(*record, []result{{status: *one, kind: *kind, name: *name}}); err != nil {
			fmt.Fprintln(os.Stderr, "testsum:", err)
			os.Exit(2)
		}
		return
	}
	c := newCollector(os.Stdout, *quiet)
	err := c.read(os.Stdin)
	c.stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "testsum: reading go test -json:", err)
		c.results = append(c.results, result{status: "fail", kind: "check", name: "reading go test output"})
	}
	if err := appendResults(*record, c.results); err != nil {
		fmt.Fprintln(os.Stderr, "testsum:", err)
		os.Exit(2)
	}
	if c.failed() {
		os.Exit(1)
	}
}

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Time        time.Time
	Action      string
	Package     string
	Test        string
	Elapsed     float64
	Output      string
	ImportPath  string
	FailedBuild string
}

// result is one line of the results file: status, kind, name.
type result struct{ status, kind, name string }

// maxLines caps the output shown for one failed test or package.
const maxLines = 300

type pkgState struct {
	started time.Time
	output  []string            // output outside any test
	tests   map[string][]string // output per test
	passed  int
	skipped int
	failed  int
}

type collector struct {
	w       io.Writer
	mu      sync.Mutex
	pkgs    map[string]*pkgState
	builds  map[string][]string // build output per import path
	results []result
	last    time.Time // when something was last printed
	done    chan struct{}
	wg      sync.WaitGroup
}

func newCollector(w io.Writer, heartbeat time.Duration) *collector {
	c := &collector{w: w, pkgs: map[string]*pkgState{}, builds: map[string][]string{}, last: time.Now(), done: make(chan struct{})}
	if heartbeat > 0 {
		c.wg.Add(1)
		go c.beat(heartbeat)
	}
	return c
}

func (c *collector) stop() {
	close(c.done)
	c.wg.Wait()
}

// beat says which packages are still running when nothing was printed
// for a while: a quiet terminal looks like a hung one.
func (c *collector) beat(every time.Duration) {
	defer c.wg.Done()
	t := time.NewTicker(every / 4)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case now := <-t.C:
			c.mu.Lock()
			if now.Sub(c.last) >= every {
				var running []string
				for name, p := range c.pkgs {
					running = append(running, fmt.Sprintf("%s (%s)", name, now.Sub(p.started).Round(time.Second)))
				}
				sort.Strings(running)
				if len(running) == 0 {
					fmt.Fprintln(c.w, "     ... building")
				} else {
					fmt.Fprintf(c.w, "     ... still running: %s\n", strings.Join(running, ", "))
				}
				c.last = now
			}
			c.mu.Unlock()
		}
	}
}

func (c *collector) printf(format string, args ...any) {
	fmt.Fprintf(c.w, format, args...)
	c.last = time.Now()
}

func (c *collector) failed() bool {
	return slices.ContainsFunc(c.results, func(r result) bool { return r.status == "fail" })
}

func (c *collector) read(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
			// go test's own messages (a package that does not build
			// before Go reports it as JSON, "no Go files", ...).
			c.mu.Lock()
			c.printf("%s\n", line)
			c.mu.Unlock()
			continue
		}
		c.mu.Lock()
		c.event(e)
		c.mu.Unlock()
	}
	// Packages that never reported an end (go test was killed).
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, p := range c.pkgs {
		c.printf("FAIL %s: no result (go test stopped)\n", name)
		c.showOutput(p.output)
		c.results = append(c.results, result{"fail", "test", name + " (package)"})
	}
	return sc.Err()
}

func (c *collector) pkg(name string) *pkgState {
	p := c.pkgs[name]
	if p == nil {
		p = &pkgState{started: time.Now(), tests: map[string][]string{}}
		c.pkgs[name] = p
	}
	return p
}

func (c *collector) event(e event) {
	switch e.Action {
	case "build-output":
		c.builds[e.ImportPath] = append(c.builds[e.ImportPath], e.Output)
		return
	case "build-fail":
		return
	}
	if e.Package == "" {
		return
	}
	p := c.pkg(e.Package)
	if e.Test == "" {
		switch e.Action {
		case "output":
			p.output = append(p.output, e.Output)
		case "pass", "fail", "skip":
			c.endPackage(e, p)
		}
		return
	}
	switch e.Action {
	case "output":
		p.tests[e.Test] = append(p.tests[e.Test], e.Output)
	case "pass":
		p.passed++
		c.results = append(c.results, result{"pass", "test", e.Package + "." + e.Test})
		delete(p.tests, e.Test)
	case "skip":
		p.skipped++
		c.results = append(c.results, result{"skip", "test", e.Package + "." + e.Test})
		delete(p.tests, e.Test)
	case "fail":
		p.failed++
		c.results = append(c.results, result{"fail", "test", e.Package + "." + e.Test})
		c.printf("--- FAIL %s %s (%.1fs)\n", e.Package, e.Test, e.Elapsed)
		c.showOutput(p.tests[e.Test])
		delete(p.tests, e.Test)
	}
}

func (c *collector) endPackage(e event, p *pkgState) {
	delete(c.pkgs, e.Package)
	counts := fmt.Sprintf("%d passed", p.passed)
	if p.skipped > 0 {
		counts += fmt.Sprintf(", %d skipped", p.skipped)
	}
	if p.failed > 0 {
		counts += fmt.Sprintf(", %d failed", p.failed)
	}
	switch {
	case e.Action == "skip" || (e.Action == "pass" && p.passed+p.skipped == 0):
		// No test files, or no tests: nothing to say.
	case e.Action == "pass":
		c.printf("ok   %s  %s  %.1fs\n", e.Package, counts, e.Elapsed)
	default:
		c.printf("FAIL %s  %s  %.1fs\n", e.Package, counts, e.Elapsed)
		if e.FailedBuild != "" {
			c.printf("     build failed: %s\n", e.FailedBuild)
			c.showOutput(c.builds[e.FailedBuild])
		}
		if p.failed == 0 {
			// The package failed outside any test: a panic, a timeout,
			// TestMain, a build error.
			c.showOutput(p.output)
			c.results = append(c.results, result{"fail", "test", e.Package + " (package)"})
		}
	}
}

func (c *collector) showOutput(lines []string) {
	if len(lines) > maxLines {
		c.printf("     ... %d lines before these\n", len(lines)-maxLines)
		lines = lines[len(lines)-maxLines:]
	}
	for _, l := range lines {
		c.printf("     %s", l)
		if !strings.HasSuffix(l, "\n") {
			c.printf("\n")
		}
	}
}

func appendResults(path string, rs []result) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for _, r := range rs {
		fmt.Fprintf(w, "%s\t%s\t%s\n", r.status, r.kind, strings.ReplaceAll(r.name, "\n", " "))
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func readResults(path string) ([]result, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var rs []result
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(l, "\t", 3)
		if len(f) == 3 {
			rs = append(rs, result{f[0], f[1], f[2]})
		}
	}
	return rs, nil
}

// summarize prints the closing lines and returns the exit status: 1 when
// anything failed or nothing ran at all.
func summarize(w io.Writer, path string, elapsed time.Duration) int {
	rs, err := readResults(path)
	if err != nil {
		fmt.Fprintln(w, "testsum:", err)
		return 1
	}
	count := map[string]int{}
	kinds := map[string]int{}
	var failed []string
	for _, r := range rs {
		count[r.status]++
		kinds[r.kind]++
		if r.status == "fail" {
			failed = append(failed, r.kind+" "+r.name)
		}
	}
	if len(failed) > 0 {
		fmt.Fprintf(w, "\nFailed (%d):\n", len(failed))
		for _, f := range failed {
			fmt.Fprintln(w, "  "+f)
		}
	}
	var what []string
	for _, k := range []struct{ kind, one, many string }{{"test", "test", "tests"}, {"fuzz", "fuzz target", "fuzz targets"}, {"check", "check", "checks"}} {
		if n := kinds[k.kind]; n > 0 {
			what = append(what, strconv.Itoa(n)+" "+map[bool]string{true: k.one, false: k.many}[n == 1])
		}
	}
	took := ""
	if elapsed > 0 {
		took = " in " + elapsed.Round(time.Second).String()
	}
	fmt.Fprintf(w, "\n%d passed, %d failed, %d skipped (%s)%s\n", count["pass"], count["fail"], count["skip"], strings.Join(what, ", "), took)
	if count["fail"] > 0 || len(rs) == 0 {
		return 1
	}
	return 0
}
