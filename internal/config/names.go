package config

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/snapshot-job/snapshot-job/internal/setting"
	"github.com/snapshot-job/snapshot-job/internal/snapname"
)

// Bounds on the object keys the job writes. They are checked at start so
// that a name no store can hold is a configuration error (exit 2), not an
// upload that fails after the whole archive was written.
const (
	// MaxKeyBytes is the longest object key S3, GCS and Azure accept.
	MaxKeyBytes = 1024
	// MaxSegmentBytes is the longest '/'-separated segment of a key: the
	// file store makes each one a file or directory name, and common
	// filesystems (ext4, XFS, NFS exports of them) stop at 255 bytes.
	MaxSegmentBytes = 255
	// MaxNameBytes is the longest SNAPSHOT_NAME: it keeps the longest
	// object name the job writes within one segment, even while the file
	// store writes it under its temporary name.
	MaxNameBytes = MaxSegmentBytes - keySuffixBytes - partialBytes
)

// partialBytes is what the file store adds to an object's name while it
// writes it: ".partial-<name>-<16 hex digits>".
const partialBytes = len(".partial-") + len("-") + 16

// encryptedExt is what an encrypted snapshot adds to snapname.Ext. The
// bounds count it always so that turning encryption on never makes a
// valid configuration invalid.
const encryptedExt = snapname.AgeExt

// keySuffixBytes is what follows the name in the longest key:
// "-YYYYMMDDTHHMMSSZ.tar.zst.age".
const keySuffixBytes = len("-") + len(snapname.Layout) + len(snapname.Ext) + len(encryptedExt)

// longestKey shows the shape of the longest key in messages.
const longestKey = "<prefix><name>-YYYYMMDDTHHMMSSZ" + snapname.Ext + encryptedExt

// checkSegments applies the rules every prefix and key follows: valid
// UTF-8 (S3, GCS and Azure keys are UTF-8), no control character (they
// break logs, listings and, as line breaks, GCS), no backslash (a
// separator on some stores and none on others), and '/'-separated
// segments that are neither empty, "." nor "..", so that no key can name
// anything outside the prefix, and at most MaxSegmentBytes each. path is
// a key, or a prefix without its trailing '/'. It returns "" or what is
// wrong.
func checkSegments(path string) string {
	if !utf8.ValidString(path) {
		return "is not valid UTF-8"
	}
	for i, r := range path {
		if unicode.IsControl(r) || r == '\\' {
			return fmt.Sprintf("holds %s at byte %d; use printable characters and '/' between folders", setting.DescribeRune(r), i)
		}
	}
	segs := strings.Split(path, "/")
	for n, seg := range segs {
		which := "a segment"
		if len(segs) > 1 {
			which = fmt.Sprintf("segment %d", n+1)
		}
		switch {
		case seg == "":
			return "has an empty segment (a '//', or a '/' at the start or end); put a single '/' between folders"
		case seg == "." || seg == "..":
			return fmt.Sprintf("has a %q segment; name every folder: relative segments could point outside the prefix", seg)
		case len(seg) > MaxSegmentBytes:
			return fmt.Sprintf("has %s of %d bytes; use at most %d bytes between two '/' (the longest file name of common filesystems)", which, len(seg), MaxSegmentBytes)
		}
	}
	return ""
}

// checkPrefix checks a normalized prefix ("" or ending in '/') and that
// the longest key written under it with name fits MaxKeyBytes.
func checkPrefix(prefix, name string) string {
	if prefix == "" {
		return ""
	}
	if p := checkSegments(strings.TrimSuffix(prefix, "/")); p != "" {
		return fmt.Sprintf("%s %s", setting.Quoted(prefix), p)
	}
	if n := len(prefix) + len(name) + keySuffixBytes; n > MaxKeyBytes {
		return fmt.Sprintf("%s is %d bytes: with SNAPSHOT_NAME=%s the longest object key (%s) would be %d bytes, over the %d-byte key limit of S3, GCS and Azure; use at most %d bytes",
			setting.Quoted(prefix), len(prefix), setting.Quoted(name), longestKey, n, MaxKeyBytes, max(0, MaxKeyBytes-keySuffixBytes-len(name)))
	}
	return ""
}

// checkName checks SNAPSHOT_NAME.
func checkName(name string) string {
	if !nameRE.MatchString(name) {
		return fmt.Sprintf("%s is not accepted; use lower-case letters, digits and '-', starting with a letter or digit", setting.Quoted(name))
	}
	if len(name) > MaxNameBytes {
		return fmt.Sprintf("is %d characters; use at most %d, so that the object name <name>-YYYYMMDDTHHMMSSZ%s%s fits in %d bytes (the longest file name of common filesystems) with the file store's temporary name around it",
			len(name), MaxNameBytes, snapname.Ext, encryptedExt, MaxSegmentBytes)
	}
	return ""
}

// checkRestoreKey checks an exact SNAPSHOT_RESTORE_KEY (not "latest").
func checkRestoreKey(key string) string {
	switch {
	case strings.HasPrefix(key, "/"):
		return fmt.Sprintf("%s starts with '/'; object keys have no leading '/': use %s", setting.Quoted(key), setting.Quoted(strings.TrimLeft(key, "/")))
	case strings.HasSuffix(key, "/"):
		return fmt.Sprintf("%s ends with '/'; name one snapshot (list shows their keys), or use latest", setting.Quoted(key))
	case len(key) > MaxKeyBytes:
		return fmt.Sprintf("is %d bytes; object keys have at most %d", len(key), MaxKeyBytes)
	}
	if p := checkSegments(key); p != "" {
		return setting.Quoted(key) + " " + p
	}
	return ""
}
