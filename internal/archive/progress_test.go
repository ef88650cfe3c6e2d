package archive

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/snapshot-job/snapshot-job/internal/testenv"
)

// Each verb's progress counts its own work: the content bytes a backup
// read, a restore wrote and a verify checked, each the tree's content.
func TestProgressCountsContent(t *testing.T) {
	src := t.TempDir()
	testenv.MakeTree(t, src)
	var read atomic.Int64
	data, st := archiveOf(t, src, WriteOptions{Progress: &read})
	if st.Bytes == 0 || read.Load() != st.Bytes {
		t.Fatalf("Write progress %d, archived %d content bytes", read.Load(), st.Bytes)
	}
	var checked atomic.Int64
	vst, err := Verify(t.Context(), bytes.NewReader(data), VerifyOptions{Progress: &checked})
	if err != nil {
		t.Fatal(err)
	}
	if checked.Load() != vst.Bytes || vst.Bytes != st.Bytes {
		t.Errorf("Verify progress %d, checked %d content bytes of %d", checked.Load(), vst.Bytes, st.Bytes)
	}
	var written atomic.Int64
	xst, err := Extract(t.Context(), bytes.NewReader(data), t.TempDir(), ExtractOptions{Token: "t1", noSync: true, Progress: &written})
	if err != nil {
		t.Fatal(err)
	}
	if written.Load() != xst.Bytes || xst.Bytes != st.Bytes {
		t.Errorf("Extract progress %d, restored %d content bytes of %d", written.Load(), xst.Bytes, st.Bytes)
	}
}

// The estimate a backup sizes its parts from is never below what Write
// makes, even of content that does not compress.
func TestEstimateSizeIsAnUpperBound(t *testing.T) {
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "a.pcap"), bytes.Repeat([]byte("pcap"), 100000), 0o644)
	noise := make([]byte, 3<<20)
	rand.NewChaCha8([32]byte{1}).Read(noise)
	os.WriteFile(filepath.Join(src, "noise.bin"), noise, 0o644)
	st, err := Scan(t.Context(), src, WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	data, _ := archiveOf(t, src, WriteOptions{Level: "fastest"})
	if est := EstimateSize(st); est < int64(len(data)) {
		t.Fatalf("estimate %d < archive %d", est, len(data))
	}
}
