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

	// The steady part: from steadyFrom to the end. judged is false when it
	// is shorter than minSteady (why says so): the slopes of a working set
	// still growing say nothing of a leak.
	steadyFrom time.Duration
	judged     bool
	why        string

	rssKiBPerMin, rssKiBPerMinSteady   float64 // all samples, the steady part
	anonKiBPerMin, anonKiBPerMinSteady float64
	fileKiBPerMinSteady                float64
	fdPerMin, fdPerMinSteady           float64
}

// minSteady is the shortest steady part whose slopes are judged.
const minSteady = 2 * time.Minute

// steadyFrom is where the steady part of the samples starts: the later of
// the run's second half and the moment the producer's folder reached its
// working set (steadyAt, zero if never: then nothing is steady).
func steadyFrom(ss []sample, steadyAt, daemonStart time.Time) time.Duration {
	last := ss[len(ss)-1].at
	if steadyAt.IsZero() {
		return last
	}
	return max(last/2, steadyAt.Sub(daemonStart))
}

// judgeResources computes the slopes of ss (at least two samples), overall
// and from steady on.
func judgeResources(ss []sample, steady time.Duration) resources {
	first, last := ss[0], ss[len(ss)-1]
	rss := func(s sample) float64 { return float64(s.rssKiB) }
	anon := func(s sample) float64 { return float64(s.anonKiB) }
	file := func(s sample) float64 { return float64(s.fileKiB) }
	fds := func(s sample) float64 { return float64(s.fds) }
	r := resources{ok: true, first: first, last: last, over: last.at, steadyFrom: steady,
		rssKiBPerMin: slopeOf(ss, 0, rss), rssKiBPerMinSteady: slopeOf(ss, steady, rss),
		anonKiBPerMin: slopeOf(ss, 0, anon), anonKiBPerMinSteady: slopeOf(ss, steady, anon),
		fileKiBPerMinSteady: slopeOf(ss, steady, file),
		fdPerMin:            slopeOf(ss, 0, fds), fdPerMinSteady: slopeOf(ss, steady, fds)}
	switch {
	case steady >= last.at:
		r.why = "the folder never reached its working set (-files); run longer or lower -files"
	case last.at-steady < minSteady:
		r.why = fmt.Sprintf("steady for %s only, less than %s; run longer", (last.at - steady).Round(time.Second), minSteady)
	default:
		r.judged = true
	}
	return r
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
		fmt.Sprintf("%d failures without an answer retried; %d lost create answers recovered by adopting the traces; pool paused as one %d times", logs.causes["cut"], logs.recovered, logs.pauses),
		fmt.Sprintf("%d of %d connections cut (%d by reset)", proxy.drops.Load(), proxy.conns.Load(), proxy.resets.Load()))
	row("producer: writes, slow writes, renames, moves, rewrites, duplicates, deletes",
		fmt.Sprintf("uploads %.0f, links %.0f; %d uploads stopped before create (the file changed while it was sent)", final["tracesync_uploads_total"], final["tracesync_links_total"], logs.changed+logs.causes["changed"]),
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
		steady := fmt.Sprintf("steady part from %s", res.steadyFrom.Round(time.Second))
		if !res.judged {
			steady = "steady part not judged: " + res.why
		}
		row(fmt.Sprintf("RSS over %s (%s samples)", res.over.Round(time.Second), cfg.sample),
			fmt.Sprintf("slope %+.0f KiB/min; %s: %+.0f KiB/min (anon %+.0f, file-backed %+.0f)",
				res.rssKiBPerMin, steady, res.rssKiBPerMinSteady, res.anonKiBPerMinSteady, res.fileKiBPerMinSteady),
			fmt.Sprintf("start %d KiB, end %d KiB", res.first.rssKiB, res.last.rssKiB))
		row("open fds",
			fmt.Sprintf("slope %+.2f /min (steady part %+.2f)", res.fdPerMin, res.fdPerMinSteady),
			fmt.Sprintf("start %d, end %d", res.first.fds, res.last.fds))
	}

	var b strings.Builder
	b.WriteString("| fault | what happened | figure |\n|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", r[0], r[1], r[2])
	}
	return b.String()
}
