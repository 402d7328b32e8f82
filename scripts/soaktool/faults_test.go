package main

import (
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestReadFakeLog counts stratix-fake's debug "request" lines by endpoint
// and status, and skips every other line.
func TestReadFakeLog(t *testing.T) {
	const p = "/api/v1/organizations/org-test/projects/proj-test/traces"
	log := strings.Join([]string{
		`{"level":"info","url":"http://127.0.0.1:1/api/v1","message":"serving; stop with Ctrl-C or SIGTERM"}`,
		`{"level":"debug","method":"POST","path":"` + p + `/upload","status":200,"message":"request"}`,
		`{"level":"debug","method":"POST","path":"` + p + `/upload","status":503,"message":"request"}`,
		`{"level":"debug","method":"PUT","path":"/s3/tok/a.json","status":429,"message":"request"}`,
		`{"level":"debug","method":"POST","path":"` + p + `","status":503,"message":"request"}`,
		`{"level":"debug","method":"GET","path":"` + p + `","status":200,"message":"request"}`,
		`{"level":"debug","method":"GET","path":"` + p + `/sources","status":200,"message":"request"}`,
		`{"level":"debug","method":"GET","path":"` + p + `/tr_1","status":200,"message":"request"}`,
		`{"level":"debug","method":"DELETE","path":"` + p + `/tr_1","status":404,"message":"request"}`,
		`{"level":"debug","method":"GET","path":"/api/v1/organizations","status":200,"message":"request"}`,
		`not JSON`,
	}, "\n") + "\n"
	name := filepath.Join(t.TempDir(), "fake.log")
	if err := os.WriteFile(name, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	fc, err := readFakeLog(name)
	if err != nil {
		t.Fatalf("readFakeLog: %v", err)
	}
	if fc.total != 9 {
		t.Fatalf("got %d calls, want 9:\n%s", fc.total, fc)
	}
	want := map[string]map[int]int{
		"presign": {200: 1, 503: 1}, "put": {429: 1}, "create": {503: 1}, "list": {200: 1},
		"sources": {200: 1}, "get": {200: 1}, "delete": {404: 1}, "organizations": {200: 1},
	}
	for ep, by := range want {
		for code, n := range by {
			if got := fc.byEndpoint[ep][code]; got != n {
				t.Errorf("%s %d: got %d calls, want %d", ep, code, got, n)
			}
		}
	}
	if fc.status(503) != 2 || fc.status(429) != 1 {
		t.Errorf("got 503×%d 429×%d, want 2 and 1", fc.status(503), fc.status(429))
	}
	if got := fc.byStatus(503); got != "create 1, presign 1" {
		t.Errorf("503 by endpoint: got %q", got)
	}
}

// TestCauseOf classifies the daemon's retried failures by the fault behind them.
func TestCauseOf(t *testing.T) {
	for msg, want := range map[string]string{
		"put: HTTP 503 SlowDown: injected failure: 503 Service Unavailable":                        "503",
		"delete: HTTP 429: rate limit exceeded":                                                    "429",
		`delete: HTTP 429: {"st`:                                                                   "429",
		`presign: Post "http://127.0.0.1:1/api/v1/x": EOF`:                                         "cut",
		"presign: unexpected EOF":                                                                  "cut",
		"list: read tcp 127.0.0.1:1->127.0.0.1:2: read: connection reset by peer":                  "cut",
		`put: Put "http://127.0.0.1:1/s3/t/a.json": write: broken pipe`:                            "cut",
		"put: body size differs from the declared size (the file changed while it was sent): body": "changed",
		"create: HTTP 400: bad request":                                                            "other",
	} {
		if got := causeOf(msg); got != want {
			t.Errorf("causeOf(%q) = %q, want %q", msg, got, want)
		}
	}
}

// TestScanLog reads the daemon's retries, recoveries, pauses and changed files.
func TestScanLog(t *testing.T) {
	log := strings.Join([]string{
		`{"level":"warn","stage":"put","error":"put: HTTP 503 SlowDown: injected failure","message":"upload failed; will retry"}`,
		`{"level":"warn","error":"delete: HTTP 429: rate limit exceeded","message":"remote delete failed; will retry"}`,
		`{"level":"warn","error":"create: unexpected EOF","message":"upload failed; will retry"}`,
		`{"level":"info","message":"recovered: adopted the traces of an upload whose create ran before a crash (no second create)"}`,
		`{"level":"warn","message":"file changed during its upload: create not called, back to settling"}`,
		`{"level":"error","message":"uploads paused: the API is unreachable (3 connection failures in a row)"}`,
		`{"level":"info","message":"uploaded"}`,
		`{"level":"warn","message":"quarantined: /d/a.json: invalid JSON at line 1"}`,
		`{"level":"warn","message":"quarantined: /d/b.json: invalid JSON at line 2"}`,
	}, "\n") + "\n"
	name := filepath.Join(t.TempDir(), "tracesync.log")
	if err := os.WriteFile(name, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	ls := scanLog(name)
	if ls.uploadRetries != 2 || ls.deleteRetries != 1 {
		t.Errorf("retries: got %d uploads and %d deletes, want 2 and 1", ls.uploadRetries, ls.deleteRetries)
	}
	if ls.causes["503"] != 1 || ls.causes["429"] != 1 || ls.causes["cut"] != 1 {
		t.Errorf("causes: got %v, want 503, 429 and cut once each", ls.causes)
	}
	if ls.recovered != 1 || ls.changed != 1 || ls.pauses != 1 {
		t.Errorf("got %d recovered, %d changed, %d pauses, want 1 each", ls.recovered, ls.changed, ls.pauses)
	}
	if ls.levels != "error 1, info 2, warn 6" {
		t.Errorf("levels: got %q", ls.levels)
	}
	// Quarantines of two paths count as one kind of warning.
	if !slices.Contains(ls.top, msgCount{"warn: quarantined", 2}) {
		t.Errorf("top warnings %v: want \"warn: quarantined\" twice, not one entry per path", ls.top)
	}
}

// TestSteadySlopes judges the slopes only over the steady part: a working
// set that grows during warm-up is not a leak, and a run too short to have
// a steady part is not judged at all.
func TestSteadySlopes(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// Ten minutes, a sample every 10 s: RSS grows 1 MiB/min for the first
	// 3 minutes (warm-up), then stays flat; fds likewise.
	var ss []sample
	for sec := 0; sec <= 600; sec += 10 {
		grown := min(sec, 180)
		ss = append(ss, sample{at: time.Duration(sec) * time.Second, rssKiB: 10240 + int64(grown)*1024/60, anonKiB: 2048, fds: 15 + grown/60})
	}
	r := judgeResources(ss, steadyFrom(ss, start.Add(3*time.Minute), start))
	if !r.judged || r.steadyFrom != 5*time.Minute {
		t.Fatalf("steady part: judged %v from %s (%s), want judged from 5m (the second half)", r.judged, r.steadyFrom, r.why)
	}
	if math.Abs(r.rssKiBPerMinSteady) > 1e-6 || math.Abs(r.fdPerMinSteady) > 1e-6 {
		t.Errorf("steady part: RSS %+.3f KiB/min, fds %+.3f /min, want 0 and 0", r.rssKiBPerMinSteady, r.fdPerMinSteady)
	}
	if r.rssKiBPerMin <= 0 {
		t.Errorf("whole run: RSS slope %+.3f KiB/min, want the warm-up to show", r.rssKiBPerMin)
	}
	// The working set reached late: the steady part starts there.
	if got := steadyFrom(ss, start.Add(7*time.Minute), start); got != 7*time.Minute {
		t.Errorf("working set at 7m: steady from %s, want 7m", got)
	}
	// Never reached, or too short: not judged.
	if r := judgeResources(ss, steadyFrom(ss, time.Time{}, start)); r.judged || r.why == "" {
		t.Errorf("working set never reached: judged %v (%q), want not judged with a reason", r.judged, r.why)
	}
	short := ss[:19] // 3 minutes: second half 1m30s
	if r := judgeResources(short, steadyFrom(short, start.Add(time.Minute), start)); r.judged {
		t.Errorf("3-minute run: judged over %s, want not judged (under %s)", short[len(short)-1].at-r.steadyFrom, minSteady)
	}
}
