package main

// End-to-end tests of what a pod needs from the daemon: probes that answer
// while the API is unreachable, a drain on SIGTERM, and a key file read
// again after a 401 (a rotated Secret).

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tracesync/tracesync/client/stratixtest"
)

// freeAddr returns a loopback address nothing listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// probe GETs url and returns its status and body (0 when nothing answers).
func probe(hc *http.Client, url string) (int, string) {
	resp, err := hc.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The API is unreachable at start: /healthz must answer 200 (a liveness
// probe must not restart the pod in a loop) and /readyz 503 saying what it
// waits for, as soon as it listens (the deadline is for a loaded machine,
// not a speed target).
func TestE2EProbesWhileAPIUnreachable(t *testing.T) {
	e := newE2E(t, stratixtest.Options{})
	dead := "http://" + freeAddr(t) + "/api/v1"
	e.env = append(e.env, "LAYERLENS_STRATIX_BASE_URL="+dead) // the last value wins
	metrics := freeAddr(t)
	root := t.TempDir()

	hc := &http.Client{Timeout: 200 * time.Millisecond}
	started := time.Now()
	p := e.start("run", "--metrics-addr", metrics, root)
	var health, ready int
	var readyBody string
	for deadline := started.Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		health, _ = probe(hc, "http://"+metrics+"/healthz")
		ready, readyBody = probe(hc, "http://"+metrics+"/readyz")
		if health == http.StatusOK && ready == http.StatusServiceUnavailable {
			break
		}
	}
	if health != http.StatusOK || ready != http.StatusServiceUnavailable {
		t.Fatalf("within 15s of start with the API unreachable: /healthz %d, /readyz %d (%q); want 200 and 503\nstderr:\n%s",
			health, ready, readyBody, tail(p.stderr.String(), 4000))
	}
	if !strings.Contains(readyBody, "Stratix API") {
		t.Errorf("/readyz body %q does not say it waits for the Stratix API", readyBody)
	}
	// Still alive after a failed try or two.
	p.waitFor("a failed try logged", 30*time.Second, func() bool {
		return strings.Contains(p.stderr.String(), "cannot start syncing yet")
	})
	if code, body := probe(hc, "http://"+metrics+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz after a failed try: %d %q, want 200", code, body)
	}
	if code, body := probe(hc, "http://"+metrics+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "waiting for the Stratix API") {
		t.Errorf("/readyz after a failed try: %d %q, want 503 naming what it waits for", code, body)
	}
	p.terminate(30 * time.Second)
}

// Once the API answers, both probes say ok.
func TestE2EProbesReadyOnceSyncing(t *testing.T) {
	e := newE2E(t, stratixtest.Options{})
	metrics := freeAddr(t)
	root := t.TempDir()
	p := e.start("run", "--metrics-addr", metrics, root)
	hc := &http.Client{Timeout: time.Second}
	p.waitFor("/readyz 200", 30*time.Second, func() bool {
		code, _ := probe(hc, "http://"+metrics+"/readyz")
		return code == http.StatusOK
	})
	if code, body := probe(hc, "http://"+metrics+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz while syncing: %d %q, want 200", code, body)
	}
	p.terminate(30 * time.Second)
}

// With --drain-on-exit, 20 files dropped just before SIGTERM are all
// uploaded before the daemon exits 0.
func TestE2EDrainOnExit(t *testing.T) {
	e := newE2E(t, stratixtest.Options{})
	root := t.TempDir()
	p := e.start("run", "--drain-on-exit", "--shutdown-timeout", "90s", "--settle", "1s", root)
	p.waitFor("the first scan", 30*time.Second, func() bool { return strings.Contains(p.stderr.String(), "watching 1 folder") })

	var hashes []string
	for i := range 20 {
		hashes = append(hashes, writeFile(t, root, fmt.Sprintf("drop-%02d.json", i), traceJSON(fmt.Sprintf("drain-%d", i))))
	}
	p.terminate(2 * time.Minute)
	per, total := createsOf(e.srv, hashes)
	missing := 0
	for _, h := range hashes {
		if per[h] != 1 {
			missing++
		}
	}
	if missing > 0 || total != 20 {
		t.Fatalf("after SIGTERM with --drain-on-exit: %d of 20 files not created exactly once (%d creates in all)\nstderr:\n%s",
			missing, total, tail(p.stderr.String(), 4000))
	}
	if !strings.Contains(p.stderr.String(), "drained") {
		t.Errorf("no drain line logged:\n%s", tail(p.stderr.String(), 4000))
	}
}

// A key file replaced after the API answered 401 is read again: the next
// upload goes through without a restart. The key never shows in the logs.
func TestE2EKeyFileReloadedAfter401(t *testing.T) {
	e := newE2E(t, stratixtest.Options{})
	var env []string
	for _, kv := range e.env {
		if !strings.HasPrefix(kv, "LAYERLENS_STRATIX_API_KEY=") {
			env = append(env, kv)
		}
	}
	keyDir := t.TempDir()
	keyFile := filepath.Join(keyDir, "api-key")
	writeKey := func(key string) { // as the kubelet swaps a Secret: a new file renamed into place
		t.Helper()
		tmp := filepath.Join(keyDir, ".api-key.new")
		if err := os.WriteFile(tmp, []byte(key+"\n"), 0o440); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, keyFile); err != nil {
			t.Fatal(err)
		}
	}
	writeKey(stratixtest.DefaultAPIKey)
	e.env = append(env, "TRACESYNC_API_KEY_FILE="+keyFile)

	root := t.TempDir()
	p := e.start("run", "--settle", "200ms", "--probe-interval", "200ms", root)
	h1 := writeFile(t, root, "before.json", traceJSON("before-rotation"))
	p.waitFor("before.json created", time.Minute, func() bool { return allCreatedOnce(e.srv, []string{h1}) })

	const rotated = "sk-rotated-7f3a91"
	e.srv.SetAPIKey(rotated)
	h2 := writeFile(t, root, "after.json", traceJSON("after-rotation"))
	p.waitFor("uploads paused on the rejected key", time.Minute, func() bool {
		return strings.Contains(p.stderr.String(), "uploads paused")
	})
	writeKey(rotated)
	p.waitFor("after.json created with the new key", time.Minute, func() bool { return allCreatedOnce(e.srv, []string{h2}) })
	if p.exited() {
		t.Fatalf("tracesync exited: %v", p.err)
	}
	p.terminate(30 * time.Second)
	if strings.Contains(p.stderr.String(), rotated) || strings.Contains(p.stderr.String(), stratixtest.DefaultAPIKey) {
		t.Errorf("a key shows in the logs")
	}
	if !strings.Contains(p.stderr.String(), "a new key was read from") {
		t.Errorf("no line says the new key was read:\n%s", tail(p.stderr.String(), 4000))
	}
}
