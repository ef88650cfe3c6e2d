package job

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"time"
)

// counter counts bytes passing through a reader.
type counter struct {
	r io.Reader
	n *atomic.Int64
}

func (c counter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// meter is one count of a progress line: its field and the counter.
type meter struct {
	field string
	n     *atomic.Int64
}

// progress logs a line every interval while a transfer runs: each
// verb's counts (bytes read, and stored, written or checked), rate, and
// an ETA when the total is known. Long transfers must show they are
// alive, or operators kill them.
type progress struct {
	log      *slog.Logger
	phase    string
	total    int64 // bytes of the first meter expected, 0 if unknown
	meters   []meter
	start    time.Time
	stop     chan struct{}
	finished chan struct{}
}

// startProgress reports meters every interval; the first one is what
// the rate, the percentage and the ETA are of.
func startProgress(ctx context.Context, log *slog.Logger, every time.Duration, phase string, total int64, meters ...meter) *progress {
	p := &progress{log: log, phase: phase, total: total, meters: meters,
		start: time.Now(), stop: make(chan struct{}), finished: make(chan struct{})}
	go func() {
		defer close(p.finished)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				p.report()
			case <-p.stop:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return p
}

func (p *progress) report() {
	elapsed := time.Since(p.start)
	read := p.meters[0].n.Load()
	rate := float64(read) / elapsed.Seconds()
	attrs := []any{"phase", p.phase}
	for _, m := range p.meters {
		attrs = append(attrs, m.field, m.n.Load())
	}
	attrs = append(attrs,
		"elapsed", elapsed.Round(time.Second).String(),
		"rate_mib_s", round1(rate/(1<<20)),
	)
	if p.total > 0 {
		attrs = append(attrs, "total_bytes", p.total, "percent", round1(100*float64(read)/float64(p.total)))
		if rate > 0 && read < p.total {
			eta := time.Duration(float64(p.total-read) / rate * float64(time.Second))
			attrs = append(attrs, "eta", eta.Round(time.Second).String())
		}
	}
	p.log.Info("progress", attrs...)
}

// done stops the reporting.
func (p *progress) done() {
	close(p.stop)
	<-p.finished
}

func round1(f float64) float64 { return float64(int64(f*10+0.5)) / 10 }
