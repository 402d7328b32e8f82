package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tracesync/tracesync/client"
)

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
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

// startFake runs Main in the background and returns its base URL (the
// first stdout line) and a stop function returning the exit code.
func startFake(t *testing.T, env map[string]string, args ...string) (string, func() int) {
	t.Helper()
	url, _, stop := startFakeLogged(t, env, args...)
	return url, stop
}

// startFakeLogged is startFake that also returns stderr, whole once stop
// has returned.
func startFakeLogged(t *testing.T, env map[string]string, args ...string) (string, *syncBuffer, func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	stderr := &syncBuffer{}
	codec := make(chan int, 1)
	go func() {
		codec <- Main(ctx, args, pw, stderr, func(k string) string { return env[k] })
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		cancel()
		t.Fatalf("stratix-fake %v: no first line on stdout (%v); stderr: %s", args, err, stderr.String())
	}
	go io.Copy(io.Discard, pr)
	url := strings.TrimSpace(line)
	if !strings.HasPrefix(url, "http://127.0.0.1:") || !strings.HasSuffix(url, "/api/v1") {
		t.Fatalf("first stdout line %q is not http://127.0.0.1:PORT/api/v1", url)
	}
	stopped := false
	stop := func() int {
		if stopped {
			return 0
		}
		stopped = true
		cancel()
		select {
		case code := <-codec:
			return code
		case <-time.After(30 * time.Second):
			t.Fatalf("stratix-fake did not stop after cancel; stderr: %s", stderr.String())
			return -1
		}
	}
	t.Cleanup(func() { stop() })
	return url, stderr, stop
}

func TestFirstLineIsURLAndUploadsWork(t *testing.T) {
	url, stop := startFake(t, nil, "--envelope=false", "--api-key", "k1")
	c, err := client.New(client.Config{BaseURL: url, APIKey: "k1"})
	if err != nil {
		t.Fatal(err)
	}
	body := "{\"a\":1}\n{\"b\":2}\n"
	ids, err := c.Upload(context.Background(), "x.jsonl", strings.NewReader(body), int64(len(body)))
	if err != nil || len(ids) != 2 {
		t.Fatalf("upload to stratix-fake: %v, %v", ids, err)
	}
	if code := stop(); code != 0 {
		t.Fatalf("exit code after SIGINT-like cancel: %d, want 0", code)
	}
}

func TestDataDirSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	url, stop := startFake(t, nil, "--data-dir", dir)
	c, _ := client.New(client.Config{BaseURL: url, APIKey: "test-key"})
	body := "{\"a\":1}\n"
	ids, err := c.Upload(context.Background(), "keep.jsonl", strings.NewReader(body), int64(len(body)))
	if err != nil {
		t.Fatal(err)
	}
	stop()
	url2, _ := startFake(t, nil, "--data-dir", dir)
	c2, _ := client.New(client.Config{BaseURL: url2, APIKey: "test-key"})
	tr, err := c2.Get(context.Background(), ids[0])
	if err != nil || tr.Data["a"] != float64(1) {
		t.Fatalf("trace %s after restart: %+v, %v", ids[0], tr, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "traces.jsonl")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("data log: %v, %v; want mode 0600", fi, err)
	}
}

func TestFaultFlags(t *testing.T) {
	url, _ := startFake(t, nil, "--fail-rate", "1")
	c, _ := client.New(client.Config{BaseURL: url, APIKey: "test-key"})
	// Discovery is spared; the traces calls all fail with 503.
	if _, err := c.Discover(context.Background()); err != nil {
		t.Fatalf("discover with --fail-rate 1: %v (organizations must be spared)", err)
	}
	_, err := c.List(context.Background(), client.ListOptions{})
	if client.Classify(err) != client.ClassTransient {
		t.Fatalf("list with --fail-rate 1: %v, want a transient 503", err)
	}

	url, _ = startFake(t, map[string]string{"LAYERLENS_STRATIX_API_KEY": "from-env"}, "--rate-limit-rate", "1", "--retry-after", "7")
	c, _ = client.New(client.Config{BaseURL: url, APIKey: "from-env"})
	_, err = c.Sources(context.Background())
	if client.RetryAfter(err) != 7*time.Second {
		t.Fatalf("sources with --rate-limit-rate 1: %v, want 429 with Retry-After 7s", err)
	}
}

