package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/snapshot-job/snapshot-job/internal/testenv"
)

// noWorkDone fails if the run got as far as moving data: a configuration
// mistake must stop the job before the source is read or the store used.
func noWorkDone(t *testing.T, r jobResult, store string) {
	t.Helper()
	for _, l := range r.lines {
		if m, _ := l["msg"].(string); strings.HasSuffix(m, " started") || m == "progress" {
			t.Errorf("the run started working: %v", l)
		}
	}
	if store != "" {
		if f := storeFiles(t, store); len(f) != 0 {
			t.Errorf("store holds %q", f)
		}
	}
}

func TestBadPrefixesAreConfigErrors(t *testing.T) {
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "a.pcap"), []byte("capture"), 0o644)
	for _, tc := range []struct{ prefix, words string }{
		{"../", `".." segment`},
		{"./", `"." segment`},
		{"a//b", "empty segment"},
		{"snaps/../../etc/", `".." segment`},
		{`snaps\prod`, "backslash"},
		{strings.Repeat("p", 300), "segment of 300 bytes"},
		{strings.Repeat("folder/", 150), "over the 1024-byte key limit"},
	} {
		t.Run(tc.prefix[:min(len(tc.prefix), 20)], func(t *testing.T) {
			e, store := fileEnv(t, src)
			r := runJob(t, e.with("SNAPSHOT_CLOUD_PREFIX", tc.prefix))
			expect(t, r, 2, "SNAPSHOT_CLOUD_PREFIX", tc.words, "fix the variable")
			noWorkDone(t, r, store)
		})
	}
}

// A prefix must never reach outside the store: list with "../" showed
// the snapshots of the directory above.
func TestListNeverLeavesThePrefix(t *testing.T) {
	e, store := fileEnv(t, t.TempDir())
	outside := filepath.Join(filepath.Dir(store), "kubeshark-20200101T000000Z.tar.zst")
	if err := os.WriteFile(outside, []byte("not in the store"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"list"}, {"list", "--json"}, {"prune"}, {"restore"}} {
		r := runJob(t, e.with("SNAPSHOT_CLOUD_PREFIX", "../", "SNAPSHOT_RETENTION_KEEP_LAST", "1", "SNAPSHOT_RESTORE_DIR", t.TempDir()), args...)
		expect(t, r, 2, "SNAPSHOT_CLOUD_PREFIX")
		if strings.Contains(r.stdout+r.stderr, "20200101T000000Z") {
			t.Errorf("%v shows a file outside the store:\n%s", args, r)
		}
	}
	if _, err := os.Stat(outside); err != nil {
		t.Errorf("the file outside the store is gone: %v", err)
	}
}

func TestLongNamesAreConfigErrors(t *testing.T) {
	src := t.TempDir()
	writeBig(t, filepath.Join(src, "capture.pcap"), 4<<20)
	e, store := fileEnv(t, src)
	r := runJob(t, e.with("SNAPSHOT_NAME", strings.Repeat("a", 300)))
	expect(t, r, 2, "SNAPSHOT_NAME", "300 characters", "at most 200")
	noWorkDone(t, r, store)
	if strings.Contains(r.stderr, strings.Repeat("a", 100)) {
		t.Errorf("the 300-character name is echoed whole:\n%s", r.stderr)
	}

	// The longest accepted name makes the longest accepted object name.
	name := strings.Repeat("a", 200)
	expect(t, runJob(t, e.with("SNAPSHOT_NAME", name, "SNAPSHOT_CLOUD_PREFIX", "")), 0)
	f := storeFiles(t, store)
	if len(f) != 1 || len(f[0]) != 200+len("-20261126T031500Z.tar.zst") {
		t.Errorf("store holds %q", f)
	}
	expect(t, runJob(t, e.with("SNAPSHOT_NAME", name+"a")), 2, "SNAPSHOT_NAME", "201 characters")
}

