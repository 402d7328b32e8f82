package uploader_test

// The fault matrix of issue 7: each cell injects one remote fault into a
// real stratixtest server on a real port (or breaks the network path to
// it), runs the engine on a real bbolt store, and checks the same four
// things: nothing lost (every path uploaded), nothing duplicated (every
// content created exactly once), the right log line (level, message and
// fields), and the pool paused exactly where rule 11 says (401/403 on an
// API call, repeated connection failures), and nowhere else.
//
// The cells already covered elsewhere are not repeated here: an expired URL
// with the server's clock moved (faults_test.go), dropped presigns pausing
// the pool (faults_test.go), a lost create answer adopted at run time and
// after a restart (recovery_test.go), a 2 s Retry-After waited for real and
// a rotated key with many files (recovery_test.go).

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tracesync/tracesync/client"
	"github.com/tracesync/tracesync/client/stratixtest"
	"github.com/tracesync/tracesync/store"
	"github.com/tracesync/tracesync/uploader"
	"github.com/tracesync/tracesync/watcher"
)

// ---- log capture ----

// logLine is one decoded zerolog JSON line.
type logLine map[string]any

func (l logLine) str(k string) string {
	s, _ := l[k].(string)
	return s
}

// lines decodes every JSON line written so far.
func (s *syncBuffer) lines(t *testing.T) []logLine {
	t.Helper()
	var out []logLine
	sc := bufio.NewScanner(strings.NewReader(s.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l logLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("log line is not JSON: %v: %q", err, sc.Text())
		}
		out = append(out, l)
	}
	return out
}

// logWant describes a log line a cell must produce.
type logWant struct {
	level  string            // "warn", "error", "info"
	msg    string            // a substring of the message
	fields map[string]string // exact string values (e.g. "stage": "put")
	has    []string          // fields that must be present (any value)
	errHas string            // a substring of the "error" field
}

func (w logWant) String() string {
	return fmt.Sprintf("level=%s message~%q fields=%v has=%v error~%q", w.level, w.msg, w.fields, w.has, w.errHas)
}

func (w logWant) match(l logLine) bool {
	if l.str("level") != w.level || !strings.Contains(l.str("message"), w.msg) {
		return false
	}
	for k, v := range w.fields {
		if l.str(k) != v {
			return false
		}
	}
	for _, k := range w.has {
		if _, ok := l[k]; !ok {
			return false
		}
	}
	return w.errHas == "" || strings.Contains(l.str("error"), w.errHas)
}

// findLog returns the first line matching w, failing the test if none does.
func findLog(t *testing.T, logs *syncBuffer, w logWant) logLine {
	t.Helper()
	// The engine writes the store before it logs: a test that saw the
	// state may be a moment ahead of the line.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		for _, l := range logs.lines(t) {
			if w.match(l) {
				return l
			}
		}
		if time.Now().After(deadline) {
			break
		}
	}
	t.Fatalf("no log line %s in:\n%s", w, logs.String())
	return nil
}

// countLog counts the lines whose message contains msg.
func countLog(t *testing.T, logs *syncBuffer, msg string) int {
	t.Helper()
	n := 0
	for _, l := range logs.lines(t) {
		if strings.Contains(l.str("message"), msg) {
			n++
		}
	}
	return n
}

const (
	pausedMsg  = "uploads paused"
	resumedMsg = "uploads resumed"
	retryMsg   = "upload failed; will retry"
)

// ---- a clock a test can move forward ----

// offsetClock is the real clock plus an offset the test moves: the engine
// keeps running in real time, and a long Retry-After passes at once.
type offsetClock struct{ off atomic.Int64 }

func (c *offsetClock) Now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *offsetClock) advance(d time.Duration) { c.off.Add(int64(d)) }

// ---- harness variants ----

// newHarnessWithAPI is newHarness with an API client the test built (its
// own transport, timeout or base URL), on a target pinned in advance.
func newHarnessWithAPI(t *testing.T, cfg uploader.Config, srv *stratixtest.Server, api *client.Client) *harness {
	t.Helper()
	h := bareHarness(t, cfg, srv, api, api.Target())
	h.openStore()
	h.start()
	t.Cleanup(h.stop)
	return h
}

