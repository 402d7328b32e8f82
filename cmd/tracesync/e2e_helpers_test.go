package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tracesync/tracesync/client/stratixtest"
)

// The end-to-end tests build the real binary once and drive it as a
// subprocess against client/stratixtest on a real port.

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// tracesyncBinary builds cmd/tracesync once per test binary (with -race
// when the tests run with it) and returns its path.
func tracesyncBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: builds and runs the binary; skipped with -short")
	}
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "tracesync-e2e-")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "tracesync")
		args := []string{"build", "-o", binPath}
		if raceEnabled {
			args = append(args, "-race")
		}
		args = append(args, ".")
		cmd := exec.Command("go", args...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	})
	if binErr != nil {
		t.Fatalf("build tracesync: %v", binErr)
	}
	return binPath
}

// e2eEnv is one test's world: a fake API on a real port, a state directory
// and the environment the binary runs with.
type e2eEnv struct {
	t     *testing.T
	bin   string
	srv   *stratixtest.Server
	state string
	env   []string
}

func newE2E(t *testing.T, opts stratixtest.Options) *e2eEnv {
	t.Helper()
	bin := tracesyncBinary(t)
	srv := stratixtest.NewServer(opts)
	t.Cleanup(srv.Close)
	key := opts.APIKey
	if key == "" {
		key = stratixtest.DefaultAPIKey
	}
	home := t.TempDir()
	e := &e2eEnv{t: t, bin: bin, srv: srv, state: filepath.Join(home, "state")}
	e.env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + home,
		"LAYERLENS_STRATIX_API_KEY=" + key,
		"LAYERLENS_STRATIX_BASE_URL=" + srv.URL(),
		"TRACESYNC_STATE_DIR=" + e.state,
		"TRACESYNC_LOG_FORMAT=json",
	}
	if v := os.Getenv("GORACE"); v != "" {
		e.env = append(e.env, "GORACE="+v)
	}
	return e
}

// result is a finished tracesync run.
type result struct {
	stdout, stderr string
	code           int
}

// run runs tracesync to the end (at most two minutes) and returns what it printed.
func (e *e2eEnv) run(args ...string) result {
	e.t.Helper()
	return e.start(args...).finish()
}

// finish waits for p to exit (at most two minutes) and returns what it printed.
func (p *proc) finish() result {
	p.t.Helper()
	code := p.wait(2 * time.Minute)
	return result{stdout: p.stdout.String(), stderr: p.stderr.String(), code: code}
}

// proc is a running tracesync.
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdout syncBuffer
	stderr syncBuffer
	done   chan struct{}
	err    error
}

func (e *e2eEnv) start(args ...string) *proc {
	e.t.Helper()
	p := &proc{t: e.t, done: make(chan struct{})}
	p.cmd = exec.Command(e.bin, args...)
	p.cmd.Env = e.env
	p.cmd.Stdout = &p.stdout
	p.cmd.Stderr = &p.stderr
	if err := p.cmd.Start(); err != nil {
		e.t.Fatalf("start tracesync %v: %v", args, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	e.t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// wait waits for the process to exit and returns its exit code; it kills it
// and fails the test after limit (a hang guard, not a speed assertion).
func (p *proc) wait(limit time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(limit):
		_ = p.cmd.Process.Signal(syscall.SIGQUIT) // goroutine dump into stderr
		time.Sleep(time.Second)
		_ = p.cmd.Process.Kill()
		<-p.done
		p.t.Fatalf("tracesync %v did not exit within %s\nstderr:\n%s", p.cmd.Args[1:], limit, tail(p.stderr.String(), 8000))
	}
	return exitCode(p.err)
}

// terminate sends SIGTERM and fails the test unless the process exits 0
// within limit.
func (p *proc) terminate(limit time.Duration) {
	p.t.Helper()
	p.signal(syscall.SIGTERM)
	if code := p.wait(limit); code != 0 {
		p.t.Fatalf("SIGTERM: exit %d, want 0\n%s", code, tail(p.stderr.String(), 4000))
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proc) signal(sig os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil && !p.exited() {
		p.t.Fatalf("signal %v: %v", sig, err)
	}
}

// waitFor polls cond until it is true; it fails the test after limit (a
// hang guard) or if the process exits first.
func (p *proc) waitFor(what string, limit time.Duration, cond func() bool) {
	p.t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if p != nil && p.exited() {
			if cond() {
				return
			}
			p.t.Fatalf("waiting for %s: tracesync exited (%v)\nstderr:\n%s", what, p.err, tail(p.stderr.String(), 8000))
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("waiting for %s: not within %s\nstderr:\n%s", what, limit, tail(p.stderr.String(), 8000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return -int(ws.Signal())
		}
		return ee.ExitCode()
	}
	return -1000
}

// syncBuffer is a bytes.Buffer safe for the process's writes and the
// test's reads.
type syncBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// writeFile writes data at dir/name (creating parents) the way a careful
// producer does: a temporary name, then a rename into place. It returns the
// content's hex SHA-256.
func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(filepath.Dir(p), "."+filepath.Base(p)+".tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
	return hashOf(data)
}

func hashOf(data []byte) string {
	h := sha256.Sum256(data)
	return hex.EncodeToString(h[:])
}

// traceJSON is a small valid trace, distinct per seed.
func traceJSON(seed string) []byte {
	return []byte(fmt.Sprintf(`{"trace_id":"tr-e2e-%s","agent_name":"e2e-agent","status":"completed","events":[{"type":"agent.input","dt":0,"payload":{"input":%q}}]}`+"\n", seed, "question "+seed))
}

// traceJSONL is a small valid .jsonl file of n traces, distinct per seed.
func traceJSONL(seed string, n int) []byte {
	var b bytes.Buffer
	for i := range n {
		fmt.Fprintf(&b, `{"trace_id":"tr-e2e-%s-%d","agent_name":"e2e-batch","status":"completed"}`+"\n", seed, i)
	}
	return b.Bytes()
}

// createsOf returns how many creates the server saw for each of hashes,
// and the total number of creates of any content.
func createsOf(srv *stratixtest.Server, hashes []string) (per map[string]int, total int) {
	all := srv.CreatesByHash()
	per = make(map[string]int, len(hashes))
	for _, h := range hashes {
		per[h] = all[h]
	}
	for _, n := range all {
		total += n
	}
	return per, total
}

// allCreatedOnce reports whether every hash was created exactly once.
func allCreatedOnce(srv *stratixtest.Server, hashes []string) bool {
	per, _ := createsOf(srv, hashes)
	for _, n := range per {
		if n != 1 {
			return false
		}
	}
	return true
}
