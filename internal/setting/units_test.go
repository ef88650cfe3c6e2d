package setting

import (
	"fmt"
	"testing"
	"time"
)

func fmtSprint(f string, v any) string { return fmt.Sprintf(f, v) }

func TestParseSize(t *testing.T) {
	for in, want := range map[string]Size{
		"0": 0, "8388608": 8 << 20, "16MiB": 16 << 20, "64M": 64 << 20, "64Mi": 64 << 20, "1GiB": 1 << 30,
		"1g": 1 << 30, "1.5GiB": 3 << 29, "10MB": 10_000_000, "2 TiB": 2 << 40, "512KiB": 512 << 10, "100B": 100,
	} {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-5MiB", "16 PB", "1e9", "sixteen", "16MiBs"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) accepted", in)
		}
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"0": 0, "90m": 90 * time.Minute, "30d": 30 * 24 * time.Hour, "1d12h": 36 * time.Hour,
		"1.5d": 36 * time.Hour, "2h30m": 150 * time.Minute, "7d": 7 * 24 * time.Hour,
	} {
		got, err := ParseDuration(in)
		if err != nil || time.Duration(got) != want {
			t.Errorf("ParseDuration(%q) = %s, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"", "30", "d", "-1h", "1w", "thirty days", "1dd"} {
		if _, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) accepted", in)
		}
	}
}

func TestSizeString(t *testing.T) {
	for s, want := range map[Size]string{16 << 20: "16MiB", 1 << 30: "1GiB", 1000: "1000", 1536: "1536", 3 << 10: "3KiB"} {
		if got := s.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int64(s), got, want)
		}
	}
}
