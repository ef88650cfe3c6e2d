package setting

import (
	"fmt"
	"log/slog"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Size is a byte count read from text like "16MiB", "64M", "1GiB" or
// "8388608". K, M, G and T alone, or with "i", are powers of 1024 (as in
// rclone and restic); KB, MB, GB and TB are powers of 1000.
type Size int64

var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"k": 1 << 10, "ki": 1 << 10, "kib": 1 << 10, "kb": 1e3,
	"m": 1 << 20, "mi": 1 << 20, "mib": 1 << 20, "mb": 1e6,
	"g": 1 << 30, "gi": 1 << 30, "gib": 1 << 30, "gb": 1e9,
	"t": 1 << 40, "ti": 1 << 40, "tib": 1 << 40, "tb": 1e12,
}

var sizeRE = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)$`)

// ParseSize parses a size as described for Size.
func ParseSize(s string) (Size, error) {
	m := sizeRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, fmt.Errorf("%q is not a size: use bytes or a number with a unit, like 16MiB, 64M or 1GiB", s)
	}
	unit, ok := sizeUnits[strings.ToLower(m[2])]
	if !ok {
		return 0, fmt.Errorf("%q has an unknown unit %q: use B, KiB, MiB, GiB, TiB (or K, M, G, T), or KB, MB, GB, TB", s, m[2])
	}
	n, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a size: %w", s, err)
	}
	v := n * float64(unit)
	if v > math.MaxInt64/2 {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return Size(math.Round(v)), nil
}

// Decode implements envconfig.Decoder.
func (s *Size) Decode(v string) error {
	p, err := ParseSize(v)
	if err != nil {
		return err
	}
	*s = p
	return nil
}

// String formats the size the way people write it.
func (s Size) String() string {
	for _, u := range []struct {
		n    int64
		name string
	}{{1 << 40, "TiB"}, {1 << 30, "GiB"}, {1 << 20, "MiB"}, {1 << 10, "KiB"}} {
		if int64(s) >= u.n && int64(s)%u.n == 0 {
			return fmt.Sprintf("%d%s", int64(s)/u.n, u.name)
		}
	}
	return strconv.FormatInt(int64(s), 10)
}

// Duration is a Go duration ("90m", "1h30m") that also accepts days ("30d",
// "1d12h"). A day is 24 hours: retention runs in UTC, where days have no
// daylight-saving gaps.
type Duration time.Duration

var daysRE = regexp.MustCompile(`([0-9]+(?:\.[0-9]+)?)d`)

// ParseDuration parses a duration as described for Duration. Negative
// durations are refused.
func ParseDuration(s string) (Duration, error) {
	t := strings.TrimSpace(s)
	var bad error
	t = daysRE.ReplaceAllStringFunc(t, func(m string) string {
		n, err := strconv.ParseFloat(strings.TrimSuffix(m, "d"), 64)
		if err != nil {
			bad = err
		}
		return strconv.FormatFloat(n*24, 'f', -1, 64) + "h"
	})
	d, err := time.ParseDuration(t)
	if bad != nil || err != nil {
		return 0, fmt.Errorf("%q is not a duration: use a number with a unit, like 90m, 36h or 30d", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("%q is negative", s)
	}
	return Duration(d), nil
}

// Decode implements envconfig.Decoder.
func (d *Duration) Decode(v string) error {
	p, err := ParseDuration(v)
	if err != nil {
		return err
	}
	*d = p
	return nil
}

func (d Duration) String() string { return time.Duration(d).String() }

// Secret holds a credential. It prints as "[redacted]" through fmt and
// slog so that logging a config can never leak it.
type Secret string

func (Secret) String() string                 { return "[redacted]" }
func (Secret) GoString() string               { return `"[redacted]"` }
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Reveal returns the secret itself, for handing to an SDK.
func (s Secret) Reveal() string { return string(s) }

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }
