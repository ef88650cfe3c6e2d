package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/snapshot-job/snapshot-job/internal/testenv"
)

// ageKey is a key pair made by the age CLI, as docs/encryption.md says.
type ageKey struct {
	file, identity, recipient string
}

func needAgeCLI(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"age", "age-keygen", "zstd", "tar", "ssh-keygen"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed (make tools installs age): %v", tool, err)
		}
	}
}

func newAgeKey(t *testing.T) ageKey {
	t.Helper()
	file := filepath.Join(t.TempDir(), "key.txt")
	if out, err := exec.Command("age-keygen", "-o", file).CombinedOutput(); err != nil {
		t.Fatalf("age-keygen: %v: %s", err, out)
	}
	pub, err := exec.Command("age-keygen", "-y", file).Output()
	if err != nil {
		t.Fatalf("age-keygen -y: %v", err)
	}
	id, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return ageKey{file: file, identity: string(id), recipient: strings.TrimSpace(string(pub))}
}

// secretLine is the AGE-SECRET-KEY-1... line of an identity file.
func (k ageKey) secretLine() string {
	for _, l := range strings.Split(k.identity, "\n") {
		if strings.HasPrefix(l, "AGE-SECRET-KEY-") {
			return l
		}
	}
	panic("no secret key in " + k.file)
}

// storedSnapshots lists the snapshot files of a file store.
func storedSnapshots(t *testing.T, store string) []string {
	t.Helper()
	var out []string
	for _, f := range storeFiles(t, store) {
		if strings.HasPrefix(f, "snapshots/kubeshark-") {
			out = append(out, f)
		}
	}
	slices.Sort(out)
	return out
}

