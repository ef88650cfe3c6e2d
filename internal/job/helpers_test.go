package job

import (
	"testing"

	"github.com/snapshot-job/snapshot-job/internal/store"
	"github.com/snapshot-job/snapshot-job/internal/store/file"
)

// fileStore is a file store rooted at dir.
func fileStore(t *testing.T, dir string) *file.Store {
	t.Helper()
	s, err := file.New(t.Context(), file.Config{Dir: dir}, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}
