package job

import (
	"bytes"
	"testing"

	"github.com/snapshot-job/snapshot-job/internal/archive"
)

func mustScan(t *testing.T, dir string) archive.Stats {
	t.Helper()
	st, err := archive.Scan(t.Context(), dir, archive.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func mustWrite(t *testing.T, buf *bytes.Buffer, dir string) int64 {
	t.Helper()
	if _, err := archive.Write(t.Context(), buf, dir, archive.WriteOptions{Level: "fastest"}); err != nil {
		t.Fatal(err)
	}
	return int64(buf.Len())
}
