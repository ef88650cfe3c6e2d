package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// seedStore puts fake snapshots and decoys into a file store. Pruning
// never reads a snapshot's body, so any bytes do.
func seedStore(t *testing.T, store string, keys ...string) {
	t.Helper()
	for _, k := range keys {
		p := filepath.Join(store, filepath.FromSlash(k))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(k), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

var decoys = []string{
	"snapshots/kubeshark-20200101T000000Z.tar.zst.bak",
	"snapshots/kubeshark-latest.tar.zst",
	"snapshots/other-20200101T000000Z.tar.zst",
	"snapshots/sub/kubeshark-20200101T000000Z.tar.zst",
	"snapshots2/kubeshark-20200101T000000Z.tar.zst",
	"kubeshark-20200101T000000Z.tar.zst",
}

// Without a rule, prune deletes nothing and says why. (The rules
// themselves: cloudTests' RetentionRules, for every store.)
func TestPruneWithoutRules(t *testing.T) {
	e, store := fileEnv(t, t.TempDir())
	snaps := []string{"snapshots/kubeshark-20261124T100000Z.tar.zst", "snapshots/kubeshark-20261125T100000Z.tar.zst"}
	seedStore(t, store, append(slices.Clone(snaps), decoys...)...)
	r := runJob(t, e, "prune")
	expect(t, r, 0)
	if !strings.Contains(r.stderr, "no retention rule is set") || len(storeFiles(t, store)) != len(snaps)+len(decoys) {
		t.Fatalf("prune without rules:\n%s", r)
	}
}

// fileCloud runs cloudTests against the file store: a "bucket" is a store
// directory.
type fileCloud struct{}

func (fileCloud) setup(t *testing.T, src string) (env, string) { return fileEnv(t, src) }

func (fileCloud) put(t *testing.T, store, key string, data []byte) {
	p := filepath.Join(store, filepath.FromSlash(key))
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func (fileCloud) keys(t *testing.T, store, prefix string) []string {
	var out []string
	for _, f := range storeFiles(t, store) {
		if k := filepath.ToSlash(f); strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

func (fileCloud) nothingLeft(t *testing.T, store string) {
	t.Helper()
	if f := storeFiles(t, store); len(f) != 0 { // .partial-* files included
		t.Errorf("store holds %q", f)
	}
}

func TestFileStore(t *testing.T) { cloudTests(t, fileCloud{}) }
