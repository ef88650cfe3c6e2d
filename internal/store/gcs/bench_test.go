package gcs

import (
	"fmt"
	"io"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/snapshot-job/snapshot-job/internal/store"
	"github.com/snapshot-job/snapshot-job/internal/testenv"
)

// randomReader streams n incompressible bytes (like zstd output) without
// holding them: ChaCha8 produces them far faster than any store takes them.
type randomReader struct {
	r    *rand.ChaCha8
	left int64
}

func (r *randomReader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), r.left)]
	_, _ = r.r.Read(p)
	r.left -= int64(len(p))
	return len(p), nil
}

// BenchmarkFakeGCS512MiB uploads and downloads 512 MiB through
// fake-gcs-server (an emulator, in memory: it measures the client's
// side and the request pattern, not Google's network) as one resumable
// stream (conc=1) and as composite uploads with parts in flight. The
// emulator holds a compose's sources and result in memory at once, hence
// 512 MiB rather than 1 GiB. Run it alone:
//
//	go test -run '^$' -bench FakeGCS512MiB -benchtime 1x ./internal/store/gcs/
func BenchmarkFakeGCS512MiB(b *testing.B) {
	const size = 512 << 20
	b.Setenv("STORAGE_EMULATOR_HOST", "")
	f := testenv.StartFakeGCS(b)
	f.CreateBucket(b, testBucket)
	for _, c := range []struct {
		part int64
		conc int
	}{{16 << 20, 1}, {16 << 20, 4}, {16 << 20, 8}, {32 << 20, 4}} {
		name := fmt.Sprintf("part=%dMiB/conc=%d", c.part>>20, c.conc)
		s := newTestStore(b, Config{Bucket: testBucket, Endpoint: f.Endpoint()}, c.part, c.conc)
		s.tm = defaultTiming()
		var keys []string
		b.Run(name+"/put", func(b *testing.B) {
			b.SetBytes(size)
			defer reportCPU(b, f)()
			for i := range b.N {
				key := fmt.Sprintf("bench/%d-%d-%d.tar.zst", c.conc, i, rand.Uint32())
				n, err := s.Put(b.Context(), key, &randomReader{r: rand.NewChaCha8([32]byte{byte(i)}), left: size}, store.PutOptions{SizeHint: size})
				if err != nil || n != size {
					b.Fatalf("Put: %d, %v", n, err)
				}
				keys = append(keys, key)
			}
		})
		b.Run(name+"/get", func(b *testing.B) {
			b.SetBytes(size)
			defer reportCPU(b, f)()
			for i := range b.N {
				rc, _, err := s.Get(b.Context(), keys[i%len(keys)])
				if err != nil {
					b.Fatal(err)
				}
				n, err := io.Copy(io.Discard, rc)
				rc.Close()
				if err != nil || n != size {
					b.Fatalf("Get: %d, %v", n, err)
				}
			}
		})
		// The emulator keeps everything in memory: free it before the next run.
		if err := s.Delete(b.Context(), keys); err != nil {
			b.Fatal(err)
		}
	}
}

// reportCPU reports the CPU seconds per operation used by this process
// (the client) and by the emulator, to show which side limits the rate.
func reportCPU(b *testing.B, f *testenv.FakeGCS) func() {
	client0, server0 := processCPU(b), f.CPUTime(b)
	return func() {
		b.ReportMetric((processCPU(b)-client0).Seconds()/float64(b.N), "client-cpu-s/op")
		b.ReportMetric((f.CPUTime(b)-server0).Seconds()/float64(b.N), "emulator-cpu-s/op")
	}
}

func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
