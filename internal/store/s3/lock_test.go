package s3

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/snapshot-job/snapshot-job/internal/store"
	"github.com/snapshot-job/snapshot-job/internal/testenv"
)

// lockedServer is a versitygw with a bucket that has Object Lock enabled;
// versioned as on AWS (where Object Lock turns versioning on) or not (as
// some S3-compatible stores lock).
func lockedServer(t *testing.T, versioned bool) *server {
	t.Helper()
	isolateAWS(t)
	var opts []testenv.VersityOption
	if versioned {
		opts = append(opts, testenv.WithVersioning())
	}
	v := testenv.StartVersity(t, opts...)
	s := &server{v: v, bucket: fmt.Sprintf("locked-%d", rand.Uint32())}
	v.CreateLockedBucket(t, s.bucket)
	return s
}

func (s *server) lockedCfg(mode string, days int) Config {
	return s.lockedCfgAt("", mode, days)
}

func (s *server) lockedCfgAt(endpoint, mode string, days int) Config {
	c := s.cfg(endpoint)
	c.ObjectLockMode, c.ObjectLockDays = mode, days
	return c
}

func (s *server) retention(t *testing.T, key string) (types.ObjectLockRetentionMode, time.Time) {
	t.Helper()
	out, err := s.v.Client().GetObjectRetention(t.Context(), &awss3.GetObjectRetentionInput{Bucket: &s.bucket, Key: &key})
	if err != nil {
		t.Fatalf("GetObjectRetention(%s): %v", key, err)
	}
	return out.Retention.Mode, aws.ToTime(out.Retention.RetainUntilDate)
}

func lockedKeys(t *testing.T, err error) map[string]time.Time {
	t.Helper()
	le, ok := errors.AsType[*store.LockedError](err)
	if !ok {
		t.Fatalf("Delete: %v, want a *store.LockedError", err)
	}
	if le.Others != nil {
		t.Errorf("Delete: other failures %v", le.Others)
	}
	got := map[string]time.Time{}
	for _, l := range le.Locked {
		got[l.Key] = l.Until
	}
	return got
}

func TestObjectLock(t *testing.T) {
	for _, versioned := range []bool{true, false} {
		t.Run(fmt.Sprintf("versioned=%v", versioned), func(t *testing.T) {
			s := lockedServer(t, versioned)
			// Every request that carries data must carry its CRC32C,
			// in a header or a trailer: S3 refuses locked writes without.
			proxy := testenv.StartFaultProxy(t, s.v.Endpoint)
			var puts, summed atomic.Int32
			proxy.SetRule(func(r *http.Request, _ int) testenv.Fault {
				if r.Method == http.MethodPut {
					puts.Add(1)
					if r.Header.Get("X-Amz-Checksum-Crc32c") != "" || strings.EqualFold(r.Header.Get("X-Amz-Trailer"), "x-amz-checksum-crc32c") {
						summed.Add(1)
					}
				}
				return testenv.Fault{}
			})
			st := newStore(t, s.lockedCfgAt(proxy.URL, "GOVERNANCE", 2), store.Options{})
			if err := st.Check(t.Context(), store.Write); err != nil {
				t.Fatalf("Check(Write): %v", err)
			}
			if st.versioned != versioned {
				t.Errorf("versioned = %v, want %v", st.versioned, versioned)
			}
			// One PutObject and one multipart upload (3 parts): both
			// carry the retention, and S3's checksum on every part.
			small, big := bytes.Repeat([]byte("s"), 1000), make([]byte, 2*testPart+1234)
			for i := range big {
				big[i] = byte(rand.Uint32())
			}
			before := time.Now()
			for key, data := range map[string][]byte{"p/small.tar.zst": small, "p/big.tar.zst": big} {
				if n, err := st.Put(t.Context(), key, bytes.NewReader(data), store.PutOptions{SizeHint: int64(len(data))}); err != nil || n != int64(len(data)) {
					t.Fatalf("Put(%s) = %d, %v", key, n, err)
				}
				mode, until := s.retention(t, key)
				want := before.Add(48 * time.Hour)
				if mode != types.ObjectLockRetentionModeGovernance || until.Before(want.Add(-time.Second)) || until.After(want.Add(time.Minute)) {
					t.Errorf("%s: retention %s until %s, want GOVERNANCE until about %s", key, mode, until, want)
				}
				rc, _, err := st.Get(t.Context(), key)
				if err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(rc)
				rc.Close()
				if err != nil || !bytes.Equal(got, data) {
					t.Errorf("%s: read back %d bytes (%v), want the %d stored", key, len(got), err, len(data))
				}
			}

			if puts.Load() != 4 || summed.Load() != puts.Load() {
				t.Errorf("%d of %d PUTs (1 PutObject, 3 UploadPart) carried a CRC32C", summed.Load(), puts.Load())
			}

			err := st.Delete(t.Context(), []string{"p/small.tar.zst", "p/big.tar.zst", "p/missing.tar.zst"})
			got := lockedKeys(t, err)
			if len(got) != 2 || got["p/small.tar.zst"].IsZero() || got["p/big.tar.zst"].IsZero() {
				t.Errorf("locked %v, want both snapshots with their dates", got)
			}
			if errors.Is(err, store.ErrAccess) || errors.Is(err, store.ErrTransfer) {
				t.Errorf("a lock alone is no failure: %v", err)
			}
			if k := s.v.Keys(t, s.bucket, "p/"); len(k) != 2 {
				t.Errorf("keys after Delete: %q, want both still there (no delete marker hiding them)", k)
			}

			// The server itself refuses the real deletion by hand.
			head, err := s.v.Client().HeadObject(t.Context(), &awss3.HeadObjectInput{Bucket: &s.bucket, Key: aws.String("p/small.tar.zst")})
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.v.Client().DeleteObject(t.Context(), &awss3.DeleteObjectInput{Bucket: &s.bucket, Key: aws.String("p/small.tar.zst"), VersionId: head.VersionId})
			if err == nil || apiCode(err) != "AccessDenied" {
				t.Errorf("DeleteObject by hand before expiry: %v, want AccessDenied", err)
			}
		})
	}
}