// pinnedClient is a client for baseURL with the fake's org and project
// pinned (no discovery: the API may be unreachable at start).
func pinnedClient(t *testing.T, baseURL string, hc *http.Client, timeout time.Duration) *client.Client {
	t.Helper()
	api, err := client.New(client.Config{BaseURL: baseURL, APIKey: stratixtest.DefaultAPIKey, HTTPClient: hc, Timeout: timeout,
		OrganizationID: stratixtest.DefaultOrgID, ProjectID: stratixtest.DefaultProjectID})
	if err != nil {
		t.Fatal(err)
	}
	return api
}

// matrixFiles writes the cell's folder: two contents, one of them under
// two names, and returns every path and every content's hash.
func matrixFiles(h *harness) (paths []string, hashes []string) {
	const jl = "{\"step\":1}\n{\"step\":2}\n"
	paths = []string{h.write("a.json", traceA), h.write("copy/a-again.json", traceA), h.write("run.jsonl", jl)}
	return paths, []string{hexHash(traceA), hexHash(jl)}
}

// checkNothingLostOrDuplicated waits for every path to be uploaded and
// checks that each content was created exactly once, and nothing else.
func checkNothingLostOrDuplicated(t *testing.T, h *harness, paths, hashes []string) {
	t.Helper()
	for _, p := range paths {
		h.waitState(p, store.StateUploaded)
	}
	creates := h.srv.CreatesByHash()
	for _, hash := range hashes {
		if n := creates[hash]; n != 1 {
			t.Fatalf("content %s: got %d creates, want 1 (all: %v)", hash[:12], n, creates)
		}
	}
	if len(creates) != len(hashes) {
		t.Fatalf("creates by hash %v: want exactly the %d contents of the folder", creates, len(hashes))
	}
	if in, _ := h.db.Intents(); len(in) != 0 {
		t.Fatalf("intents left after every upload finished: %+v", in)
	}
}

// checkPause checks the pool paused exactly once (and resumed), or never.
func checkPause(t *testing.T, logs *syncBuffer, want bool) {
	t.Helper()
	n := countLog(t, logs, pausedMsg)
	switch {
	case want && n != 1:
		t.Fatalf("got %d %q lines, want exactly 1:\n%s", n, pausedMsg, logs.String())
	case want && countLog(t, logs, resumedMsg) < 1:
		t.Fatalf("paused but no %q line:\n%s", resumedMsg, logs.String())
	case !want && n != 0:
		t.Fatalf("the pool paused (%d lines); rule 11 pauses only on a rejected key or repeated connection failures:\n%s", n, logs.String())
	}
	if strings.Contains(logs.String(), stratixtest.DefaultAPIKey) {
		t.Fatalf("the API key appears in the logs")
	}
}

// firstStage is the stage of an upload's first API call under cfg: the
// check for its unique name on the server, else the presign.
func firstStage(cfg uploader.Config) string {
	if cfg.RemoteName == uploader.RemoteNameUnique && !cfg.NoRemoteCheck {
		return "check"
	}
	return "presign"
}

// TestFaultMatrixWithBasenames runs the fault matrix again with bare
// basenames as upload names (--remote-name basename), in a child process
// of this test binary.
func TestFaultMatrixWithBasenames(t *testing.T) {
	if os.Getenv(namingEnv) != "" {
		t.Skip("this is the second pass")
	}
	if testing.Short() {
		t.Skip("runs the fault matrix a second time")
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestFaultMatrix", "-test.count", "1")
	cmd.Env = append(os.Environ(), namingEnv+"=basename")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("fault matrix with --remote-name basename: %v\n%s", err, lastBytes(string(out), 8000))
	}
	t.Logf("fault matrix with --remote-name basename passed")
}

func lastBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

