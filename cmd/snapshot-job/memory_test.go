package main

import (
	"testing"

	"github.com/snapshot-job/snapshot-job/internal/config"
)

func TestMemoryLimit(t *testing.T) {
	cfg := config.Config{UploadConcurrency: 4, PartSize: 16 << 20}
	for _, tc := range []struct {
		hint int64
		want int64
	}{
		{0, 6*16<<20 + 64<<20},       // defaults: 160 MiB
		{1 << 30, 6*16<<20 + 64<<20}, // a 1 GiB snapshot fits 16 MiB parts
		{5 << 40, 6*((5<<40+maxParts-1)/maxParts) + 64<<20},
	} {
		if got := memoryLimit(cfg, tc.hint); got != tc.want {
			t.Errorf("memoryLimit(hint %d) = %d, want %d", tc.hint, got, tc.want)
		}
	}
}
