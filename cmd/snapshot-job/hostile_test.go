package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/snapshot-job/snapshot-job/internal/testenv"
)

// putSnapshot stores data as the store's only snapshot, as a hostile or
// foreign tool would have written it, and returns its key.
func putSnapshot(t *testing.T, store string, data []byte) string {
	t.Helper()
	key := "snapshots/kubeshark-20261126T031500Z.tar.zst"
	if err := os.MkdirAll(filepath.Join(store, "snapshots"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(store, key), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return key
}

// runMeasured runs the job (as the pod's user when asPod) and returns
// its result and its peak resident memory in bytes.
//
// The job is started by a fresh copy of this test binary (see init): a
// child started with vfork, as Go starts them, is charged the peak memory
// of the process that started it, and this one's is that of the archives
// the tests built.
func runMeasured(t *testing.T, e env, asPod bool, args ...string) (jobResult, int64) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "maxrss")
	cmd := exec.Command(self, args...)
	cmd.Env = append(e.list(t), measureVar+"="+out, measureBinVar+"="+binary)
	if asPod {
		cmd.Env = append(cmd.Env, measureAsPodVar+"=1")
	}
	r := runCmd(t, cmd)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("the launcher did not report: %v\n%s", err, r)
	}
	rss, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return r, rss
}

// The launcher's own variables, removed before the job starts.
const (
	measureVar      = "SNAPSHOT_JOB_TEST_MAXRSS_FILE"
	measureBinVar   = "SNAPSHOT_JOB_TEST_BINARY"
	measureAsPodVar = "SNAPSHOT_JOB_TEST_AS_POD"
)

// init turns this test binary into the launcher of runMeasured when asked
// to: it runs the job with its own arguments and environment, then writes
// the job's peak memory to the file named by measureVar and exits with
// the job's code.
func init() {
	out := os.Getenv(measureVar)
	if out == "" {
		return
	}
	asPod := os.Getenv(measureAsPodVar) != ""
	var jobEnv []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, measureVar+"=") && !strings.HasPrefix(kv, measureBinVar+"=") && !strings.HasPrefix(kv, measureAsPodVar+"=") {
			jobEnv = append(jobEnv, kv)
		}
	}
	cmd := exec.Command(os.Getenv(measureBinVar), os.Args[1:]...)
	cmd.Env, cmd.Stdin, cmd.Stdout, cmd.Stderr = jobEnv, nil, os.Stdout, os.Stderr
	if asPod && os.Geteuid() == 0 {
		cmd.Dir = "/"
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: podUID, Gid: podUID}}
	}
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		fmt.Fprintln(os.Stderr, "launcher:", err)
		os.Exit(100)
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if err := os.WriteFile(out, []byte(strconv.FormatInt(ru.Maxrss<<10, 10)), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "launcher:", err)
		os.Exit(100)
	}
	os.Exit(code)
}

// mountTmpfs mounts a tmpfs on a new directory, where creating and
// removing many directories is cheap, and returns it.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	return dir
}

// maxRSS bounds the memory of verify and restore whatever an archive
// holds: the reader keeps digests, not names, within the caps of
// internal/archive/limits.go. Measured: 15 to 50 MiB (the decoder's
// window and the file writer's buffers); before, 618 MiB for the long
// names.
const maxRSS = 100 << 20

