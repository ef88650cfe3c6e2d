package setting

import (
	"fmt"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// QuoteList lists accepted values for a message, naming "" as unset.
func QuoteList(vs []string) string {
	var q []string
	for _, v := range vs {
		if v == "" {
			q = append(q, `"" (unset)`)
			continue
		}
		q = append(q, v)
	}
	return strings.Join(q, ", ")
}

// Offending names the first character of s that re's character class
// refuses, or says that s is too long.
func Offending(s string, re *regexp.Regexp) string {
	for i, r := range s {
		if !re.MatchString(string(r)) {
			return fmt.Sprintf("holds %s at byte %d", DescribeRune(r), i)
		}
	}
	return fmt.Sprintf("is %d bytes long", len(s))
}

// FirstSpace returns the first white space or control character of s and
// its byte offset, or -1.
func FirstSpace(s string) (rune, int) {
	for i, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return r, i
		}
	}
	return 0, -1
}

// DescribeRune names r the way a person would look for it in a value.
func DescribeRune(r rune) string {
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

// Quoted quotes s, shortened when long: a 300-character value adds
// nothing to an error message but noise.
func Quoted(s string) string {
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
