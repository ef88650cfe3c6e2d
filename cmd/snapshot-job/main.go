// Command snapshot-job backs up a snapshot volume to object storage and
// restores it, as a Kubernetes Job. Configuration comes only from
// SNAPSHOT_* environment variables; the first argument picks the verb.
// This package wires the parts together and turns errors into exit codes.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/snapshot-job/snapshot-job/internal/config"
	"github.com/snapshot-job/snapshot-job/internal/job"
	"github.com/snapshot-job/snapshot-job/internal/metrics"
	"github.com/snapshot-job/snapshot-job/internal/setting"
	"github.com/snapshot-job/snapshot-job/internal/store"
)

// Set with -ldflags "-X main.version=... -X main.commit=...".
var version, commit string

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage: snapshot-job [backup|restore|list|prune|verify|version] [--json]

Configuration comes from SNAPSHOT_* environment variables; see docs/configuration.md.
Without a verb, SNAPSHOT_MODE picks one (default backup).
`

func run(args []string, stdout, stderr io.Writer) int {
	verb, asJSON, argErr := parseArgs(args)
	if verb == "help" {
		fmt.Fprint(stdout, usage)
		return 0
	}
	if verb == "" && strings.TrimSpace(os.Getenv("SNAPSHOT_MODE")) == "version" {
		verb = "version" // needs no configuration either way
	}
	v, c := buildInfo()
	if verb == "version" {
		fmt.Fprintf(stdout, "snapshot-job %s (commit %s, %s, %s/%s)\n", v, c, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return 0
	}
	cfg, warnings, cfgErr := config.Load()
	log := newLogger(cfg, stderr)
	for _, w := range warnings {
		log.Warn(w)
	}
	if cfg.ProviderDetected {
		log.Info("storage provider detected from the settings present (SNAPSHOT_CLOUD_PROVIDER is unset)", "provider", cfg.Provider)
	}
	if verb == "" {
		verb = cfg.Mode
	}
	if !slices.Contains(config.Verbs, verb) {
		verb = "backup"
	}
	log = log.With("verb", verb)
	start := time.Now()
	res := job.Result{Verb: verb}
	if err := errors.Join(argErr, cfgErr); err != nil {
		return finish(log, cfg, res, err, nil, start)
	}
	if verb == "list" && cfg.LogFormat == "json" {
		asJSON = true
	}

	ctx, stop := signalContext(log)
	defer stop()
	cfg, planBackup, err := planMemory(cfg, verb, log)
	if err != nil {
		return finish(log, cfg, res, err, ctx, start)
	}
	store, err := newStore(ctx, cfg, log, v)
	if err != nil {
		return finish(log, cfg, res, err, ctx, start)
	}
	r := &job.Runner{Config: cfg, Store: store, Log: log, Stdout: stdout, Version: v, PlanMemory: planBackup,
		Exclude: storeDirs(cfg)}
	switch verb {
	case "backup":
		res, err = r.Backup(ctx)
	case "restore":
		res, err = r.Restore(ctx)
	case "list":
		res, err = r.List(ctx, asJSON)
	case "prune":
		res, err = r.Prune(ctx)
	case "verify":
		res, err = r.Verify(ctx)
	}
	return finish(log, cfg, res, err, ctx, start)
}

// storeDirs are the directories a file store writes into: its root and
// the directory of this job's objects (created on the first upload). A
// backup leaves them out when they lie inside the source, or each
// snapshot would hold its own half-written file and all earlier ones.
func storeDirs(cfg config.Config) []string {
	if cfg.Provider != "file" || cfg.File.Dir == "" {
		return nil
	}
	objects := filepath.Dir(filepath.Join(cfg.File.Dir, filepath.FromSlash(cfg.Prefix+"x")))
	return []string{cfg.File.Dir, objects}
}

func parseArgs(args []string) (verb string, asJSON bool, err error) {
	for _, a := range args {
		switch {
		case a == "--json":
			asJSON = true
		case a == "-h" || a == "--help" || a == "help":
			return "help", false, nil
		case strings.HasPrefix(a, "-"):
			return "", false, fmt.Errorf("%w: unknown flag %q; the only flag is --json (for list), everything else is an environment variable", setting.ErrInvalid, a)
		case verb != "":
			return "", false, fmt.Errorf("%w: more than one verb (%q, %q)", setting.ErrInvalid, verb, a)
		case !slices.Contains(config.Verbs, a):
			return "", false, fmt.Errorf("%w: unknown verb %q; use one of %s", setting.ErrInvalid, a, strings.Join(config.Verbs, ", "))
		default:
			verb = a
		}
	}
	return verb, asJSON, nil
}

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: roundAttr}
	if cfg.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// roundAttr keeps every number of every log line, whichever package logs
// it, at the precision a person reads: durations to the millisecond,
// fractions (seconds, rates, ratios, percentages) to three decimals at
// most. The packages round rates to one decimal themselves.
func roundAttr(_ []string, a slog.Attr) slog.Attr {
	switch a.Value.Kind() {
	case slog.KindFloat64:
		if f := a.Value.Float64(); !math.IsInf(f, 0) && !math.IsNaN(f) {
			a.Value = slog.Float64Value(roundMillis(f))
		}
	case slog.KindDuration:
		a.Value = slog.DurationValue(a.Value.Duration().Round(time.Millisecond))
	}
	return a
}

// signalled is the cancellation cause when SIGTERM or SIGINT arrives.
type signalled struct{ sig os.Signal }

func (s *signalled) Error() string { return "stopped by " + s.sig.String() }

func signalCode(sig os.Signal) int {
	if sig == syscall.SIGINT {
		return 130
	}
	return 143
}

// signalContext cancels on the first SIGTERM or SIGINT, so that every
// part cleans up (aborted uploads, removed staging). A second signal exits
// at once: the operator insisted.
func signalContext(log *slog.Logger) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		sig, ok := <-ch
		if !ok {
			return
		}
		log.Warn("signal received: stopping and cleaning up", "signal", sig.String())
		cancel(&signalled{sig})
		if sig, ok = <-ch; ok {
			log.Error("second signal: exiting without cleanup", "signal", sig.String(), "exit_code", signalCode(sig))
			os.Exit(signalCode(sig))
		}
	}()
	return ctx, func() {
		signal.Stop(ch)
		close(ch)
		cancel(nil)
	}
}

// finish logs the outcome, writes the termination message, pushes the
// metrics and returns the exit code. A failure always ends with one error
// line saying what failed and what to do.
func finish(log *slog.Logger, cfg config.Config, res job.Result, err error, ctx context.Context, start time.Time) int {
	end := time.Now()
	res.Seconds = roundMillis(end.Sub(start).Seconds())
	code, hint := classify(ctx, res.Verb, err)
	if code != 0 && res.Outcome == "" {
		// A verb names its outcome only when it gets that far; a backup
		// whose pruning failed keeps "stored", which is true.
		res.Outcome = "failed"
		if code == signalCode(syscall.SIGTERM) || code == signalCode(syscall.SIGINT) {
			res.Outcome = "stopped"
		}
	}
	ids := requestIDs(err)
	writeTermination(cfg.TerminationLog, res, code, err, ids)
	pushMetrics(log, cfg, res, code, start, end)
	if code == 0 {
		attrs := []any{"outcome", res.Outcome, "seconds", res.Seconds, "exit_code", 0}
		if res.Key != "" {
			attrs = append(attrs, "key", res.Key)
		}
		log.Info(res.Verb+" finished", attrs...)
		return 0
	}
	attrs := []any{"exit_code", code, "hint", hint}
	if ids.RequestID != "" {
		attrs = append(attrs, "request_id", ids.RequestID)
	}
	if ids.HostID != "" {
		attrs = append(attrs, "host_id", ids.HostID)
	}
	log.Error(res.Verb+" failed: "+oneLine(err.Error()), attrs...)
	return code
}

// pushMetrics pushes the run's result when a Pushgateway is set, before
// the final line so that a failure still ends with its error line. It
// runs on a context of its own, bounded by metrics.Timeout: a SIGTERM'd
// run has cancelled the run's context and must still report, and a
// second signal still exits at once. A failed push is a warning: it never
// changes the run's outcome or exit code.
func pushMetrics(log *slog.Logger, cfg config.Config, res job.Result, code int, start, end time.Time) {
	m := cfg.Metrics
	if !m.Enabled() || len(m.Problems()) > 0 {
		return // an invalid URL is already this run's configuration error
	}
	run := metrics.Run{
		Verb: res.Verb, Snapshot: cfg.Name, Start: start, End: end, ExitCode: code,
		SourceBytes: res.SourceBytes, StoredBytes: res.ObjectBytes, Entries: res.Entries,
		Deleted: len(res.Deleted), Kept: res.Kept,
	}
	if err := metrics.Push(context.Background(), m, run); err != nil {
		log.Warn("metrics not pushed: "+oneLine(err.Error()), "pushgateway", m.Redacted(), "exit_code", code,
			"hint", "the run's result and exit code are unchanged; check SNAPSHOT_METRICS_PUSHGATEWAY_URL and that the Pushgateway is reachable from the pod (a push gives up after "+metrics.Timeout.String()+")")
		return
	}
	log.Info("metrics pushed", "pushgateway", m.Redacted(), "job", m.Job)
}

// storeRequest is what a store's support needs to find a failed request
// in its logs. It goes in fields of its own: inside the message it would
// bury what failed under a hundred characters of identifiers.
type storeRequest struct {
	RequestID string `json:"request_id,omitempty"`
	HostID    string `json:"host_id,omitempty"`
}

func requestIDs(err error) storeRequest {
	id, host := store.RequestIDs(err)
	return storeRequest{RequestID: id, HostID: host}
}

// roundMillis rounds seconds to milliseconds: nobody reads the digits
// after, and floats print them as noise (6.9916404100000005).
func roundMillis(f float64) float64 { return math.Round(f*1000) / 1000 }

// writeTermination writes the one-line JSON result Kubernetes shows in
// `kubectl describe pod`. It is capped at the kubelet's 4096 bytes, and
// skipped when the file cannot be written (outside a pod).
func writeTermination(path string, res job.Result, code int, err error, ids storeRequest) {
	if path == "" {
		return
	}
	msg := struct {
		job.Result
		ExitCode int    `json:"exit_code"`
		Error    string `json:"error,omitempty"`
		storeRequest
	}{Result: res, ExitCode: code, storeRequest: ids}
	if err != nil {
		msg.Error = oneLine(err.Error())
	}
	if len(msg.Deleted) > 20 {
		msg.Deleted = append(msg.Deleted[:20:20], fmt.Sprintf("... and %d more", len(msg.Deleted)-20))
	}
	b, jerr := json.Marshal(msg)
	if jerr != nil {
		return
	}
	if len(b) > 4000 {
		msg.Error = msg.Error[:min(len(msg.Error), 1000)] + "..."
		msg.Deleted = nil
		b, _ = json.Marshal(msg)
	}
	_ = os.WriteFile(path, append(b, '\n'), 0o644)
}

func buildInfo() (string, string) {
	v, c := version, commit
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && c == "" && len(s.Value) >= 12 {
				c = s.Value[:12]
			}
		}
	}
	if v == "" {
		v = "dev"
	}
	if c == "" {
		c = "unknown"
	}
	return v, c
}