func TestRestoreKeyIsChecked(t *testing.T) {
	e, _ := fileEnv(t, t.TempDir())
	dst := t.TempDir()
	for key, words := range map[string]string{
		"../outside.tar.zst":                            `".." segment`,
		"/snapshots/kubeshark-20261126T031500Z.tar.zst": `use "snapshots/kubeshark-20261126T031500Z.tar.zst"`,
		"snapshots/": "ends with '/'",
	} {
		for _, verb := range []string{"restore", "verify"} {
			r := runJob(t, e.with("SNAPSHOT_RESTORE_KEY", key, "SNAPSHOT_RESTORE_DIR", dst), verb)
			expect(t, r, 2, "SNAPSHOT_RESTORE_KEY", words)
		}
	}
}

// Store names that can never work are exit 2 without a single request:
// the endpoint here is a closed port, which would be exit 5.
func TestStoreNamesAreConfigErrors(t *testing.T) {
	e, _ := fileEnv(t, t.TempDir())
	s3 := e.with("SNAPSHOT_CLOUD_PROVIDER", "s3", "SNAPSHOT_AWS_BUCKET", "snaps", "SNAPSHOT_AWS_ENDPOINT", testenv.ClosedPort(t),
		"SNAPSHOT_AWS_ACCESS_KEY", "AKIAEXAMPLE", "SNAPSHOT_AWS_SECRET_KEY", "secret", "AWS_EC2_METADATA_DISABLED", "true")
	az := e.with("SNAPSHOT_CLOUD_PROVIDER", "azblob", "SNAPSHOT_AZBLOB_STORAGE_ACCOUNT", "acct", "SNAPSHOT_AZBLOB_CONTAINER", "snaps",
		"SNAPSHOT_AZBLOB_STORAGE_KEY", "a2V5", "SNAPSHOT_AZBLOB_ENDPOINT", testenv.ClosedPort(t)+"/acct")
	for _, tc := range []struct {
		env   env
		words []string
	}{
		{s3.with("SNAPSHOT_AWS_BUCKET", "snaps/prod"), []string{"SNAPSHOT_AWS_BUCKET", `put "prod/" in SNAPSHOT_CLOUD_PREFIX`}},
		{s3.with("SNAPSHOT_AWS_BUCKET", "my snaps"), []string{"SNAPSHOT_AWS_BUCKET", "a space"}},
		{s3.with("SNAPSHOT_AWS_REGION", "eu west 1"), []string{"SNAPSHOT_AWS_REGION", "a space"}},
		{s3.with("SNAPSHOT_AWS_SECRET_KEY", "first\nsecond"), []string{"SNAPSHOT_AWS_SECRET_KEY", "a line break"}},
		{az.with("SNAPSHOT_AZBLOB_STORAGE_ACCOUNT", "acct.blob.core.windows.net"), []string{"SNAPSHOT_AZBLOB_STORAGE_ACCOUNT", "name alone"}},
		{az.with("SNAPSHOT_AZBLOB_CONTAINER", "snaps/prod"), []string{"SNAPSHOT_AZBLOB_CONTAINER", `put "prod/" in SNAPSHOT_CLOUD_PREFIX`}},
	} {
		r := runJob(t, tc.env)
		expect(t, r, 2, tc.words...)
		if strings.Contains(r.stderr, "second") {
			t.Errorf("the secret is echoed:\n%s", r.stderr)
		}
	}
}