func matrixConfig(logs *syncBuffer) uploader.Config {
	cfg := fastConfig()
	cfg.ConnFailures = 3
	cfg.ProbeInterval = 10 * time.Millisecond
	cfg.Log = zerolog.New(logs)
	return cfg
}

// ---- the status-code cells ----

// TestFaultMatrixStatus: 500/502/503/504 on each API stage, more times in a
// row than it takes connection failures to pause the pool: retried with
// backoff, one warn line per failure naming the stage, never a pause (an
// HTTP answer means the API is up). A 403 on the presigned PUT is a bad
// signature, not a bad key: presigned again at once, no pause, no retry.
func TestFaultMatrixStatus(t *testing.T) {
	type cell struct {
		ep     stratixtest.Endpoint
		status int
	}
	var cells []cell
	for _, status := range []int{500, 502, 503, 504} {
		for _, ep := range []stratixtest.Endpoint{stratixtest.EndpointPresign, stratixtest.EndpointPut, stratixtest.EndpointCreate} {
			cells = append(cells, cell{ep, status})
		}
	}
	for _, c := range cells {
		t.Run(fmt.Sprintf("%d-on-%s", c.status, c.ep), func(t *testing.T) {
			t.Parallel()
			logs := &syncBuffer{}
			h := newHarness(t, matrixConfig(logs), stratixtest.Options{})
			h.srv.FailNext(c.ep, 4, c.status) // more than ConnFailures (3)
			paths, hashes := matrixFiles(h)
			for _, p := range paths {
				h.ready(p)
			}
			checkNothingLostOrDuplicated(t, h, paths, hashes)
			findLog(t, logs, logWant{level: "warn", msg: retryMsg, fields: map[string]string{"stage": string(c.ep)},
				has: []string{"path", "attempt", "retry_in"}, errHas: fmt.Sprint(c.status)})
			if n := countLog(t, logs, retryMsg); n != 4 {
				t.Fatalf("%d injected failures gave %d retry lines, want 4:\n%s", 4, n, logs.String())
			}
			checkPause(t, logs, false)
			findLog(t, logs, logWant{level: "info", msg: "uploaded", has: []string{"path", "hash", "bytes", "traces", "attempt", "duration"}})
		})
	}
	t.Run("403-on-put", func(t *testing.T) {
		t.Parallel()
		logs := &syncBuffer{}
		h := newHarness(t, matrixConfig(logs), stratixtest.Options{})
		h.srv.FailNext(stratixtest.EndpointPut, 1, http.StatusForbidden)
		paths, hashes := matrixFiles(h)
		for _, p := range paths {
			h.ready(p)
		}
		checkNothingLostOrDuplicated(t, h, paths, hashes)
		checkPause(t, logs, false)
		if n := countLog(t, logs, retryMsg); n != 0 {
			t.Fatalf("a 403 on the PUT was treated as a failure (%d retry lines), want a fresh presign:\n%s", n, logs.String())
		}
		if n := h.srv.Calls(stratixtest.EndpointPresign); n != 3 {
			t.Fatalf("presigns %d, want 3 (two contents, one presigned again)", n)
		}
	})
}

