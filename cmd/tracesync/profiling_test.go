package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestProfileFlags: the hidden --cpuprofile and --memprofile write real
// (gzipped pprof) profiles when the command ends, and stay out of --help.
func TestProfileFlags(t *testing.T) {
	dir := t.TempDir()
	cpu, mem := filepath.Join(dir, "cpu.prof"), filepath.Join(dir, "mem.prof")
	code, stdout, stderr := mainIn(t, context.Background(), map[string]string{}, "version", "--cpuprofile", cpu, "--memprofile", mem)
	if code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	for _, f := range []string{cpu, mem} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(b, []byte{0x1f, 0x8b}) {
			t.Errorf("%s is not a gzipped pprof profile (%d bytes)", f, len(b))
		}
	}
	_, help, _ := mainIn(t, context.Background(), map[string]string{}, "run", "--help")
	if strings.Contains(help, "cpuprofile") || !strings.Contains(help, "--workers") {
		t.Errorf("run --help shows the hidden profile flags, or is not the help:\n%s", help)
	}
	code, _, stderr = mainIn(t, context.Background(), map[string]string{}, "version", "--cpuprofile", filepath.Join(dir, "missing", "cpu.prof"))
	if code != exitUsage || !strings.Contains(stderr, "--cpuprofile") {
		t.Errorf("an unwritable --cpuprofile: exit %d, stderr %q; want %d naming the flag", code, stderr, exitUsage)
	}
}
