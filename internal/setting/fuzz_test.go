package setting

import (
	"strings"
	"testing"
	"time"
)

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"16MiB", "64M", "1GiB", "8388608", "1.5g", "10 MB", "", "-1", "1e9", "99999999999999999999TiB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err != nil {
			if !strings.Contains(err.Error(), "size") && !strings.Contains(err.Error(), "unit") && !strings.Contains(err.Error(), "large") {
				t.Fatalf("error does not say what is wrong: %v", err)
			}
			return
		}
		if n < 0 {
			t.Fatalf("ParseSize(%q) = %d, negative", s, n)
		}
		// What String prints parses back to the same size.
		if m, err := ParseSize(n.String()); err != nil || m != n {
			t.Fatalf("ParseSize(%q) = %d; ParseSize(%q) = %d, %v", s, n, n.String(), m, err)
		}
	})
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"30d", "90m", "1d12h", "1.5d", "0", "-1h", "d", "1dd", "9999999999d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err != nil {
			return
		}
		if d < 0 {
			t.Fatalf("ParseDuration(%q) = %s, negative", s, time.Duration(d))
		}
		if !strings.Contains(s, "d") {
			if g, err := time.ParseDuration(strings.TrimSpace(s)); err != nil || Duration(g) != d {
				t.Fatalf("ParseDuration(%q) = %s, differs from time.ParseDuration", s, d)
			}
		}
	})
}
