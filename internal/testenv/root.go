package testenv

import (
	"os"
	"path/filepath"
	"testing"
)

// ModuleRoot returns the directory holding go.mod, where .tools/ lives.
func ModuleRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test's directory")
		}
		dir = parent
	}
}

// Tool returns the path of a pinned tool, failing the test with the
// command that installs it when it is missing: a test that silently skips
// would hide a broken CI.
func Tool(t testing.TB, rel string) string {
	t.Helper()
	p := filepath.Join(ModuleRoot(t), rel)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s is missing: run `make tools` (make test does it)", rel)
	}
	return p
}