// A short retention expires within the test; pruning after it deletes
// the snapshot, every version of it.
func TestObjectLockExpires(t *testing.T) {
	s := lockedServer(t, true)
	st := newStore(t, s.lockedCfg("COMPLIANCE", 1), store.Options{})
	if err := st.Check(t.Context(), store.Write); err != nil {
		t.Fatal(err)
	}
	st.lockFor = 2 * time.Second
	key := "p/snap.tar.zst"
	if _, err := st.Put(t.Context(), key, strings.NewReader("data"), store.PutOptions{SizeHint: 4}); err != nil {
		t.Fatal(err)
	}
	if mode, _ := s.retention(t, key); mode != types.ObjectLockRetentionModeCompliance {
		t.Errorf("mode %s, want COMPLIANCE", mode)
	}
	if got := lockedKeys(t, st.Delete(t.Context(), []string{key})); len(got) != 1 {
		t.Fatalf("locked %v", got)
	}
	time.Sleep(3 * time.Second)
	if err := st.Delete(t.Context(), []string{key}); err != nil {
		t.Fatalf("Delete after expiry: %v", err)
	}
	if k := s.v.Keys(t, s.bucket, ""); len(k) != 0 {
		t.Errorf("keys left: %q", k)
	}
	out, err := s.v.Client().ListObjectVersions(t.Context(), &awss3.ListObjectVersionsInput{Bucket: &s.bucket})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Versions)+len(out.DeleteMarkers) != 0 {
		t.Errorf("left %d versions and %d delete markers, want none", len(out.Versions), len(out.DeleteMarkers))
	}
}

func TestObjectLockNeedsLockedBucket(t *testing.T) {
	s := startServer(t) // a bucket without Object Lock
	st := newStore(t, s.lockedCfg("GOVERNANCE", 1), store.Options{})
	err := st.Check(t.Context(), store.Write)
	if !errors.Is(err, store.ErrAccess) || !strings.Contains(err.Error(), "does not have Object Lock enabled") ||
		!strings.Contains(err.Error(), "SNAPSHOT_AWS_OBJECT_LOCK_MODE") {
		t.Errorf("Check(Write) = %v, want ErrAccess saying Object Lock is not enabled", err)
	}
	// Reading needs no lock: a restore works on such a bucket.
	if err := st.Check(t.Context(), store.Read); err != nil {
		t.Errorf("Check(Read) = %v", err)
	}
}
