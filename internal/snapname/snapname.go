// Package snapname formats and recognises snapshot object keys:
// <prefix><name>-<YYYYMMDDTHHMMSSZ>.tar.zst, in UTC.
package snapname

import (
	"strings"
	"time"
)

// Layout is the time format inside a key.
const Layout = "20060102T150405Z"

// Ext ends every snapshot key.
const Ext = ".tar.zst"

// Key returns the key of the snapshot named name taken at t.
// prefix must be empty or end in '/'.
func Key(prefix, name string, t time.Time) string {
	return prefix + name + "-" + t.UTC().Format(Layout) + Ext
}

// Parse reports whether key is a snapshot of this name directly under
// prefix, and its time. Anything else (other names, sub-folders, copies
// with extra suffixes, a different prefix that merely starts the same way)
// does not match.
func Parse(prefix, name, key string) (time.Time, bool) {
	rest, ok := strings.CutPrefix(key, prefix+name+"-")
	if !ok {
		return time.Time{}, false
	}
	stamp, ok := strings.CutSuffix(rest, Ext)
	if !ok || len(stamp) != len(Layout) {
		return time.Time{}, false
	}
	t, err := time.Parse(Layout, stamp)
	if err != nil {
		return time.Time{}, false
	}
	// time.Parse accepts some forms Format never produces; only the
	// canonical spelling is ours.
	if t.Format(Layout) != stamp {
		return time.Time{}, false
	}
	return t, true
}
