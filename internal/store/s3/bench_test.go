package s3

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/snapshot-job/snapshot-job/internal/setting"
	"github.com/snapshot-job/snapshot-job/internal/store"
	"github.com/snapshot-job/snapshot-job/internal/testenv"
)

// benchPayload is n bytes, alternating 1 MiB of random bytes with 1 MiB
// of log-like text, like a snapshot volume of pcap files and JSON logs.
func benchPayload(n int) []byte {
	b := make([]byte, 0, n)
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; len(b) < n; i++ {
		chunk := min(1<<20, n-len(b))
		if i%2 == 0 {
			for range chunk {
				b = append(b, byte(r.Uint32()))
			}
			continue
		}
		for len(b) < cap(b) && chunk > 0 {
			line := fmt.Sprintf(`{"ts":"2026-11-26T03:15:%02d.%06dZ","node":"node-%d","src":"10.0.%d.%d","bytes":%d}`+"\n",
				r.IntN(60), r.IntN(1e6), r.IntN(8), r.IntN(256), r.IntN(256), r.IntN(65536))
			line = line[:min(len(line), chunk)]
			b = append(b, line...)
			chunk -= len(line)
		}
	}
	return b
}

// heapPeak samples the Go heap in use until stop is called and returns
// the largest value seen.
func heapPeak() (stop func() uint64) {
	var peak atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return func() uint64 { close(done); wg.Wait(); return peak.Load() }
}

// BenchmarkThroughput uploads and downloads 1 GiB through versitygw on
// 127.0.0.1 (posix backend on the local disk):
//
//	go test -run '^$' -bench Throughput -benchtime 1x ./internal/store/s3/
func BenchmarkThroughput(b *testing.B) {
	const size = 1 << 30
	data := benchPayload(size)
	want := sha256.Sum256(data)
	v := testenv.StartVersity(b)
	v.CreateBucket(b, "bench")
	cfg := Config{Bucket: "bench", Region: v.Region, AccessKey: setting.Secret(v.AccessKey), SecretKey: setting.Secret(v.SecretKey), Endpoint: v.Endpoint, ForcePathStyle: true}
	for _, c := range []struct{ part, conc int }{{16 << 20, 4}, {32 << 20, 4}, {16 << 20, 8}} {
		b.Run(fmt.Sprintf("part=%dMiB/concurrency=%d", c.part>>20, c.conc), func(b *testing.B) {
			st, err := New(b.Context(), cfg, store.Options{PartSize: int64(c.part), Concurrency: c.conc})
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(size)
			for i := range b.N {
				key := fmt.Sprintf("bench/%d-%d-%d.tar.zst", c.part, c.conc, i)
				runtime.GC()
				var base runtime.MemStats
				runtime.ReadMemStats(&base)
				stopUp := heapPeak()
				start := time.Now()
				if _, err := st.Put(b.Context(), key, onlyReader{bytes.NewReader(data)}, store.PutOptions{SizeHint: size}); err != nil {
					b.Fatal(err)
				}
				up := time.Since(start)
				upPeak := stopUp()

				runtime.GC()
				stopDown := heapPeak()
				start = time.Now()
				rc, _, err := st.Get(b.Context(), key)
				if err != nil {
					b.Fatal(err)
				}
				h := sha256.New()
				if _, err := io.Copy(h, rc); err != nil {
					b.Fatal(err)
				}
				rc.Close()
				down := time.Since(start)
				downPeak := stopDown()
				if !bytes.Equal(h.Sum(nil), want[:]) {
					b.Fatal("downloaded bytes differ")
				}
				b.ReportMetric(size/up.Seconds()/(1<<20), "upload-MiB/s")
				b.ReportMetric(size/down.Seconds()/(1<<20), "download-MiB/s")
				b.ReportMetric(float64(upPeak-min(upPeak, base.HeapInuse))/(1<<20), "upload-heap-MiB")
				b.ReportMetric(float64(downPeak-min(downPeak, base.HeapInuse))/(1<<20), "download-heap-MiB")
				if err := st.Delete(b.Context(), []string{key}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