// The seed of the fault draws is logged at start: --seed's, or the one
// taken from the clock.
func TestSeedLogged(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--fail-rate", "0.5", "--seed", "12345"}, `"seed":12345`},
		{[]string{"--fail-rate", "0.5"}, `"seed":`},
	} {
		_, stderr, stop := startFakeLogged(t, nil, append(tc.args, "--log-format", "json")...)
		stop()
		if !strings.Contains(stderr.String(), tc.want) || strings.Contains(stderr.String(), `"seed":0,`) {
			t.Errorf("stratix-fake %v: start log does not carry %s (nor may it be 0):\n%s", tc.args, tc.want, stderr.String())
		}
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--ids-as", "list", "--envelope=false"},
		{"--ids-as", "tuple"},
		{"--fail-rate", "1.5"},
		{"--seed", "-1"},
		{"--no-such-flag"},
		{"extra-arg"},
		{"--log-level", "loud"},
	} {
		var stdout, stderr bytes.Buffer
		if code := Main(context.Background(), args, &stdout, &stderr, func(string) string { return "" }); code != exitUsage {
			t.Errorf("stratix-fake %v: exit %d, want %d (stderr %q)", args, code, exitUsage, stderr.String())
		}
		if stdout.Len() != 0 {
			t.Errorf("stratix-fake %v printed %q on stdout", args, stdout.String())
		}
	}
}

// TestIndependentClient runs scripts/sdk-compat.py, a client written from
// stratix-api.md with the Python standard library, against stratix-fake in
// each answer form.
func TestIndependentClient(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not found: skipping the independent-client check (scripts/sdk-compat.py)")
	}
	script, _ := filepath.Abs("../../scripts/sdk-compat.py")
	traces, _ := filepath.Abs("../../../shared/testdata/traces")
	files, _ := filepath.Glob(filepath.Join(traces, "*.json*"))
	if len(files) == 0 {
		dir := t.TempDir()
		files = []string{filepath.Join(dir, "a.jsonl"), filepath.Join(dir, "b.json")}
		os.WriteFile(files[0], []byte("{\"a\":1}\n{\"a\":2}\n"), 0o600)
		os.WriteFile(files[1], []byte(`[{"b":1},{"b":2}]`), 0o600)
	}
	for _, args := range [][]string{{"--envelope=true"}, {"--envelope=false"}, {"--ids-as", "list"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			url, _ := startFake(t, nil, args...)
			cmd := exec.Command(py, append([]string{script, url}, files...)...)
			cmd.Env = append(os.Environ(), "LAYERLENS_STRATIX_API_KEY=test-key")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("sdk-compat.py against stratix-fake %v: %v\n%s", args, err, out)
			}
			if !strings.Contains(string(out), "ok: ") {
				t.Fatalf("sdk-compat.py did not report ok:\n%s", out)
			}
		})
	}
}

// On stop, the last stdout line counts the calls served and the injected
// 429s (scripts/bench reads it).
func TestLastLineCountsCallsAndRateLimits(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stdout, stderr := &syncBuffer{}, &syncBuffer{}
	codec := make(chan int, 1)
	go func() {
		codec <- Main(ctx, []string{"--envelope=false", "--api-key", "k1", "--rate-limit-rate", "1", "--retry-after", ""}, stdout, stderr, func(string) string { return "" })
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(stdout.String(), "\n") {
		if time.Now().After(deadline) {
			t.Fatalf("no first line on stdout; stderr: %s", stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	url := strings.TrimSpace(stdout.String())
	c, err := client.New(client.Config{BaseURL: url, APIKey: "k1"})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := c.Upload(context.Background(), "x.jsonl", strings.NewReader("{}\n"), 3); err == nil {
			t.Fatal("upload succeeded at --rate-limit-rate 1")
		}
	}
	cancel()
	if code := <-codec; code != 0 {
		t.Fatalf("exit code %d; stderr: %s", code, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	last := lines[len(lines)-1]
	// Discovery (/organizations) is never faulted; each upload's presign is.
	if !strings.Contains(last, "; 3 answered with an injected status, 3 of them 429") || !strings.HasPrefix(last, "served ") {
		t.Fatalf("last stdout line %q, want the calls served and 3 injected 429s", last)
	}
}