// Small objects that once took the reader's memory past any pod limit
// or its time to hours: names kept in full (30,000 × 20 KB), parents
// checked with a quadratic walk (paths 240 directories deep), and names
// that imply millions of directories. Each ends with its exit code and
// within maxRSS; the deep trees, valid and within the caps, restore.
func TestHostileObjectsBounded(t *testing.T) {
	for _, tc := range []struct {
		name  string
		data  func(t *testing.T) []byte
		code  int
		words []string
		check func(t *testing.T, e env, dst string)
	}{
		{
			name: "30000 files with 20 KB single-component names",
			data: func(t *testing.T) []byte { return testenv.LongNames(t, 30000, 20000, 0) },
			code: 7, words: []string{"NAME_MAX"},
		},
		{
			name: "30000 files with 20 KB names 100 directories deep",
			data: func(t *testing.T) []byte { return testenv.LongNames(t, 30000, 20000, 199) },
			check: func(t *testing.T, e env, dst string) {
				root, err := os.OpenRoot(dst)
				if err != nil {
					t.Fatal(err)
				}
				defer root.Close()
				deep := strings.Repeat(strings.Repeat("d", 199)+"/", 100)
				f, err := root.Open(deep)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				names, err := f.Readdirnames(-1)
				if err != nil || len(names) != 30000 {
					t.Fatalf("%d files at the bottom (%v), want 30000", len(names), err)
				}
			},
		},
		{
			name: "1000 files 240 directories deep",
			data: func(t *testing.T) []byte { return testenv.DeepFiles(t, 1000, 240, 50) },
			check: func(t *testing.T, e env, dst string) {
				got := testenv.ReadDeepTree(t, dst, testenv.IsLock)
				if len(got) != 1241 {
					t.Fatalf("%d entries restored, want 1241", len(got))
				}
				// Again over it: the commit merges 240 levels deep,
				// far beyond PATH_MAX.
				expect(t, runJob(t, e.with("SNAPSHOT_RESTORE_DIR", dst, "SNAPSHOT_RESTORE_IF_NOT_EMPTY", "overwrite"), "restore"), 0)
				if d := testenv.SameTree(got, testenv.ReadDeepTree(t, dst, testenv.IsLock)); d != "" {
					t.Fatalf("after restoring over it:\n%s", d)
				}
			},
		},
		{
			name: "10000 files 240 directories deep",
			data: func(t *testing.T) []byte { return testenv.DeepFiles(t, 10000, 240, 50) },
		},
		{
			name: "names implying millions of directories",
			data: func(t *testing.T) []byte { return testenv.ImpliedDirs(t, 200, 32000) },
			code: 7, words: []string{"MaxImpliedDirs", "65536"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := tc.data(t)
			t.Logf("object of %d bytes", len(data))
			e, store := fileEnv(t, t.TempDir())
			putSnapshot(t, store, data)
			r, rss := runMeasured(t, e, false, "verify")
			t.Logf("verify: exit %d, peak RSS %d MiB", r.code, rss>>20)
			expect(t, r, tc.code, tc.words...)
			if rss > maxRSS {
				t.Errorf("verify used %d MiB, more than %d", rss>>20, maxRSS>>20)
			}
			// On a tmpfs where there is one: creating and removing
			// thousands of directories is cheap there.
			parent := t.TempDir()
			if os.Geteuid() == 0 {
				parent = mountTmpfs(t, "1g")
			} else if tc.code != 0 {
				t.Log("not root: the refused restore is left out, it would create 65,536 directories on disk")
				return
			}
			dst := filepath.Join(parent, "restore")
			r, rss = runMeasured(t, e.with("SNAPSHOT_RESTORE_DIR", dst), false, "restore")
			t.Logf("restore: exit %d, peak RSS %d MiB", r.code, rss>>20)
			expect(t, r, tc.code, tc.words...)
			if rss > maxRSS {
				t.Errorf("restore used %d MiB, more than %d", rss>>20, maxRSS>>20)
			}
			if tc.code != 0 {
				if entries, _ := os.ReadDir(parent); len(entries) != 0 {
					t.Errorf("a refused restore left %v", entries)
				}
			} else if tc.check != nil {
				tc.check(t, e, dst)
			}
		})
	}
}

// A name restore cannot write is refused by verify too, with the same
// message and exit code, before anything is written: a name component
// longer than NAME_MAX, a symlink target longer than PATH_MAX.
func TestVerifyRefusesWhatRestoreCannotWrite(t *testing.T) {
	for name, data := range map[string][]byte{
		"300-byte name component":  testenv.TarZst(t, testenv.File("node-1/ok.pcap", "x"), testenv.File("node-1/"+strings.Repeat("c", 300)+".pcap", "x")),
		"5000-byte symlink target": testenv.TarZst(t, testenv.File("a", "x"), testenv.Symlink("link", strings.Repeat("t/", 2500))),
	} {
		t.Run(name, func(t *testing.T) {
			e, store := fileEnv(t, t.TempDir())
			putSnapshot(t, store, data)
			v := runJob(t, e, "verify")
			expect(t, v, 7)
			parent := t.TempDir()
			x := runJob(t, e.with("SNAPSHOT_RESTORE_DIR", filepath.Join(parent, "restore")), "restore")
			expect(t, x, 7)
			errOf := func(r jobResult) string {
				msg := r.last()["msg"].(string)
				return msg[strings.Index(msg, "archive corrupt"):]
			}
			if errOf(v) != errOf(x) {
				t.Errorf("messages differ:\nverify:  %s\nrestore: %s", errOf(v), errOf(x))
			}
			if entries, _ := os.ReadDir(parent); len(entries) != 0 {
				t.Errorf("restore left %v", entries)
			}
		})
	}
}

