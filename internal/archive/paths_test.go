package archive

import (
	"bytes"
	"errors"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/snapshot-job/snapshot-job/internal/setting"
	"github.com/snapshot-job/snapshot-job/internal/testenv"
)

func mustPaths(t *testing.T, list ...string) *Paths {
	t.Helper()
	p, err := ParsePaths(list)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPathsMatch(t *testing.T) {
	for _, tc := range []struct {
		patterns []string
		yes, no  []string
		wants    []string // directories that may hold a match
		notWants []string
	}{
		{
			patterns: []string{"node-1/**"},
			yes:      []string{"node-1", "node-1/a.pcap", "node-1/x/y/z"},
			no:       []string{"node-10", "node-2/a", "a/node-1"},
			wants:    []string{"node-1", "node-1/x"},
			notWants: []string{"node-2", "node-10"},
		},
		{
			patterns: []string{"*/pcapdump/*.pcap"},
			yes:      []string{"node-1/pcapdump/a.pcap", "n/pcapdump/.pcap", "n/pcapdump/a.pcap/inside"},
			no:       []string{"pcapdump/a.pcap", "a/b/pcapdump/a.pcap", "n/pcapdump/a.json", "n/pcapdump", "n"},
			wants:    []string{"node-1", "node-1/pcapdump"},
			notWants: []string{"node-1/logs", "a/b/pcapdump"},
		},
		{
			patterns: []string{"node-2"}, // a plain directory: its tree
			yes:      []string{"node-2", "node-2/run.sh", "node-2/a/b"},
			no:       []string{"node-20", "node-1/node-2"},
			wants:    []string{"node-2", "node-2/a"},
			notWants: []string{"node-1"},
		},
		{
			patterns: []string{"./names/čaj ☕ 日本.pcap"}, // a plain file
			yes:      []string{"names/čaj ☕ 日本.pcap"},
			no:       []string{"names", "names/other"},
			wants:    []string{"names"},
			notWants: []string{"node-1"},
		},
		{
			patterns: []string{"**/bottom.txt", "a/**/b/**/c"},
			yes:      []string{"bottom.txt", "d00/d01/bottom.txt", "a/b/c", "a/x/b/y/z/c", "a/b/c/d"},
			no:       []string{"d00/bottom.txt.x", "a/c", "a/b"},
			wants:    []string{"d00", "d00/d01", "a", "a/x/b"},
		},
		{
			patterns: []string{"node-[12]/events.?son", "x/"},
			yes:      []string{"node-1/events.json", "node-2/events.json", "x", "x/y"},
			no:       []string{"node-3/events.json", "node-1/events.jsonl"},
			notWants: []string{"node-3", "y"},
		},
	} {
		p := mustPaths(t, tc.patterns...)
		for _, n := range tc.yes {
			if !p.Match(n) {
				t.Errorf("%q: %q not matched", tc.patterns, n)
			}
		}
		for _, n := range tc.no {
			if p.Match(n) {
				t.Errorf("%q: %q matched", tc.patterns, n)
			}
		}
		for _, d := range tc.wants {
			if !p.Wants(d) {
				t.Errorf("%q: directory %q not wanted", tc.patterns, d)
			}
		}
		for _, d := range tc.notWants {
			if p.Wants(d) {
				t.Errorf("%q: directory %q wanted", tc.patterns, d)
			}
		}
		if !p.Wants("") {
			t.Errorf("%q: the root is not wanted", tc.patterns)
		}
	}
	var all *Paths
	if !all.Match("anything/at/all") || !all.Wants("x") {
		t.Error("a nil selection must select everything")
	}
}

func TestParsePathsRefuses(t *testing.T) {
	for item, want := range map[string]string{
		"":           "empty",
		"   ":        "empty",
		"/etc":       "absolute",
		"../x":       `".."`,
		"a/../../x":  `".."`,
		"a/..":       `".."`,
		".":          "selects everything",
		"./":         "selects everything",
		"a\x00b":     "control character",
		"a\nb":       "control character",
		"node-[1":    "not a valid glob",
		"trailing\\": "not a valid glob",
	} {
		_, err := ParsePaths([]string{"ok", item})
		var pe *PatternError
		if !errors.Is(err, setting.ErrInvalid) || !errors.As(err, &pe) || !strings.Contains(err.Error(), want) || !strings.Contains(pe.Problem, "item 2") {
			t.Errorf("%q: %v; want an invalid-configuration error naming item 2 with %q", item, err, want)
		}
	}
	many := make([]string, MaxPathPatterns+1)
	for i := range many {
		many[i] = "x"
	}
	if _, err := ParsePaths(many); !errors.Is(err, setting.ErrInvalid) {
		t.Errorf("%d patterns: %v", len(many), err)
	}
	if p, err := ParsePaths(nil); p != nil || err != nil {
		t.Errorf("no items: %v %v; want nil, nil", p, err)
	}
}

// expectedSubset reads src as a partial restore of it must come out:
// the selected entries, the directories above them, and nothing else.
func expectedSubset(t *testing.T, src string, p *Paths, leaveOut ...string) map[string]testenv.Entry {
	t.Helper()
	keep := map[string]bool{}
	for rel := range testenv.ReadTree(t, src, nil) {
		if !p.Match(rel) {
			continue
		}
		for d := rel; d != "."; d = path.Dir(d) {
			keep[d] = true
		}
	}
	for _, rel := range leaveOut {
		delete(keep, rel)
	}
	return testenv.ReadTree(t, src, func(rel string) bool { return !keep[rel] })
}

// selections are the partial restores of testenv.MakeTree the tests
// make: plain paths and globs, deep, unicode, inside a read-only
// directory, an empty directory, a symlink, a sparse file.
var selections = [][]string{
	{"node-1/**"},
	{"*/*.pcap"},
	{"node-2"},
	{"names/čaj ☕ 日本.pcap"},
	{"d00/d01/d02/d03/d04/d05/d06/d07/d08/d09/d10/d11/d12/d13/d14/d15/d16/d17/d18/d19/d20/d21/d22/d23/d24/d25/d26/d27/d28/d29/bottom.txt"},
	{"**/bottom.txt", "readonly/inside.txt", "empty-dir", "latest"},
	{"sparse.img", "sticky"},
}

func TestExtractPaths(t *testing.T) {
	src := t.TempDir()
	testenv.MakeTree(t, src)
	data, _ := archiveOf(t, src, WriteOptions{})
	for _, patterns := range selections {
		t.Run(strings.Join(patterns, ","), func(t *testing.T) {
			p := mustPaths(t, patterns...)
			dst := filepath.Join(t.TempDir(), "restore")
			log, buf := logBuffer()
			st, err := Extract(t.Context(), bytes.NewReader(data), dst, ExtractOptions{Token: "t1", Paths: p, Logger: log, noSync: true})
			if err != nil {
				t.Fatalf("Extract: %v\n%s", err, buf)
			}
			// A hard link is left out when its target is not selected:
			// its content is stored with the target.
			var leftOut []string
			for _, line := range strings.Split(buf.String(), "\n") {
				if strings.Contains(line, "hard link whose target is not selected") {
					leftOut = append(leftOut, fieldOf(t, line, "path"))
				}
			}
			// MakeTree links names/hardlink-2.pcap (stored first, with
			// the content), node-1/capture-0001.pcap and
			// node-2/hardlink.pcap.
			wantLeftOut := map[string][]string{"node-1/**": {"node-1/capture-0001.pcap"}, "node-2": {"node-2/hardlink.pcap"}}[strings.Join(patterns, ",")]
			if !slices.Equal(leftOut, wantLeftOut) {
				t.Errorf("hard links left out: %q, want %q", leftOut, wantLeftOut)
			}
			want := expectedSubset(t, src, p, leftOut...)
			got := testenv.ReadTree(t, dst, nil)
			if diff := testenv.SameTree(want, got); diff != "" {
				t.Fatalf("restored subset differs:\n%s", diff)
			}
			if st.Entries() == 0 || int(st.Entries()) > len(want) {
				t.Errorf("stats %+v for %d restored paths", st, len(want))
			}
			assertNoStaging(t, dst)
		})
	}
}

// fieldOf pulls a field out of a text log line.
func fieldOf(t *testing.T, line, key string) string {
	t.Helper()
	i := strings.Index(line, key+"=")
	if i < 0 {
		t.Fatalf("no %s in %q", key, line)
	}
	v := line[i+len(key)+1:]
	if strings.HasPrefix(v, `"`) {
		end := strings.Index(v[1:], `"`)
		return v[1 : end+1]
	}
	if j := strings.IndexByte(v, ' '); j >= 0 {
		v = v[:j]
	}
	return v
}

// A selection that matches nothing writes nothing and says which
// patterns it was.
func TestExtractPathsNoMatch(t *testing.T) {
	src := t.TempDir()
	testenv.MakeTree(t, src)
	data, _ := archiveOf(t, src, WriteOptions{})
	dst := filepath.Join(t.TempDir(), "restore")
	_, err := Extract(t.Context(), bytes.NewReader(data), dst, ExtractOptions{Token: "t1", Paths: mustPaths(t, "node-9/**", "*.missing"), noSync: true})
	if !errors.Is(err, ErrNoMatch) || !strings.Contains(err.Error(), "node-9/**,*.missing") {
		t.Fatalf("err = %v, want ErrNoMatch naming the patterns", err)
	}
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Errorf("the target was created: %v", err)
	}
}

