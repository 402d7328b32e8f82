package main

// scale_summary.go prints the scale figure's closing table: one row per
// figure, a column (and its load average) per tree, and issue 19's target.

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// summaryRow is one figure: its name, a cell per tree, and the target.
type summaryRow struct {
	figure string
	cells  []string // one per tree, each with its load average
	target string
}

func printScaleSummary(results []treeResult) {
	if len(results) == 0 {
		return
	}
	base := results[0]
	var rows []summaryRow
	add := func(figure, target string, cell func(r treeResult) (string, string)) {
		row := summaryRow{figure: figure, target: target}
		for _, r := range results {
			v, load := cell(r)
			if load != "" {
				v += " (load " + load + ")"
			}
			row.cells = append(row.cells, v)
		}
		rows = append(rows, row)
	}
	add("tree generation", "", func(r treeResult) (string, string) {
		if r.reused {
			return fmt.Sprintf("reused, checked in %s", r.gen.Round(time.Millisecond)), ""
		}
		return r.gen.Round(time.Millisecond).String(), r.genLoad
	})
	add("first backfill, files/s", "", func(r treeResult) (string, string) {
		return backfillRate(r), r.backfills[len(r.backfills)-1].load
	})
	add("files/s ratio to the baseline", ">= 0.9", func(r treeResult) (string, string) {
		return fmt.Sprintf("%.2f", medianRate(r)/medianRate(base)), ""
	})
	if len(base.after) > 0 {
		both := base
		both.backfills = append(slices.Clone(base.backfills), base.after...)
		again := base
		again.backfills = base.after
		add("baseline again, after the large tree: files/s", "", func(r treeResult) (string, string) {
			if r.tree != base.tree {
				return "", ""
			}
			return backfillRate(again), again.backfills[len(again.backfills)-1].load
		})
		add("files/s ratio to the baseline's runs before and after (median of all)", ">= 0.9", func(r treeResult) (string, string) {
			if r.tree == base.tree {
				r = both
			}
			return fmt.Sprintf("%.2f", medianRate(r)/medianRate(both)), ""
		})
	}
	add("first backfill, peak RssAnon", "<= 64 MiB", func(r treeResult) (string, string) {
		return medianKiB(r.backfills, func(b scaleRun) int64 { return b.mem.rssAnon }), ""
	})
	add("first backfill, peak RssFile / VmHWM", "", func(r treeResult) (string, string) {
		return medianKiB(r.backfills, func(b scaleRun) int64 { return b.mem.rssFile }) + " / " +
			medianKiB(r.backfills, func(b scaleRun) int64 { return b.mem.vmHWM }), ""
	})
	add("first backfill, tracesync CPU-µs a file", "", func(r treeResult) (string, string) {
		v := make([]float64, len(r.backfills))
		for i, b := range r.backfills {
			v[i] = float64(b.cpu.Microseconds()) / float64(r.tree.files)
		}
		return fmt.Sprintf("%.0f", median(v)), ""
	})
	add("state, bytes a tracked file: apparent / on disk", "<= 200", func(r treeResult) (string, string) {
		return fmt.Sprintf("%.0f / %.0f B", perFile(r.apparent, r.tree), perFile(r.disk, r.tree)), r.stateLoad
	})
	add("the same after `state compact`", "<= 200", func(r treeResult) (string, string) {
		return fmt.Sprintf("%.0f / %.0f B (compact %s)", perFile(r.compApparent, r.tree), perFile(r.compDisk, r.tree), r.compactWall.Round(100*time.Millisecond)), ""
	})
	add("re-run, unchanged: wall, µs a file (each run)", "", func(r treeResult) (string, string) {
		walls := runWalls(r.reruns)
		return fmt.Sprintf("median %s, %.2f µs (%s)", medianDuration(walls).Round(time.Millisecond), usPerFile(medianDuration(walls), r.tree), durations(walls)), r.reruns[len(r.reruns)-1].load
	})
	add("re-run warm (runs 2..), µs a file", "<= 10 µs", func(r treeResult) (string, string) {
		walls := runWalls(r.reruns)
		if len(walls) < 2 {
			return "n/a (one re-run)", ""
		}
		return fmt.Sprintf("%.2f µs", usPerFile(medianDuration(walls[1:]), r.tree)), ""
	})
	add("re-run, peak RssAnon", "", func(r treeResult) (string, string) {
		return medianKiB(r.reruns, func(b scaleRun) int64 { return b.mem.rssAnon }), ""
	})
	add("run: first scan, µs a file", "same as re-run", func(r treeResult) (string, string) {
		return fmt.Sprintf("%s, %.2f µs", r.daemon.firstScan.Round(time.Millisecond), usPerFile(r.daemon.firstScan, r.tree)), r.daemon.scanLoad
	})
	add("run: RssAnon after the first scan / its peak until then", "<= 64 MiB", func(r treeResult) (string, string) {
		return mib(r.daemon.anonAfter) + " / " + mib(r.daemon.scanPeak.rssAnon), ""
	})
	add("run: peak RssAnon until quiet / to the end of idle / with status and files calls", "", func(r treeResult) (string, string) {
		d := r.daemon
		return fmt.Sprintf("%s (quiet %s after the scan) / %s / %s", mib(d.quietPeak.rssAnon), d.quietAfter.Round(100*time.Millisecond), mib(d.idlePeak.rssAnon), mib(d.peak.rssAnon)), ""
	})
	add("run idle: context switches/s, CPU", "<= 5/s, <= 0.1%", func(r treeResult) (string, string) {
		return fmt.Sprintf("%.1f/s, %.3f%% over %s", r.daemon.switchesPS, r.daemon.cpuPct, r.daemon.idle), r.daemon.idleLoad
	})
	add("status, daemon stopped / up (median)", "< 1 s", func(r treeResult) (string, string) {
		return medianDuration(r.statusDown).Round(time.Millisecond).String() + " / " + medianDuration(r.daemon.statusUp).Round(time.Millisecond).String(), r.statusLoad
	})
	add("files --state quarantined, stopped / up (median)", "< 1 s", func(r treeResult) (string, string) {
		return fmt.Sprintf("%s / %s (%d rows)", medianDuration(r.filesDown).Round(time.Millisecond), medianDuration(r.daemon.filesUp).Round(time.Millisecond), r.listedDown), ""
	})

	fmt.Println("summary (figures of this run; the load average is the machine's when the figure was taken):")
	fmt.Println()
	header := []string{"figure"}
	for _, r := range results {
		header = append(header, fmt.Sprintf("%s files, %s folders", thousands(r.tree.files), thousands(r.tree.dirs)))
	}
	header = append(header, "target (issue 19)")
	fmt.Println("| " + strings.Join(header, " | ") + " |")
	fmt.Println("|" + strings.Repeat("---|", len(header)))
	for _, row := range rows {
		fmt.Println("| " + strings.Join(slices.Concat([]string{row.figure}, row.cells, []string{row.target}), " | ") + " |")
	}
}

