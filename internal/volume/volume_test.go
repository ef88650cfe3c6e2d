package volume

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/snapshot-job/snapshot-job/internal/archive"
)

// The test binary doubles as a restore that holds a lock until killed.
func TestMain(m *testing.M) {
	if dir := os.Getenv("VOLUME_TEST_HOLD"); dir != "" {
		l, err := Acquire(t0(), dir, nil)
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		if p := os.Getenv("VOLUME_TEST_PHASE"); p != "" {
			if err := l.SetPhase(Phase(p)); err != nil {
				fmt.Println("error:", err)
				os.Exit(1)
			}
		}
		fmt.Println("held", l.Token())
		select {}
	}
	os.Exit(m.Run())
}

// holder starts a process that holds the lock of dir, and returns it
// once it does.
func holder(t *testing.T, dir string, phase Phase) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "VOLUME_TEST_HOLD="+dir, "VOLUME_TEST_PHASE="+string(phase))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "held ") {
		t.Fatalf("holder: %q, %v", line, err)
	}
	return cmd
}

func kill(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	cmd.Process.Kill()
	cmd.Wait()
}

func readRec(t *testing.T, dir string) record {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, LockName))
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != recordSize {
		t.Fatalf("lock file is %d bytes, want %d", len(b), recordSize)
	}
	r, err := parseRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mustAcquire(t *testing.T, dir string) *Lock {
	t.Helper()
	l, err := Acquire(t.Context(), dir, nil)
	if err != nil {
		t.Fatalf("Acquire(%s): %v", dir, err)
	}
	return l
}

func TestLockNameIsReserved(t *testing.T) {
	if !archive.Reserved(LockName) {
		t.Fatalf("%s does not start with %s: backups would archive it", LockName, archive.ReservedPrefix)
	}
}

func TestAcquireReleaseCountsGenerations(t *testing.T) {
	dir := t.TempDir()
	for gen := uint64(1); gen <= 3; gen++ {
		l := mustAcquire(t, dir)
		r := readRec(t, dir)
		if r.State != stateRestoring || r.Generation != gen || r.Phase != Extracting || r.Token != l.Token() || r.PID != os.Getpid() {
			t.Fatalf("record while held: %+v", r)
		}
		if err := l.SetPhase(Committing); err != nil {
			t.Fatal(err)
		}
		if r := readRec(t, dir); r.Phase != Committing {
			t.Fatalf("phase not recorded: %+v", r)
		}
		if err := l.Release(); err != nil {
			t.Fatal(err)
		}
		if r := readRec(t, dir); r.State != stateIdle || r.Generation != gen || r.Token != "" {
			t.Fatalf("record after release: %+v", r)
		}
	}
}

func TestSecondAcquireIsBusy(t *testing.T) {
	dir := t.TempDir()
	l := mustAcquire(t, dir)
	defer l.Release()
	_, err := Acquire(t.Context(), dir, nil)
	if !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Fatalf("second Acquire: %v, want ErrBusy naming the holder", err)
	}
	if r := readRec(t, dir); r.Token != l.Token() {
		t.Fatalf("the refused Acquire changed the record: %+v", r)
	}
	// A restore into a directory below a held one is refused too.
	sub := filepath.Join(dir, "node-1")
	if _, err := Acquire(t.Context(), sub, nil); !errors.Is(err, ErrBusy) {
		t.Fatalf("Acquire below a held directory: %v, want ErrBusy", err)
	}
	if _, err := os.Stat(sub); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the refused Acquire created %s", sub)
	}
}

func TestAcquireBusyAcrossProcesses(t *testing.T) {
	dir := t.TempDir()
	h := holder(t, dir, "")
	if _, err := Acquire(t.Context(), dir, nil); !errors.Is(err, ErrBusy) {
		t.Fatalf("Acquire while another process holds the lock: %v", err)
	}
	if _, err := Watch(dir, nil); !errors.Is(err, ErrBusy) {
		t.Fatalf("Watch while another process holds the lock: %v", err)
	}
	kill(t, h)
	// SIGKILL drops the lock; on the same kernel that proves the holder
	// gone, so its lock is taken over at once.
	w, err := Watch(dir, nil)
	if err != nil {
		t.Fatalf("Watch after the holder was killed: %v", err)
	}
	l := mustAcquire(t, dir)
	if r := readRec(t, dir); r.Generation != 2 || r.Token != l.Token() {
		t.Fatalf("record after takeover: %+v", r)
	}
	if err := w.Recheck(); !errors.Is(err, ErrBusy) {
		t.Fatalf("Recheck after a restore took over: %v", err)
	}
	l.Release()
}

func TestInterruptedCommitBlocksBackups(t *testing.T) {
	dir := t.TempDir()
	kill(t, holder(t, dir, Committing))
	_, err := Watch(filepath.Join(dir, "sub"), nil)
	if !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "interrupted while it moved entries in") {
		t.Fatalf("Watch of a volume with an interrupted commit: %v", err)
	}
	// The next restore takes the lock over (and then rolls back).
	mustAcquire(t, dir).Release()
	if _, err := Watch(dir, nil); err != nil {
		t.Fatalf("Watch after the next restore: %v", err)
	}
}

func TestAbandonedExtractionDoesNotBlockBackups(t *testing.T) {
	dir := t.TempDir()
	kill(t, holder(t, dir, ""))
	w, err := Watch(dir, nil)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	if err := w.Recheck(); err != nil {
		t.Fatalf("Recheck with nothing changed: %v", err)
	}
}

