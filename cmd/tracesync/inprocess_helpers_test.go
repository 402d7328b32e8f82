// Running tracesync's Main in process, for tests of the command line.

package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

// mainIn runs tracesync in process with env and returns the exit code,
// stdout and stderr.
func mainIn(t *testing.T, ctx context.Context, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr syncBuffer
	code := Main(ctx, args, strings.NewReader(""), &stdout, &stderr, func(k string) string { return env[k] })
	return code, stdout.String(), stderr.String()
}

// withEnv returns a copy of base with extra set.
func withEnv(base map[string]string, extra map[string]string) map[string]string {
	out := make(map[string]string, len(base)+len(extra))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range extra {
		out[k] = v
	}
	return out
}

// runUntil runs `tracesync run` in this process with env and args (JSON
// logs), until its stderr satisfies done, then stops it as SIGTERM would
// and returns what it logged. It fails the test if run exits early or
// does not exit 0, or if done is not met within a minute (a hang guard).
func runUntil(t *testing.T, env map[string]string, args []string, done func(stderr string) bool) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	exit := make(chan int, 1)
	env = withEnv(env, map[string]string{"TRACESYNC_LOG_FORMAT": "json"})
	go func() {
		exit <- Main(ctx, append([]string{"run"}, args...), strings.NewReader(""), &stdout, &stderr, func(k string) string { return env[k] })
	}()
	deadline := time.Now().Add(time.Minute)
	for !done(stderr.String()) {
		select {
		case code := <-exit:
			t.Fatalf("run exited %d early:\n%s", code, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("run did not get there within a minute:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if code := <-exit; code != 0 {
		t.Fatalf("run: exit %d after a SIGTERM-like stop\n%s", code, stderr.String())
	}
	return stderr.String()
}
