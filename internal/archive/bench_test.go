package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/snapshot-job/snapshot-job/internal/testenv"
)

// benchSize is the dataset of the per-stage benchmarks: large enough to
// reach steady state, small enough for `go test -bench`.
const benchSize = 64 << 20

var (
	benchOnce sync.Once
	benchDir  string
	benchTar  []byte // the dataset as an uncompressed tar stream
	benchZst  []byte // and compressed at the default level
	benchErr  error
)

func benchData(b *testing.B) (string, []byte, []byte) {
	b.Helper()
	benchOnce.Do(func() {
		benchDir, benchErr = bOsMkdirTemp()
		if benchErr != nil {
			return
		}
		if _, benchErr = testenv.GenerateDataset(benchDir, benchSize); benchErr != nil {
			return
		}
		var tb bytes.Buffer
		if benchErr = tarOnly(b.Context(), &tb, benchDir); benchErr != nil {
			return
		}
		benchTar = tb.Bytes()
		var zb bytes.Buffer
		if _, benchErr = Write(b.Context(), &zb, benchDir, WriteOptions{}); benchErr == nil {
			benchZst = zb.Bytes()
		}
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchDir, benchTar, benchZst
}

// BenchmarkStageArchive: walking and reading the tree into tar, no
// compression. Bounds what read-ahead can gain.
func BenchmarkStageArchive(b *testing.B) {
	dir, tarData, _ := benchData(b)
	b.SetBytes(int64(len(tarData)))
	b.ReportAllocs()
	for b.Loop() {
		if err := tarOnly(b.Context(), io.Discard, dir); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStageCompress: zstd alone over the tar stream, per level.
func BenchmarkStageCompress(b *testing.B) {
	_, tarData, _ := benchData(b)
	for _, level := range []string{"fastest", "default", "better"} {
		b.Run(level, func(b *testing.B) {
			l, _ := encoderLevel(level)
			b.SetBytes(int64(len(tarData)))
			b.ReportAllocs()
			for b.Loop() {
				zw, err := zstd.NewWriter(io.Discard, zstd.WithEncoderLevel(l), zstd.WithEncoderCRC(true), zstd.WithConcurrentBlocks(true))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := zw.Write(tarData); err != nil {
					b.Fatal(err)
				}
				if err := zw.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkWrite: the whole backup side of the archive (walk, tar, zstd).
func BenchmarkWrite(b *testing.B) {
	dir, tarData, _ := benchData(b)
	b.SetBytes(int64(len(tarData)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Write(b.Context(), io.Discard, dir, WriteOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWriteIndex: a backup with and without its index (the entry
// records and each file's CRC-32C), for what the index costs in
// throughput; make bench-seek compares the two.
func BenchmarkWriteIndex(b *testing.B) {
	dir, tarData, _ := benchData(b)
	for _, c := range []struct {
		name    string
		noIndex bool
	}{{"with", false}, {"without", true}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(tarData)))
			for b.Loop() {
				if _, err := Write(b.Context(), io.Discard, dir, WriteOptions{noIndex: c.noIndex}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkVerify: decompression and tar parsing, no disk writes.
func BenchmarkVerify(b *testing.B) {
	_, tarData, zst := benchData(b)
	b.SetBytes(int64(len(tarData)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Verify(b.Context(), bytes.NewReader(zst), VerifyOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkExtract: the restore side, into a fresh directory each time.
func BenchmarkExtract(b *testing.B) {
	_, tarData, zst := benchData(b)
	b.SetBytes(int64(len(tarData)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Extract(b.Context(), bytes.NewReader(zst), b.TempDir(), ExtractOptions{noSync: true, Token: "bench"}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeWorkers: decompression alone, on one core and on every
// core (the parallel frame decoder against itself at 1 worker).
func BenchmarkDecodeWorkers(b *testing.B) {
	_, tarData, zst := benchData(b)
	// What restore used before: klauspost's stream decoder.
	b.Run("stream", func(b *testing.B) {
		b.SetBytes(int64(len(tarData)))
		b.ReportAllocs()
		for b.Loop() {
			d, err := zstd.NewReader(bytes.NewReader(zst), zstd.WithDecoderMaxWindow(maxWindow))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, d); err != nil {
				b.Fatal(err)
			}
			d.Close()
		}
	})
	for _, workers := range benchWorkers() {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			b.SetBytes(int64(len(tarData)))
			b.ReportAllocs()
			for b.Loop() {
				d, err := newFrameDecoder(bytes.NewReader(zst), workers)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, d); err != nil {
					b.Fatal(err)
				}
				d.Close()
			}
		})
	}
}

// BenchmarkExtractWorkers: a whole restore into tmpfs (/dev/shm when
// there is one: the disk must not set the pace), with one decoding
// worker and with every core.
func BenchmarkExtractWorkers(b *testing.B) {
	_, tarData, zst := benchData(b)
	base := ""
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		base = "/dev/shm"
	}
	for _, workers := range benchWorkers() {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			b.SetBytes(int64(len(tarData)))
			b.ReportAllocs()
			for b.Loop() {
				dir, err := os.MkdirTemp(base, "snapshot-job-bench-restore-")
				if err != nil {
					b.Fatal(err)
				}
				_, err = Extract(b.Context(), bytes.NewReader(zst), dir, ExtractOptions{noSync: true, Token: "bench", Concurrency: workers})
				b.StopTimer()
				os.RemoveAll(dir)
				b.StartTimer()
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func benchWorkers() []int {
	if n := DecodeWorkers(0); n > 1 {
		return []int{1, n}
	}
	return []int{1}
}

// tarOnly is Write without compression: the walk, the read-ahead and the
// tar stream.
func tarOnly(ctx context.Context, w io.Writer, dir string) error {
	root, ex, err := openRoot(dir, nil)
	if err != nil {
		return err
	}
	cw := &countWriter{w: w}
	a := &archiver{tw: tar.NewWriter(cw), cw: cw, log: slog.New(slog.DiscardHandler), links: map[fileID]string{}, buf: make([]byte, 1<<20)}
	p := startPipeline(ctx, root, ex, walkOptions{}, hintFile)
	err = a.consume(ctx, p)
	p.stop()
	if err != nil {
		return err
	}
	return a.tw.Close()
}

func bOsMkdirTemp() (string, error) { return os.MkdirTemp("", "snapshot-job-bench-") }

// TestMain removes the benchmark dataset, which the benchmarks share.
func TestMain(m *testing.M) {
	code := m.Run()
	if benchDir != "" {
		os.RemoveAll(benchDir)
	}
	os.Exit(code)
}

// BenchmarkFrameSize: what the frame size costs in ratio on the bench
// dataset, at each level (ratio = tar bytes / object bytes). Smaller
// frames make partial reads finer and compress worse.
func BenchmarkFrameSize(b *testing.B) {
	dir, tarData, _ := benchData(b)
	for _, level := range []string{"fastest", "default", "better"} {
		for _, fs := range []int{256 << 10, 1 << 20, 2 << 20, 4 << 20, 8 << 20, 16 << 20} {
			b.Run(level+"/"+strconv.Itoa(fs>>10)+"KiB", func(b *testing.B) {
				l, _ := encoderLevel(level)
				var out int64
				for b.Loop() {
					cw := &countWriter{w: io.Discard}
					zw, err := newFrameWriter(cw, l, fs, 0)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := zw.Write(tarData); err != nil {
						b.Fatal(err)
					}
					if err := zw.Finish(nil); err != nil {
						b.Fatal(err)
					}
					out = cw.n
				}
				b.SetBytes(int64(len(tarData)))
				b.ReportMetric(float64(len(tarData))/float64(out), "ratio")
			})
		}
	}
	b.Run("index", func(b *testing.B) {
		var data bytes.Buffer
		for b.Loop() {
			data.Reset()
			if _, err := Write(b.Context(), &data, dir, WriteOptions{}); err != nil {
				b.Fatal(err)
			}
		}
		ix, err := OpenIndex(b.Context(), &bytesRanger{b: data.Bytes()}, int64(data.Len()))
		if err != nil {
			b.Fatal(err)
		}
		n, err := ix.Entries(b.Context(), func(*Entry) error { return nil })
		if err != nil {
			b.Fatal(err)
		}
		tail := ix.IndexSize() + int64(8+12*(ix.Frames()+1)+9)
		b.ReportMetric(float64(n), "entries")
		b.ReportMetric(float64(ix.IndexSize())/float64(n), "index-bytes/entry")
		b.ReportMetric(100*float64(tail)/float64(data.Len()), "%tail")
	})
	// The frames as Write cuts them (at entries, around large files, at
	// top folders), against the fixed frames above: the ratio of the
	// data frames alone.
	for _, level := range []string{"fastest", "default", "better"} {
		b.Run("cut/"+level, func(b *testing.B) {
			var data bytes.Buffer
			for b.Loop() {
				data.Reset()
				if _, err := Write(b.Context(), &data, dir, WriteOptions{Level: level}); err != nil {
					b.Fatal(err)
				}
			}
			ix, err := OpenIndex(b.Context(), &bytesRanger{b: data.Bytes()}, int64(data.Len()))
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(ix.TarSize())/float64(ix.indexOff), "ratio")
			b.ReportMetric(float64(ix.Frames()), "frames")
		})
	}
}
