// Running tracesync's Main in process, for tests of the command line.

package main

import (
	"context"
	"strings"
	"testing"
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