// TestFaultMatrixRateLimit: 429 without Retry-After backs off on the
// engine's own schedule; with Retry-After in seconds or as an HTTP date the
// stored next attempt is at least that far ahead, nothing is tried before
// it, and the upload follows once the (moved) clock passes it.
func TestFaultMatrixRateLimit(t *testing.T) {
	for _, c := range []struct {
		name       string
		retryAfter func() string
		wantWait   time.Duration // the least stored wait
	}{
		{"none", func() string { return "" }, 0},
		{"seconds", func() string { return "3600" }, time.Hour},
		// An HTTP date is in whole seconds, and it is taken before the
		// file is even written: the minute is for a slow machine.
		{"http-date", func() string { return time.Now().Add(2 * time.Hour).UTC().Format(http.TimeFormat) }, 2*time.Hour - time.Minute},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			logs := &syncBuffer{}
			clock := &offsetClock{}
			cfg := matrixConfig(logs)
			cfg.Now = clock.Now
			h := newHarness(t, cfg, stratixtest.Options{})
			h.srv.RateLimitNext(stratixtest.EndpointCreate, 1, c.retryAfter())
			a := h.write("a.json", traceA)
			before := clock.Now()
			h.ready(a)
			if c.wantWait > 0 {
				r := h.waitState(a, store.StateRetrying)
				if wait := r.NextAttempt.Sub(before); wait < c.wantWait {
					t.Fatalf("stored next attempt %v ahead, want at least Retry-After's %v", wait, c.wantWait)
				}
				if !strings.Contains(r.LastError, "429") {
					t.Fatalf("last error %q, want the 429", r.LastError)
				}
				l := findLog(t, logs, logWant{level: "warn", msg: retryMsg, fields: map[string]string{"stage": "create"}, errHas: "429"})
				if ms, _ := l["retry_in"].(float64); time.Duration(ms*float64(time.Millisecond)) < c.wantWait {
					t.Fatalf("retry_in %v ms logged, want at least %v", l["retry_in"], c.wantWait)
				}
				// The create failed after its intent; the next attempt
				// must first look for traces it may have made. Nothing
				// may run before the clock passes Retry-After.
				if n := h.srv.Calls(stratixtest.EndpointCreate); n != 1 {
					t.Fatalf("%d creates before Retry-After passed, want 1", n)
				}
				clock.advance(r.NextAttempt.Sub(clock.Now()) + time.Second)
			}
			checkNothingLostOrDuplicated(t, h, []string{a}, []string{hexHash(traceA)})
			if c.wantWait == 0 {
				l := findLog(t, logs, logWant{level: "warn", msg: retryMsg, fields: map[string]string{"stage": "create"}, errHas: "429"})
				if ms, _ := l["retry_in"].(float64); ms > float64(cfg.MaxBackoff/time.Millisecond)*2 {
					t.Fatalf("429 without Retry-After waited %v ms, want the engine's backoff (at most ~%v)", ms, cfg.MaxBackoff)
				}
			}
			checkPause(t, logs, false)
		})
	}
}

// ---- the network cells ----

// refusingPort is a local port that refuses connections until open() makes
// it forward every connection to the fake API (a TCP proxy: the presigned
// URLs name the proxy too, since they name the host the client asked).
type refusingPort struct {
	t      *testing.T
	addr   string
	target string
	mu     sync.Mutex // guards ln and conns
	ln     net.Listener
	conns  []net.Conn
	wg     sync.WaitGroup
}

func newRefusingPort(t *testing.T, target string) *refusingPort {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &refusingPort{t: t, addr: ln.Addr().String(), target: target}
	ln.Close() // nothing listens: connection refused
	t.Cleanup(p.close)
	return p
}

func (p *refusingPort) open() {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatalf("reopen %s: %v", p.addr, err)
	}
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			p.wg.Go(func() { _, _ = io.Copy(up, c); _ = up.(*net.TCPConn).CloseWrite() })
			p.wg.Go(func() { _, _ = io.Copy(c, up); _ = c.(*net.TCPConn).CloseWrite() })
		}
	})
}

