package config

import (
	"fmt"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

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
// bounds count it now so that turning encryption on never makes a valid
// configuration invalid.
const encryptedExt = ".age"

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
			return fmt.Sprintf("holds %s at byte %d; use printable characters and '/' between folders", describeRune(r), i)
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
		return fmt.Sprintf("%s %s", quoted(prefix), p)
	}
	if n := len(prefix) + len(name) + keySuffixBytes; n > MaxKeyBytes {
		return fmt.Sprintf("%s is %d bytes: with SNAPSHOT_NAME=%s the longest object key (%s) would be %d bytes, over the %d-byte key limit of S3, GCS and Azure; use at most %d bytes",
			quoted(prefix), len(prefix), quoted(name), longestKey, n, MaxKeyBytes, max(0, MaxKeyBytes-keySuffixBytes-len(name)))
	}
	return ""
}

// checkName checks SNAPSHOT_NAME.
func checkName(name string) string {
	if !nameRE.MatchString(name) {
		return fmt.Sprintf("%s is not accepted; use lower-case letters, digits and '-', starting with a letter or digit", quoted(name))
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
		return fmt.Sprintf("%s starts with '/'; object keys have no leading '/': use %s", quoted(key), quoted(strings.TrimLeft(key, "/")))
	case strings.HasSuffix(key, "/"):
		return fmt.Sprintf("%s ends with '/'; name one snapshot (list shows their keys), or use latest", quoted(key))
	case len(key) > MaxKeyBytes:
		return fmt.Sprintf("is %d bytes; object keys have at most %d", len(key), MaxKeyBytes)
	}
	if p := checkSegments(key); p != "" {
		return quoted(key) + " " + p
	}
	return ""
}

// Characters of the names that go into URLs, host names and signatures.
// They are as loose as the S3- and Azure-compatible stores allow (MinIO
// and Ceph accept upper case and '_' in buckets; Azurite takes any
// account name), and still refuse what can never work: white space,
// control characters, '/' and the other URL delimiters.
var (
	// bucketRE admits AWS names and the relaxed ones of Ceph RGW (up to
	// 255 bytes, upper case, '_').
	bucketRE  = regexp.MustCompile(`^[A-Za-z0-9._-]{1,255}$`)
	regionRE  = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
	accountRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	// Azure's own container rule is checked by the azblob package; this
	// only refuses what no Azure-compatible store accepts.
	containerRE = regexp.MustCompile(`^[A-Za-z0-9$_.-]+$`)
)

// checkBucket checks SNAPSHOT_AWS_BUCKET. An access point ARN is
// accepted as the SDK takes it in place of a bucket name.
func checkBucket(b string) string {
	if strings.HasPrefix(b, "arn:") {
		if r, i := firstSpace(b); i >= 0 {
			return fmt.Sprintf("%q holds %s at byte %d", b, describeRune(r), i)
		}
		return ""
	}
	if bucketRE.MatchString(b) {
		return ""
	}
	if i := strings.IndexByte(b, '/'); i >= 0 {
		return fmt.Sprintf("%s holds '/'; a bucket name has no folders: put %s in SNAPSHOT_CLOUD_PREFIX and %s in SNAPSHOT_AWS_BUCKET",
			quoted(b), quoted(b[i+1:]+"/"), quoted(b[:i]))
	}
	return fmt.Sprintf("%s %s; a bucket name has at most 255 letters, digits, '.', '-' and '_' (or is an access point ARN, arn:...)", quoted(b), offending(b, bucketRE))
}

func checkRegion(r string) string {
	if regionRE.MatchString(r) {
		return ""
	}
	return fmt.Sprintf("%s %s; a region has only letters, digits, '-', '_' and '.', like eu-west-1 (S3-compatible stores mostly take us-east-1)", quoted(r), offending(r, regionRE))
}

func checkAccount(a string) string {
	if accountRE.MatchString(a) {
		return ""
	}
	if strings.Contains(a, ".") {
		return fmt.Sprintf("%s is a host name; use the storage account's name alone (%s), and SNAPSHOT_AZBLOB_ENDPOINT for a non-default endpoint", quoted(a), quoted(a[:strings.IndexByte(a, '.')]))
	}
	return fmt.Sprintf("%s %s; a storage account name has only letters and digits", quoted(a), offending(a, accountRE))
}

func checkContainer(c string) string {
	if containerRE.MatchString(c) {
		return ""
	}
	if i := strings.IndexByte(c, '/'); i >= 0 {
		return fmt.Sprintf("%s holds '/'; a container has no folders: put %s in SNAPSHOT_CLOUD_PREFIX and %s in SNAPSHOT_AZBLOB_CONTAINER",
			quoted(c), quoted(c[i+1:]+"/"), quoted(c[:i]))
	}
	return fmt.Sprintf("%s %s; a container name has only lower-case letters, digits and '-'", quoted(c), offending(c, containerRE))
}

// offending names the first character of s that re's character class
// refuses, or says that s is too long.
func offending(s string, re *regexp.Regexp) string {
	for i, r := range s {
		if !re.MatchString(string(r)) {
			return fmt.Sprintf("holds %s at byte %d", describeRune(r), i)
		}
	}
	return fmt.Sprintf("is %d bytes long", len(s))
}

// firstSpace returns the first white space or control character of s and
// its byte offset, or -1.
func firstSpace(s string) (rune, int) {
	for i, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return r, i
		}
	}
	return 0, -1
}

func describeRune(r rune) string {
	switch r {
	case ' ':
		return "a space"
	case '\t':
		return "a tab"
	case '\n':
		return "a line break"
	case '\r':
		return "a carriage return"
	case '\\':
		return "a backslash"
	}
	if unicode.IsControl(r) || unicode.IsSpace(r) || !unicode.IsPrint(r) {
		return fmt.Sprintf("the character %U", r)
	}
	return fmt.Sprintf("%q", r)
}

// quoted quotes s, shortened when long: a 300-character value adds
// nothing to an error message but noise.
func quoted(s string) string {
	const keep = 40
	if len(s) <= keep+8 {
		return fmt.Sprintf("%q", s)
	}
	cut := keep
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%q... (%d bytes)", s[:cut], len(s))
}
