package kube

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/snapshot-job/snapshot-job/test/chart/fixture"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// TestFailJobAtOnce: every exit code the contract marks as not worth a
// retry fails the Job at once through podFailurePolicy: one pod, reason
// PodFailurePolicy, and nothing more in the bucket than the failure
// itself leaves.
func TestFailJobAtOnce(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		code int32
		// values are extra chart values.
		values []string
		proxy  bool
		// prepare sets the failure up; start starts the Job and returns
		// its name.
		prepare func(t *testing.T, s *scenario, d *deployment)
		start   func(t *testing.T, s *scenario, d *deployment) string
		// wantKeys is how many snapshots the bucket holds afterwards.
		wantKeys int
		// message is part of the error in the termination message.
		message string
	}{{
		name: "exit2-bad-retention-age", code: 2,
		prepare: func(t *testing.T, s *scenario, d *deployment) {
			d.writeTree()
		},
		start: func(t *testing.T, s *scenario, d *deployment) string {
			s.createJobWithEnv(d.full+"-backup", "bad-age", "SNAPSHOT_RETENTION_MAX_AGE=30days")
			return "bad-age"
		},
		message: "SNAPSHOT_RETENTION_MAX_AGE",
	}, {
		name: "exit3-rotated-secret", code: 3,
		prepare: func(t *testing.T, s *scenario, d *deployment) {
			d.writeTree()
			patch := fmt.Sprintf(`{"data":{"SNAPSHOT_AWS_SECRET_KEY":%q}}`, base64.StdEncoding.EncodeToString([]byte("rotated-elsewhere")))
			if _, err := cluster.Client.CoreV1().Secrets(s.ns).Patch(s.ctx(), d.full+"-cloud-secret", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
				t.Fatal(err)
			}
		},
		start: func(t *testing.T, s *scenario, d *deployment) string {
			d.backup("refused")
			return "refused"
		},
	}, {
		name: "exit4-unreadable-source", code: 4,
		prepare: func(t *testing.T, s *scenario, d *deployment) {
			d.writeTree()
			// Kubeshark's hub runs as root: a file it keeps to itself is
			// out of the job's reach.
			if err := os.WriteFile(filepath.Join(d.vol, "node-a", "private.pcap"), []byte("secret"), 0o600); err != nil {
				t.Fatal(err)
			}
		},
		start: func(t *testing.T, s *scenario, d *deployment) string {
			d.backup("unreadable")
			return "unreadable"
		},
		message: "private.pcap",
	}, {
		name: "exit4-restore-target-not-writable", code: 4,
		prepare: func(t *testing.T, s *scenario, d *deployment) {
			d.writeTree()
			d.backup("first")
			s.wantComplete("first", 0)
			// The tree's directories belong to root (the hub) and are not
			// group-writable: an overwriting restore cannot replace files.
		},
		start: func(t *testing.T, s *scenario, d *deployment) string {
			s.createJobWithEnv(d.full+"-restore", "overwrite", "SNAPSHOT_RESTORE_IF_NOT_EMPTY=overwrite")
			return "overwrite"
		},
		wantKeys: 1, message: "restore target not writable",
	}, {
		name: "exit6-prune-denied", code: 6, proxy: true,
		values: []string{"retention: {keepLast: 1}"},
		prepare: func(t *testing.T, s *scenario, d *deployment) {
			d.writeTree()
			d.backup("first")
			s.wantComplete("first", 0)
			d.proxy.setRule(func(op string) verdict {
				if op == "DeleteObject" || op == "DeleteObjects" {
					return verdict{status: 403, code: "AccessDenied"}
				}
				return verdict{}
			})
			nextSecond()
		},
		start: func(t *testing.T, s *scenario, d *deployment) string {
			d.backup("prune-denied")
			return "prune-denied"
		},
		// The first snapshot and the one the failing run stored: a retry
		// would have stored a third.
		wantKeys: 2,
	}, {
		name: "exit7-corrupt-snapshot", code: 7,
		prepare: func(t *testing.T, s *scenario, d *deployment) {
			d.writeTree()
			d.backup("first")
			s.wantComplete("first", 0)
			corrupt(t, filepath.Join(d.gw.BucketDir(d.gw.bucket), d.keys()[0]))
		},
		start: func(t *testing.T, s *scenario, d *deployment) string {
			s.createJobWithEnv(d.full+"-restore", "corrupt", "SNAPSHOT_RESTORE_IF_NOT_EMPTY=overwrite")
			return "corrupt"
		},
		wantKeys: 1,
	}, {
		name: "exit8-target-not-empty", code: 8,
		prepare: func(t *testing.T, s *scenario, d *deployment) {
			d.writeTree()
			d.backup("first")
			s.wantComplete("first", 0)
		},
		start: func(t *testing.T, s *scenario, d *deployment) string {
			d.restore("not-empty")
			return "not-empty"
		},
		wantKeys: 1,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newScenario(t)
			d := s.deploy(setup{prefix: "fail/", proxy: tc.proxy, values: tc.values})
			tc.prepare(t, s, d)
			before := fixture.Tree(t, d.vol, "lost+found")
			job := tc.start(t, s, d)
			j := s.wantFailed(job, "PodFailurePolicy", tc.code)
			if j.Status.Failed != 1 || j.Status.Active != 0 {
				t.Errorf("Job status failed %d active %d, want 1 and 0", j.Status.Failed, j.Status.Active)
			}
			res := result(t, s.pods.ofJob(job)[0])
			if res["exit_code"] != float64(tc.code) {
				t.Errorf("termination message %v, want exit_code %d", res, tc.code)
			}
			if msg, _ := res["error"].(string); !strings.Contains(msg, tc.message) {
				t.Errorf("termination message error %q lacks %q", msg, tc.message)
			}
			if keys := d.keys(); len(keys) != tc.wantKeys {
				t.Errorf("bucket %q, want %d snapshots", keys, tc.wantKeys)
			}
			d.noUploads()
			// A failed run leaves the volume exactly as it was.
			fixture.CompareTrees(t, before, fixture.Tree(t, d.vol, "lost+found"))
			if tc.code == 2 {
				checkNotesWait(t, s, d, job)
			}
		})
	}
}

