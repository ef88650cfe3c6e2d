package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const stream = `{"Action":"start","Package":"ex/a"}
{"Action":"run","Package":"ex/a","Test":"TestOK"}
{"Action":"output","Package":"ex/a","Test":"TestOK","Output":"=== RUN   TestOK\n"}
{"Action":"pass","Package":"ex/a","Test":"TestOK","Elapsed":0.1}
{"Action":"run","Package":"ex/a","Test":"TestBad"}
{"Action":"output","Package":"ex/a","Test":"TestBad/sub","Output":"    bad_test.go:9: want 2, got 3\n"}
{"Action":"fail","Package":"ex/a","Test":"TestBad/sub","Elapsed":0}
{"Action":"fail","Package":"ex/a","Test":"TestBad","Elapsed":0}
{"Action":"skip","Package":"ex/a","Test":"TestSkipped","Elapsed":0}
{"Action":"fail","Package":"ex/a","Elapsed":1.5}
{"Action":"start","Package":"ex/b"}
{"Action":"output","Package":"ex/b","Output":"panic: test timed out after 1s\n"}
{"Action":"fail","Package":"ex/b","Elapsed":1}
{"ImportPath":"ex/c [ex/c.test]","Action":"build-output","Output":"c.go:3:1: syntax error\n"}
{"ImportPath":"ex/c [ex/c.test]","Action":"build-fail"}
{"Action":"start","Package":"ex/c"}
{"Action":"fail","Package":"ex/c","Elapsed":0,"FailedBuild":"ex/c [ex/c.test]"}
{"Action":"skip","Package":"ex/d","Elapsed":0}
go: warning: a line that is not JSON
{"Action":"start","Package":"ex/e"}
{"Action":"pass","Package":"ex/e","Test":"TestE","Elapsed":0}
{"Action":"pass","Package":"ex/e","Elapsed":0.2}
`

func TestCollect(t *testing.T) {
	var out strings.Builder
	c := newCollector(&out, 0)
	if err := c.read(strings.NewReader(stream)); err != nil {
		t.Fatal(err)
	}
	c.stop()
	for _, want := range []string{
		"--- FAIL ex/a TestBad/sub", "bad_test.go:9: want 2, got 3",
		"FAIL ex/a  1 passed, 1 skipped, 2 failed  1.5s",
		"FAIL ex/b", "panic: test timed out",
		"build failed: ex/c [ex/c.test]", "c.go:3:1: syntax error",
		"go: warning: a line that is not JSON",
		"ok   ex/e  1 passed  0.2s",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output does not show %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "ex/d") {
		t.Errorf("a package without tests is reported:\n%s", out.String())
	}
	if !c.failed() {
		t.Error("failures not noticed")
	}

	path := filepath.Join(t.TempDir(), "results")
	if err := appendResults(path, c.results); err != nil {
		t.Fatal(err)
	}
	appendResults(path, []result{{"pass", "fuzz", "FuzzX"}, {"pass", "check", "gofmt"}})
	var sum strings.Builder
	if code := summarize(&sum, path, 0); code != 1 {
		t.Errorf("summary exit %d, want 1", code)
	}
	for _, want := range []string{
		"Failed (4):", "test ex/a.TestBad/sub", "test ex/a.TestBad", "test ex/b (package)", "test ex/c (package)",
		"4 passed, 4 failed, 1 skipped (7 tests, 1 fuzz target, 1 check)",
	} {
		if !strings.Contains(sum.String(), want) {
			t.Errorf("summary does not say %q:\n%s", want, sum.String())
		}
	}
}

func TestSummaryOfCleanRun(t *testing.T) {
	path := filepath.Join(t.TempDir(), "results")
	appendResults(path, []result{{"pass", "test", "p.TestA"}, {"pass", "test", "p.TestB"}})
	var sum strings.Builder
	if code := summarize(&sum, path, 0); code != 0 || !strings.Contains(sum.String(), "2 passed, 0 failed, 0 skipped (2 tests)") {
		t.Errorf("exit %d:\n%s", code, sum.String())
	}
	// Nothing recorded is a failure: a stage that never ran proves nothing.
	empty := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(empty, nil, 0o644)
	if code := summarize(&sum, empty, 0); code != 1 {
		t.Errorf("empty results: exit %d, want 1", code)
	}
}