func (p *refusingPort) close() {
	p.mu.Lock()
	if p.ln != nil {
		p.ln.Close()
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// TestFaultMatrixConnectionRefused: nothing listens on the API's port: the
// first connection failures pause the pool as one (one error line), the
// probe finds the port open later, and everything is uploaded once.
func TestFaultMatrixConnectionRefused(t *testing.T) {
	t.Parallel()
	logs := &syncBuffer{}
	srv := stratixtest.NewServer(stratixtest.Options{})
	t.Cleanup(srv.Close)
	srvURL, _ := url.Parse(srv.URL())
	port := newRefusingPort(t, srvURL.Host)
	api := pinnedClient(t, "http://"+port.addr+"/api/v1", nil, 0)
	h := newHarnessWithAPI(t, matrixConfig(logs), srv, api)
	paths, hashes := matrixFiles(h)
	for _, p := range paths {
		h.ready(p)
	}
	h.waitFor("the pool to pause", func() bool { return h.eng.Progress().Paused })
	findLog(t, logs, logWant{level: "error", msg: "uploads paused: the API is unreachable", has: []string{"probe_every"}, errHas: "connection refused"})
	findLog(t, logs, logWant{level: "warn", msg: retryMsg, fields: map[string]string{"stage": firstStage(h.cfg)}, errHas: "connection refused"})
	if h.eng.Ready() {
		t.Fatalf("Ready() while the API is unreachable")
	}
	port.open()
	checkNothingLostOrDuplicated(t, h, paths, hashes)
	checkPause(t, logs, true)
}

// TestFaultMatrixDNSFailure: the API's host does not resolve (a real lookup
// of a name under .invalid, RFC 6761): a transport failure like a refused
// connection, so the pool pauses as one; once the name resolves again (the
// dialer maps it to the fake), the probe resumes the pool.
func TestFaultMatrixDNSFailure(t *testing.T) {
	t.Parallel()
	logs := &syncBuffer{}
	srv := stratixtest.NewServer(stratixtest.Options{})
	t.Cleanup(srv.Close)
	srvURL, _ := url.Parse(srv.URL())
	const host = "tracesync-fault-matrix.invalid"
	var resolves atomic.Bool
	tr := client.NewTransport()
	tr.Proxy = nil
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if resolves.Load() && strings.HasPrefix(addr, host+":") {
			addr = srvURL.Host
		}
		return dialer.DialContext(ctx, network, addr) // a real lookup of the .invalid name
	}
	t.Cleanup(tr.CloseIdleConnections)
	api := pinnedClient(t, "http://"+host+":"+srvURL.Port()+"/api/v1", &http.Client{Transport: tr}, 0)
	h := newHarnessWithAPI(t, matrixConfig(logs), srv, api)
	paths, hashes := matrixFiles(h)
	for _, p := range paths {
		h.ready(p)
	}
	h.waitFor("the pool to pause", func() bool { return h.eng.Progress().Paused })
	l := findLog(t, logs, logWant{level: "error", msg: "uploads paused: the API is unreachable", errHas: host})
	if n := srv.Calls(stratixtest.EndpointPresign); n != 0 {
		t.Fatalf("the fake saw %d presigns while its name did not resolve", n)
	}
	_ = l
	resolves.Store(true)
	checkNothingLostOrDuplicated(t, h, paths, hashes)
	checkPause(t, logs, true)
}

// TestFaultMatrixResetMidPUT: the server reads half the body and drops the
// connection: a transport failure of one job (retried, no pause for one),
// then the whole body is sent again from the start.
func TestFaultMatrixResetMidPUT(t *testing.T) {
	t.Parallel()
	logs := &syncBuffer{}
	h := newHarness(t, matrixConfig(logs), stratixtest.Options{})
	h.srv.DropNext(stratixtest.EndpointPut, 2) // below ConnFailures
	paths, hashes := matrixFiles(h)
	for _, p := range paths {
		h.ready(p)
	}
	checkNothingLostOrDuplicated(t, h, paths, hashes)
	findLog(t, logs, logWant{level: "warn", msg: retryMsg, fields: map[string]string{"stage": "put"}, has: []string{"attempt", "retry_in"}})
	checkPause(t, logs, false)
	// The retried PUT resent the whole body: the created object hashes to
	// the file's bytes (CreatesByHash is by the object's SHA-256).
}

// TestFaultMatrixResetsPause: connection resets on every PUT, more in a row
// than ConnFailures: the pool pauses as one, a probe resumes it.
func TestFaultMatrixResetsPause(t *testing.T) {
	t.Parallel()
	logs := &syncBuffer{}
	cfg := matrixConfig(logs)
	cfg.Workers = 1
	h := newHarness(t, cfg, stratixtest.Options{})
	h.srv.DropNext(stratixtest.EndpointPut, 3)
	paths, hashes := matrixFiles(h)
	for _, p := range paths {
		h.ready(p)
	}
	checkNothingLostOrDuplicated(t, h, paths, hashes)
	findLog(t, logs, logWant{level: "error", msg: "uploads paused: the API is unreachable (3 connection failures in a row)"})
	checkPause(t, logs, true)
}

// TestFaultMatrixHang: the server accepts the request and never answers;
// the client's per-call timeout ends it. A hung create is the dangerous
// one: it may have run, so the retry looks for its traces before creating.
func TestFaultMatrixHang(t *testing.T) {
	for _, ep := range []stratixtest.Endpoint{stratixtest.EndpointPresign, stratixtest.EndpointPut, stratixtest.EndpointCreate} {
		t.Run(string(ep), func(t *testing.T) {
			t.Parallel()
			logs := &syncBuffer{}
			srv := stratixtest.NewServer(stratixtest.Options{})
			t.Cleanup(srv.Close)
			// The per-call timeout ends the hung call; it applies to every
			// call, so it leaves room for a slow machine's ordinary ones.
			api := pinnedClient(t, srv.URL(), nil, 2*time.Second)
			h := newHarnessWithAPI(t, matrixConfig(logs), srv, api)
			srv.HangNext(ep, 1)
			paths, hashes := matrixFiles(h)
			for _, p := range paths {
				h.ready(p)
			}
			checkNothingLostOrDuplicated(t, h, paths, hashes)
			findLog(t, logs, logWant{level: "warn", msg: retryMsg, fields: map[string]string{"stage": string(ep)}, errHas: "deadline exceeded"})
			checkPause(t, logs, false)
			checks := 0
			if firstStage(h.cfg) == "check" {
				checks = len(hashes) // one look for each content's name before its upload
			}
			if ep == stratixtest.EndpointCreate && srv.Calls(stratixtest.EndpointList) < checks+1 {
				t.Fatalf("after a create that timed out, the retry did not look for its traces first (no list call)")
			}
		})
	}
}

// ---- presigned URL cells ----

// TestFaultMatrixExpiredURL: every URL handed out so far expires while its
// PUT waits: S3's 403 "Request has expired", answered by a fresh presign,
// not counted as a failure, no pause; the upload's line says attempt 1.
func TestFaultMatrixExpiredURL(t *testing.T) {
	t.Parallel()
	logs := &syncBuffer{}
	h := newHarness(t, matrixConfig(logs), stratixtest.Options{})
	h.hooks.once(&h.hooks.put, h.srv.ExpireURLs)
	a := h.write("a.json", traceA)
	h.ready(a)
	h.waitFor("a second PUT", func() bool { return h.srv.Calls(stratixtest.EndpointPut) >= 2 })
	checkNothingLostOrDuplicated(t, h, []string{a}, []string{hexHash(traceA)})
	if n := h.srv.Calls(stratixtest.EndpointPresign); n != 2 {
		t.Fatalf("expired URL: %d presigns, want 2", n)
	}
	l := findLog(t, logs, logWant{level: "info", msg: "uploaded", fields: map[string]string{"path": a}})
	if at, _ := l["attempt"].(float64); at != 1 {
		t.Fatalf("uploaded line says attempt %v, want 1 (an expired URL is not a failed attempt)", l["attempt"])
	}
	if n := countLog(t, logs, retryMsg); n != 0 {
		t.Fatalf("expired URL logged %d failures:\n%s", n, logs.String())
	}
	checkPause(t, logs, false)
}

// tamperingAPI corrupts the signature of the first n presigned URLs, as a
// proxy rewriting the query would: the real server then answers S3's 403
// SignatureDoesNotMatch.
type tamperingAPI struct {
	*client.Client
	left atomic.Int32
}

func (a *tamperingAPI) Presign(ctx context.Context, filename, contentType string, size int64) (client.Presigned, error) {
	p, err := a.Client.Presign(ctx, filename, contentType, size)
	if err == nil && a.left.Add(-1) >= 0 {
		u, perr := url.Parse(p.URL)
		if perr != nil {
			return p, perr
		}
		q := u.Query()
		q.Set("X-Amz-Signature", "0000"+q.Get("X-Amz-Signature"))
		u.RawQuery = q.Encode()
		p.URL = u.String()
	}
	return p, err
}

// TestFaultMatrixSignatureMismatch: a presigned URL whose signature does
// not match gets a fresh presign at once (not a backoff on the same URL),
// no pause, no failure counted; past maxRepresign in a row it becomes a
// transient failure with a warn line, and still nothing is lost.
func TestFaultMatrixSignatureMismatch(t *testing.T) {
	for _, c := range []struct {
		name     string
		bad      int32
		wantWarn bool
	}{{"once", 1, false}, {"every-time", 4, true}} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			logs := &syncBuffer{}
			srv := stratixtest.NewServer(stratixtest.Options{})
			t.Cleanup(srv.Close)
			api := pinnedClient(t, srv.URL(), nil, 0)
			tam := &tamperingAPI{Client: api}
			tam.left.Store(c.bad)
			cfg := matrixConfig(logs)
			cfg.Workers = 1
			h := bareHarness(t, cfg, srv, api, api.Target())
			h.openStore()
			eng, err := uploader.New(cfg, h.db, tam)
			if err != nil {
				t.Fatal(err)
			}
			h.startEngine(eng)
			t.Cleanup(h.stop)
			a := h.write("a.json", traceA)
			h.ready(a)
			checkNothingLostOrDuplicated(t, h, []string{a}, []string{hexHash(traceA)})
			if n := srv.Calls(stratixtest.EndpointPresign); n != int(c.bad)+1 {
				t.Fatalf("%d bad signatures: %d presigns, want %d", c.bad, n, c.bad+1)
			}
			if c.wantWarn {
				findLog(t, logs, logWant{level: "warn", msg: retryMsg, fields: map[string]string{"stage": "put"}, errHas: "SignatureDoesNotMatch"})
			} else if n := countLog(t, logs, retryMsg); n != 0 {
				t.Fatalf("one bad signature logged %d failures:\n%s", n, logs.String())
			}
			checkPause(t, logs, false)
		})
	}
}