// Frames without a content checksum (bsdtar --zstd writes them) decode
// damage into wrong bytes silently: verify must not call such a snapshot
// verified; restore proceeds with a warning.
func TestFramesWithoutChecksum(t *testing.T) {
	bsdtar, err := exec.LookPath("bsdtar")
	if err != nil {
		t.Fatal("bsdtar is missing: apt-get install libarchive-tools")
	}
	src := t.TempDir()
	testenv.MakeTree(t, src)
	// To a file: into a pipe bsdtar pads its output with zeros to a
	// multiple of 10240 bytes, which zstd itself refuses.
	made := filepath.Join(t.TempDir(), "bsdtar.tar.zst")
	if out, err := exec.Command(bsdtar, "--zstd", "--format", "pax", "-cf", made, "-C", src, ".").CombinedOutput(); err != nil {
		t.Fatalf("bsdtar: %v %s", err, out)
	}
	bsdtarMade, err := os.ReadFile(made)
	if err != nil {
		t.Fatal(err)
	}
	random := make([]byte, 256<<10)
	for i := range random {
		random[i] = byte(i*7919 + i>>8)
	}
	damaged := testenv.ZstNoChecksum(t, testenv.TarOf(t, testenv.File("capture.pcap", string(random))), 64<<10)
	damaged[len(damaged)/2] ^= 0x20

	t.Run("bsdtar", func(t *testing.T) {
		e, store := fileEnv(t, t.TempDir())
		putSnapshot(t, store, bsdtarMade)
		expect(t, runJob(t, e, "verify"), 7, "carry no content checksum", "written by another tool")
		dst := filepath.Join(t.TempDir(), "restore")
		r := runJob(t, e.with("SNAPSHOT_RESTORE_DIR", dst), "restore")
		expect(t, r, 0)
		if n := strings.Count(r.stderr, "carry no content checksum"); n != 1 {
			t.Errorf("%d warnings, want 1:\n%s", n, r.stderr)
		}
		testenv.CompareTrees(t, src, dst, nil)
	})
	t.Run("damaged", func(t *testing.T) {
		e, store := fileEnv(t, t.TempDir())
		putSnapshot(t, store, damaged)
		expect(t, runJob(t, e, "verify"), 7, "cannot be verified", "zstd frames carry no content checksum")
	})
	t.Run("seek table in a skippable frame", func(t *testing.T) {
		src := t.TempDir()
		os.WriteFile(filepath.Join(src, "a.pcap"), random, 0o644)
		e, store := fileEnv(t, src)
		expect(t, runJob(t, e), 0)
		key := storeFiles(t, store)[0]
		f, err := os.OpenFile(filepath.Join(store, key), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.Write(testenv.SkippableFrame(make([]byte, 64)))
		f.Close()
		expect(t, runJob(t, e, "verify"), 0)
		dst := filepath.Join(t.TempDir(), "restore")
		expect(t, runJob(t, e.with("SNAPSHOT_RESTORE_DIR", dst), "restore"), 0)
		testenv.CompareTrees(t, src, dst, nil)
	})
}

// A FIFO or device entry with a size is followed by its bytes, which
// GNU tar passes over: as the archive's last entry it used to make the
// archive look truncated.
func TestSpecialEntryWithBodyLast(t *testing.T) {
	file := testenv.TarOf(t, testenv.File("a.pcap", "data"))
	raw := append(file[:len(file)-1024], testenv.RawHeader("fifo", '6', 1000)...)
	raw = append(raw, testenv.Padded(bytes.Repeat([]byte("B"), 1000))...)
	raw = append(raw, make([]byte, 1024)...)
	if _, err := exec.LookPath("tar"); err == nil {
		cmd := exec.Command("tar", "-tf", "-")
		cmd.Stdin = bytes.NewReader(raw)
		if out, err := cmd.CombinedOutput(); err != nil || string(out) != "a.pcap\nfifo\n" {
			t.Fatalf("GNU tar does not read the archive as expected: %v %q", err, out)
		}
	}
	e, store := fileEnv(t, t.TempDir())
	putSnapshot(t, store, testenv.Zst(t, raw))
	r := runJob(t, e, "verify")
	expect(t, r, 0)
	if !strings.Contains(r.stderr, "skipped an entry of a type that is never restored") {
		t.Errorf("no warning:\n%s", r.stderr)
	}
	dst := filepath.Join(t.TempDir(), "restore")
	expect(t, runJob(t, e.with("SNAPSHOT_RESTORE_DIR", dst), "restore"), 0)
	if b, err := os.ReadFile(filepath.Join(dst, "a.pcap")); err != nil || string(b) != "data" {
		t.Errorf("a.pcap: %q %v", b, err)
	}
}