// A holder on another node, on a filesystem that does not share locks,
// is seen through its heartbeat only.
func TestForeignHolderJudgedByHeartbeat(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, LockName)
	rec := record{State: stateRestoring, Generation: 7, Phase: Extracting, Token: "feedface", Host: "restore-abc", Node: "node-b", BootID: "another-kernel", PID: 1, Started: time.Now().UTC()}
	b, _ := rec.marshal()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Acquire(t.Context(), dir, nil); !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "node node-b") {
		t.Fatalf("Acquire with a fresh foreign heartbeat: %v", err)
	}
	if _, err := Watch(dir, nil); !errors.Is(err, ErrBusy) {
		t.Fatalf("Watch with a fresh foreign heartbeat: %v", err)
	}
	old := time.Now().Add(-StaleAfter - time.Minute)
	os.Chtimes(path, old, old)
	l := mustAcquire(t, dir)
	if r := readRec(t, dir); r.Generation != 8 {
		t.Fatalf("generation after takeover: %+v", r)
	}
	l.Release()
}

func TestLostLockIsNoticed(t *testing.T) {
	dir := t.TempDir()
	j := judge{me: whoAmI(), now: time.Now, staleAfter: StaleAfter}
	l, err := acquire(t.Context(), dir, nil, j, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	// Another run judged it abandoned and wrote its own record.
	other := record{State: stateRestoring, Generation: 2, Token: "other", Host: "thief"}
	b, _ := other.marshal()
	f, _ := os.OpenFile(filepath.Join(dir, LockName), os.O_WRONLY, 0)
	f.WriteAt(b, 0)
	f.Close()
	select {
	case <-l.Lost():
	case <-time.After(10 * time.Second):
		t.Fatal("the heartbeat did not notice the lost lock")
	}
	if err := l.SetPhase(Committing); !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "pod thief") {
		t.Fatalf("SetPhase after the lock was lost: %v", err)
	}
	if err := l.Release(); !errors.Is(err, ErrBusy) {
		t.Fatalf("Release after the lock was lost: %v", err)
	}
	if r := readRec(t, dir); r.Token != "other" {
		t.Fatalf("Release overwrote the new holder's record: %+v", r)
	}
}

func TestDiscardLeavesNothing(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "a", "b")
	l := mustAcquire(t, dir)
	if err := l.Discard(); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(base); len(entries) != 0 {
		t.Fatalf("Discard left %v in %s", entries, base)
	}
	// Where the lock existed before, Discard keeps it, idle.
	mustAcquire(t, base).Release()
	l = mustAcquire(t, base)
	if err := l.Discard(); err != nil {
		t.Fatal(err)
	}
	if r := readRec(t, base); r.State != stateIdle || r.Generation != 2 {
		t.Fatalf("record after Discard of an existing lock: %+v", r)
	}
}

func TestWatchRecheckSeesARestoreThatCameAndWent(t *testing.T) {
	dir := t.TempDir()
	w, err := Watch(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	mustAcquire(t, dir).Release()
	if err := w.Recheck(); !errors.Is(err, ErrBusy) {
		t.Fatalf("Recheck after a restore came and went: %v", err)
	}
	// A lock met inside the tree counts as well.
	sub := filepath.Join(dir, "node-1")
	mustAcquire(t, sub).Release()
	w, err = Watch(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Add(filepath.Join(sub, LockName)); err != nil {
		t.Fatal(err)
	}
	if err := w.Recheck(); err != nil {
		t.Fatalf("Recheck, nothing changed: %v", err)
	}
	mustAcquire(t, sub).Release()
	if err := w.Recheck(); !errors.Is(err, ErrBusy) {
		t.Fatalf("Recheck after a restore into a subdirectory: %v", err)
	}
}

func TestLockThatIsNotAFile(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, LockName), 0o755)
	if _, err := Acquire(t.Context(), dir, nil); !errors.Is(err, archive.ErrTarget) || !strings.Contains(err.Error(), "not a lock file but a directory") {
		t.Fatalf("Acquire: %v", err)
	}
	if _, err := Watch(dir, nil); err == nil || !strings.Contains(err.Error(), "not a lock file") {
		t.Fatalf("Watch: %v", err)
	}
}

func TestRecordIsFixedSize(t *testing.T) {
	r := record{State: stateRestoring, Host: strings.Repeat("h", 2000), Token: "t"}
	b, err := r.marshal()
	if err != nil || len(b) != recordSize {
		t.Fatalf("marshal: %d bytes, %v", len(b), err)
	}
	back, err := parseRecord(b)
	if err != nil || back.Token != "t" || len(back.Host) != 64 {
		t.Fatalf("round trip: %+v, %v", back, err)
	}
	if _, err := parseRecord([]byte(`{"state":"restoring","gen`)); err == nil {
		t.Fatal("a torn record parsed")
	}
}

func t0() context.Context { return context.Background() }

func TestPending(t *testing.T) {
	dir := t.TempDir()
	check := func(want bool) {
		t.Helper()
		if got, err := Pending(dir); err != nil || got != want {
			t.Fatalf("Pending = %v, %v; want %v", got, err, want)
		}
	}
	check(false)
	l := mustAcquire(t, dir)
	check(true)
	l.Release()
	check(false)
	kill(t, holder(t, dir, ""))
	check(false) // interrupted before it moved anything
	kill(t, holder(t, dir, Committing))
	check(true)
}