func runWalls(runs []scaleRun) []time.Duration {
	w := make([]time.Duration, len(runs))
	for i, b := range runs {
		w[i] = b.wall
	}
	return w
}

func medianRate(r treeResult) float64 {
	v := make([]float64, len(r.backfills))
	for i, b := range r.backfills {
		v[i] = float64(r.tree.files) / b.wall.Seconds()
	}
	return median(v)
}

// backfillRate is the files/s of the first backfills: the median and each
// run's, or the one run's.
func backfillRate(r treeResult) string {
	if len(r.backfills) == 1 {
		b := r.backfills[0]
		return fmt.Sprintf("%.0f (%s, one run)", float64(r.tree.files)/b.wall.Seconds(), b.wall.Round(100*time.Millisecond))
	}
	each := make([]string, len(r.backfills))
	for i, b := range r.backfills {
		each[i] = fmt.Sprintf("%.0f", float64(r.tree.files)/b.wall.Seconds())
	}
	return fmt.Sprintf("median %.0f (%s)", medianRate(r), strings.Join(each, " / "))
}

func medianKiB(runs []scaleRun, get func(scaleRun) int64) string {
	v := make([]float64, len(runs))
	for i, b := range runs {
		v[i] = float64(get(b))
	}
	return mib(int64(median(v)))
}

func medianDuration(ds []time.Duration) time.Duration {
	v := make([]float64, len(ds))
	for i, d := range ds {
		v[i] = float64(d)
	}
	return time.Duration(median(v))
}
