package main

import (
	"fmt"
	"strings"
	"time"
)

// resources are the daemon's RSS and fd figures over the run.
type resources struct {
	ok          bool // at least two samples
	first, last sample
	over        time.Duration

	rssKiBPerMin, rssKiBPerMinHalf float64 // all samples, second half
	fdPerMin, fdPerMinHalf         float64
}

// summaryTable is the run as a Markdown table, one row per fault or
// figure: fault, what happened, figure (for the closing note).
func summaryTable(cfg config, d counts, v verdict, sv serverView, calls fakeCalls, haveCalls bool,
	proxy *chaosProxy, logs logStats, final promValues, res resources, files int) string {
	var rows [][3]string
	row := func(fault, happened, figure string) { rows = append(rows, [3]string{fault, happened, figure}) }
	okFail := func(ok bool) string {
		if ok {
			return "ok"
		}
		return "FAIL"
	}
	injected := func(code int) string {
		if !haveCalls {
			return "(stratix-fake's log unreadable)"
		}
		return fmt.Sprintf("%d injected (%s)", calls.status(code), calls.byStatus(code))
	}

	row(fmt.Sprintf("503 on %g of API calls", cfg.failRate),
		fmt.Sprintf("%d failed uploads/deletes retried with backoff", logs.causes["503"]), injected(503))
	row(fmt.Sprintf("429 + Retry-After %s on %g of API calls", cfg.retryAfter, cfg.rateLimitRate),
		fmt.Sprintf("%d failed uploads/deletes retried after Retry-After", logs.causes["429"]), injected(429))
	callsFig := "(stratix-fake's log unreadable)"
	if haveCalls {
		callsFig = fmt.Sprintf("%d calls answered", calls.total)
	}
	row(fmt.Sprintf("latency %s on every call", cfg.latency), "-", callsFig)
	row(fmt.Sprintf("proxy cuts %g of forwarded chunks (half by TCP reset)", cfg.dropRate),
		fmt.Sprintf("%d failures without an answer retried; %d lost create answers recovered by adopting the traces (rule 9); pool paused %d times (rule 11)", logs.causes["cut"], logs.recovered, logs.pauses),
		fmt.Sprintf("%d of %d connections cut (%d by reset)", proxy.drops.Load(), proxy.conns.Load(), proxy.resets.Load()))
	row("producer: writes, slow writes, renames, moves, rewrites, duplicates, deletes",
		fmt.Sprintf("uploads %.0f, links %.0f; %d uploads stopped before create (file changed, rule 7)", final["tracesync_uploads_total"], final["tracesync_links_total"], logs.changed+logs.causes["changed"]),
		fmt.Sprintf("written %d + %d slowly, renamed %d, moved %d, rewritten %d (%d in place), duplicated %d, deleted %d",
			d.written, d.slowWritten, d.renamed, d.moved, d.rewritten, d.inPlace, d.duplicated, d.deleted))
	row("every file present uploaded exactly once",
		okFail(v.duplicates == 0 && v.lost == 0 && v.unexpected == 0),
		fmt.Sprintf("%d files (%d contents) present, %d contents created; duplicates %d (%d live twice), lost %d, unexpected %d",
			files, v.present, v.uploaded, v.duplicates, v.liveTwice, v.lost, v.unexpected))
	row("every removed file's traces deleted (--delete-on-remove)",
		okFail(v.undeleted == 0),
		fmt.Sprintf("deleted %d of %d expected traces (%d gone contents); %d contents with traces left",
			v.deletedOK, v.toDelete, v.remoteDeleted+v.undeleted, v.undeleted))
	if res.ok {
		row(fmt.Sprintf("RSS over %s (%s samples)", res.over.Round(time.Second), cfg.sample),
			fmt.Sprintf("slope %+.0f KiB/min (second half %+.0f)", res.rssKiBPerMin, res.rssKiBPerMinHalf),
			fmt.Sprintf("start %d KiB, end %d KiB", res.first.rssKiB, res.last.rssKiB))
		row("open fds",
			fmt.Sprintf("slope %+.2f /min (second half %+.2f)", res.fdPerMin, res.fdPerMinHalf),
			fmt.Sprintf("start %d, end %d", res.first.fds, res.last.fds))
	}

	var b strings.Builder
	b.WriteString("| fault | what happened | figure |\n|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", r[0], r[1], r[2])
	}
	return b.String()
}