// Entries outside the selection are still validated: a hostile archive
// is refused, whatever is selected, and nothing is written.
func TestExtractPathsStillValidates(t *testing.T) {
	for name, data := range testenv.HostileArchives(t) {
		dst := filepath.Join(t.TempDir(), "restore")
		_, err := Extract(t.Context(), bytes.NewReader(data), dst, ExtractOptions{Token: "t1", Paths: mustPaths(t, "ok"), noSync: true})
		if !errors.Is(err, ErrUnsafe) && !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: err = %v, want it refused", name, err)
		}
		if _, err := os.Stat(dst); !os.IsNotExist(err) {
			t.Errorf("%s: the target was created", name)
		}
	}
}

// With Overwrite only the selected entries are replaced; the rest of the
// target, inside the selected entries' directories too, stays.
func TestExtractPathsOverwrite(t *testing.T) {
	src := t.TempDir()
	testenv.MakeTree(t, src)
	data, _ := archiveOf(t, src, WriteOptions{})
	dst := t.TempDir()
	for rel, body := range map[string]string{
		"node-1/events.json": "old events",
		"node-1/local.txt":   "only in the target",
		"node-2/run.sh":      "old script",
		"other.txt":          "only in the target",
	} {
		if err := os.MkdirAll(filepath.Join(dst, filepath.Dir(rel)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, rel), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Extract(t.Context(), bytes.NewReader(data), dst, ExtractOptions{Token: "t1", Paths: mustPaths(t, "node-1/events.json"), Overwrite: true, noSync: true}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dst, "node-1/events.json"))
	want, _ := os.ReadFile(filepath.Join(src, "node-1/events.json"))
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("node-1/events.json not replaced: %v", err)
	}
	for rel, body := range map[string]string{"node-1/local.txt": "only in the target", "node-2/run.sh": "old script", "other.txt": "only in the target"} {
		if b, err := os.ReadFile(filepath.Join(dst, rel)); err != nil || string(b) != body {
			t.Errorf("%s changed: %q %v", rel, b, err)
		}
	}
	for _, rel := range []string{"node-1/capture-0001.pcap", "names", "sparse.img"} {
		if _, err := os.Lstat(filepath.Join(dst, rel)); !os.IsNotExist(err) {
			t.Errorf("%s restored though not selected", rel)
		}
	}
}
