package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/snapshot-job/snapshot-job/internal/testenv"
)

// nodeFolders writes folders of node-NN/{events/*.json,capture-*.pcap}:
// the pcaps larger than a frame and incompressible, so that a folder's
// share of the object is its share of the data. It returns one folder's
// bytes.
func nodeFolders(t *testing.T, src string, folders, pcaps, size int) int64 {
	t.Helper()
	var folder int64
	for d := range folders {
		dir := filepath.Join(src, fmt.Sprintf("node-%02d", d))
		if err := os.MkdirAll(filepath.Join(dir, "events"), 0o755); err != nil {
			t.Fatal(err)
		}
		folder = 0
		for i := range 10 {
			body := fmt.Appendf(nil, `{"node":%d,"event":%d}`+"\n", d, i)
			if err := os.WriteFile(filepath.Join(dir, "events", fmt.Sprintf("e-%02d.json", i)), body, 0o644); err != nil {
				t.Fatal(err)
			}
			folder += int64(len(body))
		}
		for i := range pcaps {
			writeBig(t, filepath.Join(dir, fmt.Sprintf("capture-%02d.pcap", i)), size)
			folder += int64(size)
		}
	}
	return folder
}

// frameGET: a ranged read larger than the 64 KiB tail read, which here
// only the frames of a folder are.
func frameGET(r *http.Request) bool {
	if r.Method != http.MethodGet {
		return false
	}
	a, b, ok := strings.Cut(strings.TrimPrefix(r.Header.Get("Range"), "bytes="), "-")
	if !ok {
		return false
	}
	from, err1 := strconv.ParseInt(a, 10, 64)
	to, err2 := strconv.ParseInt(b, 10, 64)
	return err1 == nil && err2 == nil && to-from > 1<<20
}

