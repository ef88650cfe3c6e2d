package azblob

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

// BenchmarkAzurite1GiB uploads and downloads 1 GiB through Azurite, in
// memory, with the job's default block size and concurrency and a few
// others. Run it alone (it needs about 2 GiB of memory):
//
//	go test -run '^$' -bench Azurite1GiB -benchtime 1x ./internal/store/azblob/
func BenchmarkAzurite1GiB(b *testing.B) {
	const size = 1 << 30
	az := testenv.StartAzurite(b)
	az.CreateContainer(b, testContainer)
	for _, c := range []struct {
		part int64
		conc int
	}{{16 << 20, 4}, {8 << 20, 8}, {32 << 20, 4}} {
		name := fmt.Sprintf("part=%dMiB/conc=%d", c.part>>20, c.conc)
		s := newTestStore(b, azureConfig(az.Endpoint(), testContainer, az.Key()), c.part, c.conc)
		s.log = testLogger(b)
		var keys []string
		b.Run(name+"/put", func(b *testing.B) {
			b.SetBytes(size)
			defer reportCPU(b, az)()
			for i := range b.N {
				key := fmt.Sprintf("bench/%s-%d-%d", name, i, rand.Uint32())
				n, err := s.Put(b.Context(), key, &randomReader{r: rand.NewChaCha8([32]byte{byte(i)}), left: size}, store.PutOptions{SizeHint: size})
				if err != nil || n != size {
					b.Fatalf("Put: %d, %v", n, err)
				}
				keys = append(keys, key)
			}
		})
		b.Run(name+"/get", func(b *testing.B) {
			b.SetBytes(size)
			defer reportCPU(b, az)()
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
		// Azurite keeps everything in memory: free it before the next run.
		if err := s.Delete(b.Context(), keys); err != nil {
			b.Fatal(err)
		}
	}
}

// reportCPU reports the CPU seconds per operation used by this process
// (the client) and by Azurite, to show which side limits the rate.
func reportCPU(b *testing.B, az *testenv.Azurite) func() {
	client0, azurite0 := processCPU(b), az.CPUTime(b)
	return func() {
		b.ReportMetric((processCPU(b)-client0).Seconds()/float64(b.N), "client-cpu-s/op")
		b.ReportMetric((az.CPUTime(b)-azurite0).Seconds()/float64(b.N), "azurite-cpu-s/op")
	}
}

func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