// ---- key cells ----

// TestFaultMatrixRejectedKey: a 401 on create (after the create-phase
// intent: the engine cannot know the create did not run) and a 403 on
// presign both pause the whole pool with one error line that says what to fix; a
// probe finds the key good again and the work resumes, the create-phase job
// looking for its traces first. A key rotated on the server and then fixed
// behaves the same.
func TestFaultMatrixRejectedKey(t *testing.T) {
	for _, c := range []struct {
		name   string
		inject func(h *harness)
		fix    func(h *harness)
	}{
		{"401-on-create", func(h *harness) { h.srv.FailNext(stratixtest.EndpointCreate, 1, http.StatusUnauthorized) }, nil},
		{"403-on-presign", func(h *harness) { h.srv.FailNext(stratixtest.EndpointPresign, 1, http.StatusForbidden) }, nil},
		{"key-rotated-then-fixed", func(h *harness) { h.srv.SetAPIKey("rotated-key") }, func(h *harness) { h.srv.SetAPIKey(stratixtest.DefaultAPIKey) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			logs := &syncBuffer{}
			cfg := matrixConfig(logs)
			if c.fix != nil {
				// One worker: with more, a request sent with the old key
				// and answered after the fix would pause the pool again,
				// with a second line, which this cell does not expect.
				cfg.Workers = 1
			}
			h := newHarness(t, cfg, stratixtest.Options{})
			c.inject(h)
			paths, hashes := matrixFiles(h)
			for _, p := range paths {
				h.ready(p)
			}
			if c.fix != nil {
				h.waitFor("the pool to pause", func() bool { return h.eng.Progress().Paused })
				before := h.srv.Calls(stratixtest.EndpointList)
				h.waitFor("two probes", func() bool { return h.srv.Calls(stratixtest.EndpointList) >= before+2 })
				if n := h.srv.Calls(stratixtest.EndpointPresign); n > h.cfg.Workers {
					t.Fatalf("rejected key: %d presigns, want at most one per worker", n)
				}
				c.fix(h)
			}
			checkNothingLostOrDuplicated(t, h, paths, hashes)
			findLog(t, logs, logWant{level: "error", msg: "uploads paused: the API key was rejected", has: []string{"probe_every"}, errHas: "40"})
			checkPause(t, logs, true)
		})
	}
}

