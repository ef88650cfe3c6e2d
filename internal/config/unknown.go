package config

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/kelseyhightower/envconfig"

	"github.com/snapshot-job/snapshot-job/internal/setting"
)

// KnownVariables lists every variable the job reads, in declaration order.
func KnownVariables() []string {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 0, 0, ' ', 0)
	// envconfig knows the names; its usage template is the supported way
	// to get them out.
	_ = envconfig.Usagef(setting.Prefix, &Config{}, tw, "{{range .}}{{usage_key .}}\n{{end}}")
	_ = tw.Flush()
	return strings.Fields(buf.String())
}

// isSafety reports whether name is a safety setting: one whose absence
// makes the job delete or overwrite more than it was told to (retention,
// its dry run, what a restore does about a missing snapshot or a full
// target, which paths it restores). A misspelt safety setting stops the run.
func isSafety(name string) bool {
	// A misspelt SNAPSHOT_RESTORE_PATHS would restore (and, with
	// IF_NOT_EMPTY=overwrite, replace) the whole snapshot.
	return strings.HasPrefix(name, setting.Prefix+"_RETENTION_") || strings.HasPrefix(name, setting.Prefix+"_RESTORE_IF_") ||
		name == setting.Prefix+"_RESTORE_PATHS"
}

// UnknownVariables checks the SNAPSHOT_* names of environ (os.Environ's
// format) that the job does not read. Each gets a warning naming the
// nearest known name; when that name is a plausible typo of a safety
// setting, it is a problem instead (the run stops with exit 2), unless
// allowUnknown (SNAPSHOT_ALLOW_UNKNOWN=true) turns it into a warning too.
// Names are compared without regard to case: Kubernetes keeps a
// lower-case ConfigMap key as it is, and the job would never see it.
func UnknownVariables(environ []string, allowUnknown bool) (warnings, problems []string) {
	known := KnownVariables()
	var names []string
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(strings.ToUpper(k), setting.Prefix+"_") && !slices.Contains(known, k) {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	stop := func(k, msg string) {
		if allowUnknown {
			warnings = append(warnings, msg+"; running anyway because SNAPSHOT_ALLOW_UNKNOWN=true")
			return
		}
		problems = append(problems, k+": "+msg+"; the run stops rather than ignore it: fix the name, or set SNAPSHOT_ALLOW_UNKNOWN=true to run anyway")
	}
	for _, k := range names {
		best, close := nearest(k, known)
		switch {
		case close && isSafety(best):
			stop(k, fmt.Sprintf("unknown variable %s looks like the safety setting %s", k, best))
		case close:
			warnings = append(warnings, fmt.Sprintf("unknown variable %s is ignored; did you mean %s?", k, best))
		default:
			warnings = append(warnings, fmt.Sprintf("unknown variable %s is ignored; the nearest known name is %s", k, best))
		}
	}
	return warnings, problems
}

// nearest returns the known name nearest to k, and whether k is a
// plausible typo of it: the same name in another case, at most
// 2 + len/5 edits away (a letter missed, doubled, swapped or wrong, a
// '_' dropped), or the known name without its leading words
// (SNAPSHOT_DRY_RUN for SNAPSHOT_RETENTION_DRY_RUN). A name that is merely
// the least far of all is no typo: it must not stop a run.
func nearest(k string, known []string) (string, bool) {
	rest := strings.TrimPrefix(strings.ToUpper(k), setting.Prefix+"_")
	best, dist := "", 1<<30
	for _, n := range known {
		// On a tie a safety setting wins: stopping on a typo is the
		// cheaper mistake.
		if d := editDistance(rest, strings.TrimPrefix(n, setting.Prefix+"_")); d < dist || d == dist && isSafety(n) && !isSafety(best) {
			best, dist = n, d
		}
	}
	if dist <= 2+len(rest)/5 {
		return best, true
	}
	suffix := ""
	for _, n := range known {
		if strings.HasSuffix(n, "_"+rest) && (suffix == "" || isSafety(n) && !isSafety(suffix)) {
			suffix = n
		}
	}
	if suffix != "" {
		return suffix, true
	}
	return best, false
}

// editDistance is the optimal string alignment distance: insertions,
// deletions, substitutions and swaps of neighbours count one each.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