// YAML block scalars (|) end every value with a line break; pasted keys
// often carry one. The values work as if typed without.
func TestSurroundingWhiteSpaceIsIgnored(t *testing.T) {
	v := testenv.StartVersity(t)
	v.CreateBucket(t, "snaps")
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "a.pcap"), []byte("capture"), 0o644)
	e := env{
		"SNAPSHOT_CLOUD_PROVIDER":       "s3\n",
		"SNAPSHOT_AWS_BUCKET":           "snaps\n",
		"SNAPSHOT_AWS_REGION":           v.Region + "\n",
		"SNAPSHOT_AWS_ACCESS_KEY":       v.AccessKey + "\n",
		"SNAPSHOT_AWS_SECRET_KEY":       v.SecretKey + "\r\n",
		"SNAPSHOT_AWS_ENDPOINT":         v.Endpoint + "\n",
		"SNAPSHOT_AWS_FORCE_PATH_STYLE": "true\n",
		"SNAPSHOT_SOURCE_DIR":           src + "\n",
		"SNAPSHOT_CLOUD_PREFIX":         " snapshots/\n",
		"SNAPSHOT_NAME":                 "kubeshark\n",
		"SNAPSHOT_PART_SIZE":            "5MiB\n",
		"SNAPSHOT_UPLOAD_CONCURRENCY":   " 2\n",
		"SNAPSHOT_TERMINATION_LOG":      filepath.Join(t.TempDir(), "termination-log"),
		"AWS_EC2_METADATA_DISABLED":     "true",
	}
	expect(t, runJob(t, e), 0)
	keys := v.Keys(t, "snaps", "")
	if len(keys) != 1 || !strings.HasPrefix(keys[0], "snapshots/kubeshark-") {
		t.Errorf("keys %q", keys)
	}
	dst := t.TempDir()
	expect(t, runJob(t, e.with("SNAPSHOT_RESTORE_DIR", dst+"\n"), "restore"), 0)
	testenv.CompareTrees(t, src, dst, nil)
}

func TestMisspeltSafetySettingStops(t *testing.T) {
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "a.pcap"), []byte("capture"), 0o644)
	e, store := fileEnv(t, src)
	old := []string{"snapshots/kubeshark-20200101T000000Z.tar.zst", "snapshots/kubeshark-20200102T000000Z.tar.zst"}
	seedStore(t, store, old...)
	typo := e.with("SNAPSHOT_RETENTION_KEEP_LAST", "1", "SNAPSHOT_RETENTION_DRYRUN", "true")

	for _, verb := range []string{"backup", "prune"} {
		r := runJob(t, typo, verb)
		expect(t, r, 2, "SNAPSHOT_RETENTION_DRYRUN", "SNAPSHOT_RETENTION_DRY_RUN", "SNAPSHOT_ALLOW_UNKNOWN=true")
		noWorkDone(t, r, "")
		if f := storeFiles(t, store); len(f) != 2 {
			t.Fatalf("%s: store holds %q, want the two old snapshots untouched", verb, f)
		}
	}
	r := runJob(t, e.with("SNAPSHOT_RESTORE_IF_EMPTY", "skip", "SNAPSHOT_RESTORE_DIR", t.TempDir()), "restore")
	expect(t, r, 2, "SNAPSHOT_RESTORE_IF_EMPTY", "SNAPSHOT_RESTORE_IF_NOT_EMPTY")
	r = runJob(t, e.with("snapshot_retention_dry_run", "true"), "prune")
	expect(t, r, 2, "snapshot_retention_dry_run", "SNAPSHOT_RETENTION_DRY_RUN")

	// The operator insists: the typo is ignored, with a warning.
	r = runJob(t, typo.with("SNAPSHOT_ALLOW_UNKNOWN", "true"), "prune")
	expect(t, r, 0)
	if !strings.Contains(r.stderr, "SNAPSHOT_RETENTION_DRYRUN looks like the safety setting SNAPSHOT_RETENTION_DRY_RUN; running anyway because SNAPSHOT_ALLOW_UNKNOWN=true") {
		t.Errorf("no warning:\n%s", r.stderr)
	}
	if f := storeFiles(t, store); len(f) != 1 {
		t.Errorf("store holds %q after pruning to one", f)
	}
}

func TestOtherUnknownVariablesWarn(t *testing.T) {
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644)
	e, _ := fileEnv(t, src)
	r := runJob(t, e.with("SNAPSHOT_CLOUD_PREFX", "x/", "SNAPSHOT_GCS_PROJET", "p"))
	expect(t, r, 0)
	for _, w := range []string{
		"unknown variable SNAPSHOT_CLOUD_PREFX is ignored; did you mean SNAPSHOT_CLOUD_PREFIX?",
		"unknown variable SNAPSHOT_GCS_PROJET is ignored; did you mean SNAPSHOT_GCS_PROJECT?",
	} {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("no warning %q:\n%s", w, r.stderr)
		}
	}
}
