// Package snapname formats and recognises snapshot object keys:
// <prefix><name>-<YYYYMMDDTHHMMSSZ>.tar.zst, in UTC, and .tar.zst.age for
// encrypted snapshots. Both are one series: list, latest and retention
// treat them alike.
package snapname

import (
	"strings"
	"time"
)

// Layout is the time format inside a key.
const Layout = "20060102T150405Z"

// Ext ends every snapshot key, and AgeExt, appended to it, every
// encrypted one.
const (
	Ext    = ".tar.zst"
	AgeExt = ".age"
)

// Key returns the key of the snapshot named name taken at t.
// prefix must be empty or end in '/'.
func Key(prefix, name string, t time.Time) string {
	return prefix + name + "-" + t.UTC().Format(Layout) + Ext
}

// EncryptedKey is Key for an encrypted snapshot.
func EncryptedKey(prefix, name string, t time.Time) string {
	return Key(prefix, name, t) + AgeExt
}

// Encrypted reports whether key names an encrypted snapshot.
func Encrypted(key string) bool { return strings.HasSuffix(key, Ext+AgeExt) }

// Parse reports whether key is a snapshot of this name directly under
// prefix, and its time. Anything else (other names, sub-folders, copies
// with extra suffixes, a different prefix that merely starts the same way)
// does not match.
func Parse(prefix, name, key string) (time.Time, bool) {
	rest, ok := strings.CutPrefix(key, prefix+name+"-")
	if !ok {
		return time.Time{}, false
	}
	rest = strings.TrimSuffix(rest, AgeExt)
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