// s3PartialRestore: SNAPSHOT_RESTORE_PATHS on versitygw fetches only the
// frames of the selected folder (counted by a proxy in front of the real
// server), plain and encrypted; a cut range is resumed; a range that
// keeps failing is exit 5 and the target keeps what it had.
func s3PartialRestore(t *testing.T, fx *s3Fixture) {
	src := t.TempDir()
	folder := nodeFolders(t, src, 8, 2, 3<<20)
	e, _ := fx.setup(t, src)
	expect(t, runJob(t, e), 0)

	// The index and the seek table (a few KiB here), the tail read, the
	// listing and the folder's own frames: 1.2 × the folder at most.
	limit := func(folder int64) int64 { return folder*12/10 + 128<<10 }

	t.Run("FetchesOnlyTheFolder", func(t *testing.T) {
		proxy := startCountingProxy(t, fx.v.Endpoint)
		dst := filepath.Join(t.TempDir(), "restore")
		r := runJob(t, e.with("SNAPSHOT_AWS_ENDPOINT", proxy.URL, "SNAPSHOT_RESTORE_DIR", dst, "SNAPSHOT_RESTORE_PATHS", "node-03", "SNAPSHOT_LOG_FORMAT", "text"), "restore")
		expect(t, r, 0)
		c := proxy.Counts()
		t.Logf("one folder of %d bytes: %d bytes fetched in %d requests", folder, c.Bytes, c.Requests)
		for _, l := range strings.Split(r.stderr, "\n") {
			if strings.Contains(l, `msg="snapshot restored"`) {
				t.Log(l)
			}
		}
		if n := c.Bytes; n > limit(folder) {
			t.Errorf("fetched %d bytes for a folder of %d (limit %d)", n, folder, limit(folder))
		}
		if !strings.Contains(r.stderr, "frames_fetched=") || !regexp.MustCompile(`frame_runs=1\b`).MatchString(r.stderr) {
			t.Errorf("the log does not say what was fetched in one ranged read:\n%s", r.stderr)
		}
		testenv.CompareTrees(t, filepath.Join(src, "node-03"), filepath.Join(dst, "node-03"), nil)
		if got := testenv.ReadTree(t, dst, nil); len(got) != len(testenv.ReadTree(t, filepath.Join(src, "node-03"), nil))+1 {
			t.Errorf("the target holds %d entries, want node-03's alone", len(got))
		}
	})

	t.Run("CutRangeIsResumed", func(t *testing.T) {
		proxy := testenv.StartFaultProxy(t, fx.v.Endpoint)
		var mu sync.Mutex
		var cutEnd string // the end of the range that was cut
		again := 0        // later reads of the rest of that range
		proxy.SetRule(func(r *http.Request, _ int) testenv.Fault {
			mu.Lock()
			defer mu.Unlock()
			end := r.Header.Get("Range")
			end = end[strings.LastIndexByte(end, '-')+1:]
			switch {
			case cutEnd == "" && frameGET(r):
				cutEnd = end
				return testenv.Fault{CutAfter: 1 << 20}
			case cutEnd != "" && r.Method == http.MethodGet && end == cutEnd:
				again++
			}
			return testenv.Fault{}
		})
		dst := filepath.Join(t.TempDir(), "restore")
		expect(t, runJob(t, e.with("SNAPSHOT_AWS_ENDPOINT", proxy.URL, "SNAPSHOT_RESTORE_DIR", dst, "SNAPSHOT_RESTORE_PATHS", "node-05/**"), "restore"), 0)
		if cutEnd == "" || again == 0 {
			t.Errorf("cut range ending at %q was not read again (%d reads)", cutEnd, again)
		}
		testenv.CompareTrees(t, filepath.Join(src, "node-05"), filepath.Join(dst, "node-05"), nil)
	})

	t.Run("FailingRangeIsExit5", func(t *testing.T) {
		proxy := testenv.StartFaultProxy(t, fx.v.Endpoint)
		proxy.SetRule(func(r *http.Request, _ int) testenv.Fault {
			if frameGET(r) {
				return testenv.Fault{Reset: true}
			}
			return testenv.Fault{}
		})
		dst := t.TempDir()
		if err := os.WriteFile(filepath.Join(dst, "mine.txt"), []byte("keep"), 0o644); err != nil {
			t.Fatal(err)
		}
		before := testenv.ReadTree(t, dst, nil)
		r := runJob(t, e.with("SNAPSHOT_AWS_ENDPOINT", proxy.URL, "SNAPSHOT_RESTORE_DIR", dst, "SNAPSHOT_RESTORE_PATHS", "node-01",
			"SNAPSHOT_RESTORE_IF_NOT_EMPTY", "overwrite"), "restore")
		expect(t, r, 5)
		if diff := testenv.SameTree(before, testenv.ReadTree(t, dst, nil)); diff != "" {
			t.Errorf("the target changed:\n%s", diff)
		}
	})

	t.Run("Encrypted", func(t *testing.T) {
		needAgeCLI(t)
		key := newAgeKey(t)
		// 1 GiB in 30 node folders, as the bench's partial rows.
		esrc := t.TempDir()
		folder := nodeFolders(t, esrc, 30, 2, 17<<20)
		ee, _ := fx.setup(t, esrc)
		expect(t, runJob(t, ee.with("SNAPSHOT_ENCRYPTION_RECIPIENTS", key.recipient)), 0)
		proxy := startCountingProxy(t, fx.v.Endpoint)
		dst := filepath.Join(t.TempDir(), "restore")
		r := runJob(t, ee.with("SNAPSHOT_AWS_ENDPOINT", proxy.URL, "SNAPSHOT_RESTORE_DIR", dst, "SNAPSHOT_RESTORE_PATHS", "node-16",
			"SNAPSHOT_ENCRYPTION_IDENTITY", key.identity, "SNAPSHOT_LOG_FORMAT", "text"), "restore")
		expect(t, r, 0)
		c := proxy.Counts()
		t.Logf("one encrypted folder of %d bytes: %d bytes fetched in %d requests", folder, c.Bytes, c.Requests)
		if n := c.Bytes; n > limit(folder) {
			t.Errorf("fetched %d bytes for a folder of %d (limit %d)", n, folder, limit(folder))
		}
		testenv.CompareTrees(t, filepath.Join(esrc, "node-16"), filepath.Join(dst, "node-16"), nil)
		// Without the identity: exit 2, before anything is fetched.
		expect(t, runJob(t, ee.with("SNAPSHOT_RESTORE_DIR", t.TempDir(), "SNAPSHOT_RESTORE_PATHS", "node-06"), "restore"), 2, "SNAPSHOT_ENCRYPTION_IDENTITY")
	})
}
