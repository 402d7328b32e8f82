package profiling

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestHeapWrittenWhenStopIsAsked: the heap profile is written as soon as
// the context ends (a daemon's SIGTERM, while its state is still live), not
// only when the process exits; stop waits for that write and does not
// write it again.
func TestHeapWrittenWhenStopIsAsked(t *testing.T) {
	mem := filepath.Join(t.TempDir(), "mem.prof")
	ctx, cancel := context.WithCancel(context.Background())
	stop, err := Start(ctx, "", mem)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(mem); err == nil {
		t.Fatal("heap profile written before the stop was asked")
	}
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if b, err := os.ReadFile(mem); err == nil && bytes.HasPrefix(b, []byte{0x1f, 0x8b}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no heap profile 5s after the context ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(mem)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.Stat(mem); !after.ModTime().Equal(fi.ModTime()) {
		t.Error("a second stop wrote the heap profile again")
	}
}

// TestStartBadPath: an unwritable CPU profile path is an error naming the flag.
func TestStartBadPath(t *testing.T) {
	_, err := Start(context.Background(), filepath.Join(t.TempDir(), "no", "cpu.prof"), "")
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("--cpuprofile")) {
		t.Fatalf("Start with a bad path: %v, want an error naming --cpuprofile", err)
	}
}