func sh(t *testing.T, script string) {
	t.Helper()
	if out, err := exec.Command("bash", "-o", "pipefail", "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
}

func TestEncryption(t *testing.T) {
	needAgeCLI(t)
	key, other := newAgeKey(t), newAgeKey(t)
	src := t.TempDir()
	testenv.MakeTree(t, src)

	// Every output of every run that was given the identity.
	var seen []string
	run := func(t *testing.T, e env, args ...string) jobResult {
		t.Helper()
		r := runJob(t, e, args...)
		term, _ := os.ReadFile(e["SNAPSHOT_TERMINATION_LOG"])
		seen = append(seen, r.stdout, r.stderr, string(term))
		return r
	}

	e, store := fileEnv(t, src)
	enc := e.with("SNAPSHOT_ENCRYPTION_RECIPIENTS", key.recipient+", "+other.recipient)
	expect(t, run(t, enc), 0)
	snaps := storedSnapshots(t, store)
	if len(snaps) != 1 || !strings.HasSuffix(snaps[0], ".tar.zst.age") {
		t.Fatalf("stored %q, want one .tar.zst.age", snaps)
	}
	object := filepath.Join(store, snaps[0])

	t.Run("StandardToolsRestore", func(t *testing.T) {
		out := t.TempDir()
		sh(t, "age -d -i "+key.file+" "+object+" | zstd -d | tar -x -C "+out)
		testenv.CompareTrees(t, src, out, nil)
	})

	t.Run("JobRestoresAndVerifies", func(t *testing.T) {
		for _, k := range []ageKey{key, other} {
			dst := filepath.Join(t.TempDir(), "restored")
			withID := e.with("SNAPSHOT_RESTORE_DIR", dst, "SNAPSHOT_ENCRYPTION_IDENTITY", k.identity)
			expect(t, run(t, withID, "restore"), 0)
			testenv.CompareTrees(t, src, dst, testenv.IsLock)
			expect(t, run(t, withID, "verify"), 0)
			// files reads the index from the end of the plaintext: age's
			// chunks are fetched by range, not the whole object.
			r := run(t, withID.with("SNAPSHOT_LOG_FORMAT", "text"), "files")
			expect(t, r, 0)
			for _, want := range []string{"node-1/capture-0002.pcap", "latest -> node-1/capture-0001.pcap"} {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("files does not list %q:\n%s", want, r.stdout)
				}
			}
			if !strings.Contains(r.stderr, "indexed=true") {
				t.Errorf("files did not use the index:\n%s", r.stderr)
			}
		}
		r := run(t, e, "list")
		expect(t, r, 0)
		if !strings.Contains(r.stdout, snaps[0]) {
			t.Errorf("list does not show %s:\n%s", snaps[0], r.stdout)
		}
	})

	t.Run("NoOrWrongIdentity", func(t *testing.T) {
		stranger := newAgeKey(t)
		for _, id := range []string{"", stranger.identity} {
			dst := filepath.Join(t.TempDir(), "restored")
			withID := e.with("SNAPSHOT_RESTORE_DIR", dst, "SNAPSHOT_ENCRYPTION_IDENTITY", id)
			for _, verb := range []string{"restore", "verify", "files"} {
				r := run(t, withID, verb)
				expect(t, r, 2, "set SNAPSHOT_ENCRYPTION_IDENTITY from the Secret that holds the private key")
				if strings.Contains(r.stderr, stranger.secretLine()) {
					t.Errorf("the wrong identity was logged")
				}
			}
			if _, err := os.Stat(dst); !os.IsNotExist(err) {
				t.Errorf("restore target created: %v", err)
			}
		}
	})

	t.Run("Tampered", func(t *testing.T) {
		b, err := os.ReadFile(object)
		if err != nil {
			t.Fatal(err)
		}
		e2, store2 := fileEnv(t, src)
		for _, at := range []int{len(b) / 2, len(b) - 1} {
			bad := slices.Clone(b)
			bad[at] ^= 0x01
			os.MkdirAll(filepath.Join(store2, "snapshots"), 0o755)
			if err := os.WriteFile(filepath.Join(store2, snaps[0]), bad, 0o644); err != nil {
				t.Fatal(err)
			}
			dst := t.TempDir()
			marker := filepath.Join(dst, "keep.txt")
			os.WriteFile(marker, []byte("mine"), 0o644)
			withID := e2.with("SNAPSHOT_RESTORE_DIR", dst, "SNAPSHOT_ENCRYPTION_IDENTITY", key.identity, "SNAPSHOT_RESTORE_IF_NOT_EMPTY", "overwrite")
			expect(t, run(t, withID, "restore"), 7, "nothing was written")
			if names := testenv.ReadTree(t, dst, testenv.IsLock); len(names) != 1 {
				t.Errorf("byte %d changed: the target holds %d entries, want only keep.txt", at, len(names))
			}
			expect(t, run(t, withID, "verify"), 7)
		}
	})

	t.Run("JobRestoresWhatAgeEncrypted", func(t *testing.T) {
		e2, store2 := fileEnv(t, src)
		expect(t, runJob(t, e2), 0)
		plain := storedSnapshots(t, store2)
		if len(plain) != 1 || !strings.HasSuffix(plain[0], ".tar.zst") {
			t.Fatalf("stored %q", plain)
		}
		p := filepath.Join(store2, plain[0])
		sh(t, "age -r "+key.recipient+" -o "+p+".age "+p+" && rm "+p)
		dst := filepath.Join(t.TempDir(), "restored")
		expect(t, run(t, e2.with("SNAPSHOT_RESTORE_DIR", dst, "SNAPSHOT_ENCRYPTION_IDENTITY", key.identity), "restore"), 0)
		testenv.CompareTrees(t, src, dst, testenv.IsLock)
	})

	t.Run("SSHKeys", func(t *testing.T) {
		dir := t.TempDir()
		sh(t, "ssh-keygen -q -t ed25519 -N '' -C ops@example -f "+dir+"/id")
		pub, _ := os.ReadFile(dir + "/id.pub")
		priv, _ := os.ReadFile(dir + "/id")
		e2, store2 := fileEnv(t, src)
		expect(t, runJob(t, e2.with("SNAPSHOT_ENCRYPTION_RECIPIENTS", string(pub))), 0)
		got := storedSnapshots(t, store2)
		if len(got) != 1 || !strings.HasSuffix(got[0], ".age") {
			t.Fatalf("stored %q", got)
		}
		sh(t, "age -d -i "+dir+"/id "+filepath.Join(store2, got[0])+" | zstd -d | tar -t >/dev/null")
		dst := filepath.Join(t.TempDir(), "restored")
		r := run(t, e2.with("SNAPSHOT_RESTORE_DIR", dst, "SNAPSHOT_ENCRYPTION_IDENTITY", string(priv)), "restore")
		expect(t, r, 0)
		testenv.CompareTrees(t, src, dst, testenv.IsLock)
		body := strings.Split(strings.TrimSpace(string(priv)), "\n")
		for _, out := range []string{r.stdout, r.stderr} {
			for _, line := range body[1 : len(body)-1] {
				if strings.Contains(out, line) {
					t.Fatalf("a line of the ssh private key was logged")
				}
			}
		}
	})

	t.Run("BadRecipient", func(t *testing.T) {
		r := runJob(t, e.with("SNAPSHOT_ENCRYPTION_RECIPIENTS", key.recipient+",age1bogus"))
		expect(t, r, 2, "SNAPSHOT_ENCRYPTION_RECIPIENTS", `"age1bogus"`)
		r = runJob(t, e.with("SNAPSHOT_ENCRYPTION_RECIPIENTS", key.identity))
		expect(t, r, 2, "SNAPSHOT_ENCRYPTION_RECIPIENTS", "private key")
		seen = append(seen, r.stdout, r.stderr)
		if got := storedSnapshots(t, store); len(got) != 1 {
			t.Errorf("a refused run stored something: %q", got)
		}
	})

	t.Run("BadIdentity", func(t *testing.T) {
		broken := strings.Replace(key.identity, "AGE-SECRET-KEY-1", "AGE-SECRET-KEY-1X", 1)
		r := runJob(t, e.with("SNAPSHOT_ENCRYPTION_IDENTITY", broken), "restore")
		expect(t, r, 2, "SNAPSHOT_ENCRYPTION_IDENTITY")
		seen = append(seen, r.stdout, r.stderr)
	})

	t.Run("BackupWarnsAboutIdentity", func(t *testing.T) {
		e2, _ := fileEnv(t, src)
		r := run(t, e2.with("SNAPSHOT_ENCRYPTION_RECIPIENTS", key.recipient, "SNAPSHOT_ENCRYPTION_IDENTITY", key.identity))
		expect(t, r, 0)
		if !strings.Contains(r.stderr, "a backup never needs it") {
			t.Errorf("no warning about the identity in the backup's environment:\n%s", r.stderr)
		}
	})

	// Not a line, nor any 12 characters of the secret key, anywhere.
	secret := strings.TrimPrefix(key.secretLine(), "AGE-SECRET-KEY-1")
	for _, out := range seen {
		for i := 0; i+12 <= len(secret); i += 4 {
			if strings.Contains(strings.ToUpper(out), secret[i:i+12]) {
				t.Fatalf("characters %d-%d of the secret key appear in an output:\n%s", i, i+12, out)
			}
		}
	}
	if len(seen) < 20 {
		t.Errorf("only %d outputs checked", len(seen))
	}
}
