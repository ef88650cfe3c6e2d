package store

import "testing"

func TestPartSize(t *testing.T) {
	const mib, gib, tib = int64(1 << 20), int64(1 << 30), int64(1 << 40)
	for _, tc := range []struct {
		name                                          string
		estimate, partLimit, minPart, maxPart, config int64
		want                                          int64
	}{
		{"unknown size keeps the configured size", -1, 10000, 5 * mib, 5 * gib, 16 * mib, 16 * mib},
		{"small snapshot keeps it", gib, 10000, 5 * mib, 5 * gib, 16 * mib, 16 * mib},
		// 1.1 × 5 TiB / 10,000 = 576.7 MiB.
		{"raised for the part-count limit", 5 * tib, 10000, 5 * mib, 5 * gib, 16 * mib, 577 * mib},
		{"a larger configured size wins", 5 * tib, 10000, 5 * mib, 5 * gib, gib, gib},
		{"rounded up to whole MiB", 1000, 10000, 0, 0, 64_000_000, 62 * mib},
		{"never below the minimum", 1000, 10000, 5 * mib, 5 * gib, 1, 5 * mib},
		{"never above the maximum", 100 * tib, 10000, 5 * mib, 5 * gib, 16 * mib, 5 * gib},
		{"no limits: configured, rounded", 5 * tib, 0, 0, 0, 16*mib + 1, 17 * mib},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := PartSize(tc.estimate, tc.partLimit, tc.minPart, tc.maxPart, tc.config)
			if got != tc.want {
				t.Fatalf("PartSize = %d (%.1f MiB), want %d MiB", got, float64(got)/float64(mib), tc.want/mib)
			}
			l := PartLimits{MaxParts: tc.partLimit, MinPartSize: tc.minPart, MaxPartSize: tc.maxPart}
			if m := l.PartSize(tc.estimate, tc.config); m != got {
				t.Fatalf("PartLimits.PartSize = %d, PartSize = %d", m, got)
			}
		})
	}
	// Whatever the estimate below the largest object, a stream 10 % larger
	// fits in the part-count limit.
	for est := int64(1); est < 10000*5*gib*10/11; est = est*3 + 7 {
		p := PartSize(est, 10000, 5*mib, 5*gib, 8*mib)
		if need := est + est/10; (need+p-1)/p > 10000 {
			t.Fatalf("estimate %d: part %d needs %d parts", est, p, (need+p-1)/p)
		}
	}
}

// A Put uses the plan's part size and parts in flight where it set them,
// else the store's own, and the size is raised for the hint either way.
func TestPartsFollowThePlan(t *testing.T) {
	const mib = int64(1 << 20)
	s3 := PartLimits{MaxParts: 10000, MinPartSize: 5 * mib, MaxPartSize: 5 << 30}
	for _, tc := range []struct {
		name     string
		opts     PutOptions
		wantSize int64
		wantConc int
	}{
		{"store's own", PutOptions{SizeHint: -1}, 16 * mib, 4},
		{"planned", PutOptions{SizeHint: -1, PartSize: 32 * mib, Concurrency: 2}, 32 * mib, 2},
		// 1.1 TiB / 10,000 parts = 115.3 MiB.
		{"raised for the hint", PutOptions{SizeHint: 1 << 40, Concurrency: 1}, 116 * mib, 1},
		{"planned, raised for the hint", PutOptions{SizeHint: 1 << 40, PartSize: 8 * mib}, 116 * mib, 4},
	} {
		size, conc := s3.Parts(tc.opts, 16*mib, 4)
		if size != tc.wantSize || conc != tc.wantConc {
			t.Errorf("%s: Parts = %d MiB, %d; want %d MiB, %d", tc.name, size/mib, conc, tc.wantSize/mib, tc.wantConc)
		}
	}
}