// ---- lost create answers ----

// TestFaultMatrixLostCreateListFails: the create ran but its answer was
// lost, and the listing that looks for its traces fails too (503 twice):
// still one create, the traces adopted, an info line saying so.
func TestFaultMatrixLostCreateListFails(t *testing.T) {
	t.Parallel()
	logs := &syncBuffer{}
	cfg := matrixConfig(logs)
	cfg.NoRemoteCheck = true // the listing faulted is the recovery's, not the check before the upload
	h := newHarness(t, cfg, stratixtest.Options{})
	h.srv.LoseCreateResponseNext(1)
	h.srv.FailNext(stratixtest.EndpointList, 2, http.StatusServiceUnavailable)
	a := h.write("a.json", traceA)
	h.ready(a)
	checkNothingLostOrDuplicated(t, h, []string{a}, []string{hexHash(traceA)})
	findLog(t, logs, logWant{level: "warn", msg: retryMsg, fields: map[string]string{"stage": "recover"}, errHas: "503"})
	findLog(t, logs, logWant{level: "info", msg: "recovered: adopted the traces", fields: map[string]string{"path": a}, has: []string{"trace_ids", "hash"}})
	checkPause(t, logs, false)
}

// TestFaultMatrixLostCreateRestartDuringRecovery: the create's answer is
// lost, the engine's own recovery listing hangs, and the engine is shut
// down (in-flight work cancelled) in the middle of it; a new engine on the
// same state file resolves the intent before any upload, adopts the traces
// and creates nothing again.
func TestFaultMatrixLostCreateRestartDuringRecovery(t *testing.T) {
	t.Parallel()
	logs := &syncBuffer{}
	cfg := matrixConfig(logs)
	cfg.NoRemoteCheck = true // the listing hung is the recovery's, not the check before the upload
	h := newHarness(t, cfg, stratixtest.Options{})
	h.srv.LoseCreateResponseNext(1)
	h.srv.HangNext(stratixtest.EndpointList, 1)
	a := h.write("crash.json", traceA)
	h.ready(a)
	h.waitFor("the recovery listing to hang", func() bool { return h.srv.Calls(stratixtest.EndpointList) >= 1 })
	h.cancel()
	sctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := h.eng.Shutdown(sctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("shutdown with a hung listing: %v, want deadline exceeded", err)
	}
	if err := <-h.runErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("run: %v", err)
	}
	h.runErr <- nil
	if in, _ := h.db.Intents(); len(in) != 1 || in[0].Phase != store.PhaseCreate {
		t.Fatalf("after the interrupted recovery: intents %+v, want one in the create phase", in)
	}
	h.restart()
	checkNothingLostOrDuplicated(t, h, []string{a}, []string{hexHash(traceA)})
	findLog(t, logs, logWant{level: "info", msg: "resolving uploads a crash interrupted", fields: map[string]string{}, has: []string{"intents"}})
	findLog(t, logs, logWant{level: "info", msg: "recovered: adopted the traces", has: []string{"trace_ids"}})
	c, _ := h.db.GetContent(h.rec(a).Hash)
	if got, want := sortedCopy(c.TraceIDs), serverIDs(h.srv, nameOf(h.cfg, a, traceA)); len(got) != 1 || len(want) != 1 || got[0] != want[0] {
		t.Fatalf("adopted %v, want the server's %v", got, want)
	}
	checkPause(t, logs, false)
}

// startEngine runs eng on the harness's store and events (newHarness's
// start, for an engine built around another API).
func (h *harness) startEngine(eng *uploader.Engine) {
	h.eng = eng
	h.events = make(chan watcher.Event)
	h.rs = &resettles{}
	h.readies = 0
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.runErr = make(chan error, 1)
	go func() { h.runErr <- eng.Run(ctx, h.events, h.rs) }()
}