// checkNotesWait runs the NOTES.txt commands for reading a run's result on
// a failed Job: the wait returns (it does not sit out its 24 h), and the
// next lines say Failed and show the exit code.
func checkNotesWait(t *testing.T, s *scenario, d *deployment, job string) {
	t.Helper()
	cmd := notesCommand(t, d.rel0.Info.Notes, "has completed or failed; the second line says which:")
	lines := strings.Split(cmd, "\n")
	if len(lines) < 3 || !strings.Contains(lines[0], " wait ") {
		t.Fatalf("NOTES result commands: %q", lines)
	}
	if out := s.runNotes(lines[0], map[string]string{"job/JOB": "job/" + job}); !strings.Contains(out, "condition met") {
		t.Errorf("kubectl wait: %q", out)
	}
	if out := s.runNotes(lines[1], map[string]string{"job JOB": "job " + job}); strings.TrimSpace(out) != "Failed PodFailurePolicy" {
		t.Errorf("condition line %q, want Failed PodFailurePolicy", out)
	}
	if out := s.runNotes(lines[2], map[string]string{"job-name=JOB": "job-name=" + job}); !strings.HasPrefix(out, "2 {") {
		t.Errorf("exit code line %q, want 2 and the JSON result", out)
	}
}

// corrupt flips bytes in the middle of a stored object.
func corrupt(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := len(b) / 2; i < len(b)/2+64; i++ {
		b[i] ^= 0xff
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestRetriedExitCodes: exit 5 (transfer failed after retries) and exit 9
// (a restore holds the volume) are worth a retry: the Job runs
// backoffLimit+1 pods and fails with BackoffLimitExceeded, storing
// nothing and leaving no upload open.
func TestRetriedExitCodes(t *testing.T) {
	t.Parallel()
	t.Run("exit5-store-unavailable", func(t *testing.T) {
		t.Parallel()
		s := newScenario(t)
		d := s.deploy(setup{prefix: "retry/", proxy: true})
		d.writeTree()
		d.proxy.setRule(func(op string) verdict {
			if op == "UploadPart" || op == "PutObject" {
				return verdict{status: 503, code: "ServiceUnavailable"}
			}
			return verdict{}
		})
		d.backup("unavailable")
		s.wantFailed("unavailable", "BackoffLimitExceeded", 5, 5, 5)
		if keys := d.keys(); len(keys) != 0 {
			t.Errorf("bucket %q, want nothing", keys)
		}
		d.noUploads()
	})
	t.Run("exit9-restore-in-progress", func(t *testing.T) {
		t.Parallel()
		s := newScenario(t)
		d := s.deploy(setup{prefix: "busy/", proxy: true})
		d.writeTree()
		d.chownTree(imageUser)
		d.backup("first")
		s.wantComplete("first", 0)
		// A restore into the volume, held while it downloads.
		d.proxy.holdOps("GetObject")
		s.createJobWithEnv(d.full+"-restore", "restoring", "SNAPSHOT_RESTORE_IF_NOT_EMPTY=overwrite")
		d.proxy.waitHeld(t)
		waitLock(t, d.vol)
		nextSecond()
		d.backup("busy")
		s.wantFailed("busy", "BackoffLimitExceeded", 9, 9, 9)
		if keys := d.keys(); len(keys) != 1 {
			t.Errorf("bucket %q, want only the first snapshot", keys)
		}
		d.proxy.Release()
		s.wantComplete("restoring", 0)
	})
}

// waitLock waits until a restore holds the volume's lock file.
func waitLock(t *testing.T, vol string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(filepath.Join(vol, ".snapshot-job-lock")); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no restore holds %s/.snapshot-job-lock", vol)
}

// midBackup starts a backup whose part uploads are held and returns its
// running pod once an upload is in flight.
func midBackup(t *testing.T, s *scenario, d *deployment, job string) *corev1.Pod {
	t.Helper()
	d.writeTree()
	d.proxy.holdOps("UploadPart")
	d.backup(job)
	d.proxy.waitHeld(t)
	return s.waitRunning(job)
}

// afterStop waits until the stopped pod has ended, lets uploads through
// again, and returns the pod as last seen.
func afterStop(t *testing.T, s *scenario, d *deployment, name string) *corev1.Pod {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		for _, p := range s.pods.all() {
			if _, done := podExitCode(p); p.Name == name && done {
				d.proxy.Release()
				return p
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("pod %s has not ended", name)
	return nil
}

// TestPodDeletedMidBackup: `kubectl delete pod` during an upload. The
// binary gets SIGTERM, aborts the upload and exits 143; a plain deletion
// is not a disruption, so the Job counts the failure and its retry stores
// the one snapshot.
func TestPodDeletedMidBackup(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	d := s.deploy(setup{prefix: "del/", proxy: true})
	p := midBackup(t, s, d, "deleted")
	s.mustKubectl("delete", "pod", p.Name, "--wait=false")
	stopped := afterStop(t, s, d, p.Name)
	if c, _ := podExitCode(stopped); c != 143 {
		t.Fatalf("deleted pod exited %d, want 143", c)
	}
	if res := result(t, stopped); res["exit_code"] != 143.0 || res["outcome"] == "stored" {
		t.Errorf("deleted pod's result %v, want exit 143 and nothing stored", res)
	}
	j := s.wantComplete("deleted", 143, 0)
	if j.Status.Failed != 1 || j.Status.Succeeded != 1 {
		t.Errorf("Job status failed %d succeeded %d, want 1 and 1", j.Status.Failed, j.Status.Succeeded)
	}
	if keys := d.keys(); len(keys) != 1 {
		t.Errorf("bucket %q, want the retry's snapshot only", keys)
	}
	d.noUploads()
	if d.proxy.count("AbortMultipartUpload") < 1 {
		t.Errorf("the stopped run did not abort its upload")
	}
}

// TestPodEvictedMidBackup: an eviction (a node drain) during an upload. The
// pod gets the DisruptionTarget condition, exits 143 after aborting the
// upload, and podFailurePolicy ignores it: the Job's failed count stays 0
// and the replacement stores the one snapshot.
func TestPodEvictedMidBackup(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	d := s.deploy(setup{prefix: "evict/", proxy: true})
	p := midBackup(t, s, d, "evicted")
	err := cluster.Client.CoreV1().Pods(s.ns).EvictV1(s.ctx(), &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: s.ns}})
	if err != nil {
		t.Fatal(err)
	}
	stopped := afterStop(t, s, d, p.Name)
	if c, _ := podExitCode(stopped); c != 143 {
		t.Fatalf("evicted pod exited %d, want 143", c)
	}
	if !slices.ContainsFunc(stopped.Status.Conditions, func(c corev1.PodCondition) bool {
		return c.Type == corev1.DisruptionTarget && c.Status == corev1.ConditionTrue && c.Reason == "EvictionByEvictionAPI"
	}) {
		t.Errorf("evicted pod conditions %+v lack DisruptionTarget", stopped.Status.Conditions)
	}
	j := s.wantComplete("evicted", 143, 0)
	if j.Status.Failed != 0 || j.Status.Succeeded != 1 {
		t.Errorf("Job status failed %d succeeded %d, want 0 (ignored) and 1", j.Status.Failed, j.Status.Succeeded)
	}
	if keys := d.keys(); len(keys) != 1 {
		t.Errorf("bucket %q, want the replacement's snapshot only", keys)
	}
	d.noUploads()
}

// TestBackupDeadline: a backup that outlives activeDeadlineSeconds is
// stopped by the Job controller (SIGTERM, exit 143, upload aborted) and
// the Job fails with reason DeadlineExceeded, without retries.
func TestBackupDeadline(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	d := s.deploy(setup{prefix: "deadline/", proxy: true, values: []string{"backup: {activeDeadlineSeconds: 10}"}})
	midBackup(t, s, d, "slow")
	j := s.wantFailed("slow", batchv1.JobReasonDeadlineExceeded, 143)
	if j.Status.Failed != 1 {
		t.Errorf("Job status failed %d, want 1", j.Status.Failed)
	}
	if keys := d.keys(); len(keys) != 0 {
		t.Errorf("bucket %q, want nothing", keys)
	}
	d.noUploads()
}
