package testenv

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"testing"
)

func TestGenerateNodeDataset(t *testing.T) {
	dir := t.TempDir()
	ds, err := GenerateNodeDataset(dir, 32<<20, 30)
	if err != nil {
		t.Fatal(err)
	}
	if ds.Bytes != 32<<20 {
		t.Errorf("%d bytes, want %d", ds.Bytes, 32<<20)
	}
	var sizes []int64
	for i := range 30 {
		var n int64
		err := filepath.WalkDir(filepath.Join(dir, fmt.Sprintf("node-%02d", i)), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.Type().IsRegular() {
				fi, err := d.Info()
				if err != nil {
					return err
				}
				n += fi.Size()
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, n)
	}
	// Equal pcaps per folder; the events and the last, shorter pcap make
	// the folders differ by a few percent at most.
	lo, hi := slices.Min(sizes), slices.Max(sizes)
	if float64(hi-lo) > 0.05*float64(hi) {
		t.Errorf("node folders between %d and %d bytes: not about 1/30 each", lo, hi)
	}
	if _, err := GenerateNodeDataset(t.TempDir(), 32<<20, 0); err == nil {
		t.Error("0 node folders accepted")
	}
}
