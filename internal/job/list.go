package job

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/snapshot-job/snapshot-job/internal/snapname"
	"github.com/snapshot-job/snapshot-job/internal/store"
)

// listed is one line of the list verb's JSON output.
type listed struct {
	Key      string    `json:"key"`
	Size     int64     `json:"size"`
	Time     time.Time `json:"time"`     // from the name
	Modified time.Time `json:"modified"` // as the store reports it
}

// List prints this job's snapshots under the prefix, newest first: a
// table, or a JSON array when asJSON.
func (r *Runner) List(ctx context.Context, asJSON bool) (Result, error) {
	res := Result{Verb: "list"}
	if err := r.Store.Check(ctx, store.Read); err != nil {
		return res, err
	}
	snaps, err := r.snapshots(ctx)
	if err != nil {
		return res, err
	}
	out := make([]listed, 0, len(snaps))
	var total int64
	for _, o := range snaps {
		t, _ := snapname.Parse(r.Config.Prefix, r.Config.Name, o.Key)
		out = append(out, listed{Key: o.Key, Size: o.Size, Time: t, Modified: o.Modified.UTC()})
		total += o.Size
	}
	if asJSON {
		enc := json.NewEncoder(r.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return res, err
		}
	} else {
		tw := tabwriter.NewWriter(r.Stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "KEY\tSIZE\tTIME")
		for _, l := range out {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", l.Key, humanBytes(l.Size), l.Time.Format(time.RFC3339))
		}
		if err := tw.Flush(); err != nil {
			return res, err
		}
	}
	res.Outcome = fmt.Sprintf("%d snapshots", len(out))
	res.ObjectBytes = total
	r.Log.Info("listed snapshots", "count", len(out), "bytes", total, "prefix", r.Config.Prefix, "store", r.Store.String())
	return res, nil
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
