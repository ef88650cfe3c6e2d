// Package setting holds what every group of settings shares: the
// variables' common prefix, the configuration error (exit 2), the value
// types (sizes, durations, secrets) and the wording of problems.
//
// internal/config assembles the job's settings and those of each store
// provider; the providers describe and check their own settings with
// this package, so that neither needs the other.
package setting

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Prefix is the common prefix of every variable.
const Prefix = "SNAPSHOT"

// ErrInvalid marks configuration errors (exit code 2).
var ErrInvalid = errors.New("invalid configuration")

// Invalid joins problems into one error wrapping ErrInvalid, or returns
// nil when there are none.
func Invalid(problems []string) error {
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrInvalid, strings.Join(problems, "; "))
}

// Problems collects what is wrong with a group of variables, each entry
// "<variable>: <what is wrong, and what to use instead>", in the order
// found. Names passed to its methods are completed with the group's
// prefix.
type Problems struct {
	prefix string
	list   []string
}

// NewProblems returns a collector for the variables whose names start
// with prefix, e.g. "SNAPSHOT_AWS_".
func NewProblems(prefix string) *Problems { return &Problems{prefix: prefix} }

// Add records a problem of the variable name.
func (p *Problems) Add(name, format string, args ...any) {
	p.list = append(p.list, p.prefix+name+": "+fmt.Sprintf(format, args...))
}

// Check records problem, unless it is "".
func (p *Problems) Check(name, problem string) {
	if problem != "" {
		p.Add(name, "%s", problem)
	}
}

// OneOf records a problem unless value is one of allowed.
func (p *Problems) OneOf(name, value string, allowed []string) {
	if !slices.Contains(allowed, value) {
		p.Add(name, "%q is not accepted; use one of %s", value, QuoteList(allowed))
	}
}

// OneWord records a problem when value holds white space or a control
// character. Credentials, ARNs, IDs and URLs never do: one inside (a key
// pasted across two lines) would only be refused later, as rejected
// credentials. The value is not echoed: it may be a secret.
func (p *Problems) OneWord(name, value string) {
	if r, i := FirstSpace(value); i >= 0 {
		p.Add(name, "holds %s at byte %d; the value must be one word (surrounding white space is removed, inner white space is not)", DescribeRune(r), i)
	}
}

// List returns the problems recorded.
func (p *Problems) List() []string { return p.list }
