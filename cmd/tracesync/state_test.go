package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tracesync/tracesync/store"
)

func TestStateCompact(t *testing.T) {
	dir := t.TempDir()
	db := stFill(t, dir)
	err := db.Update(context.Background(), func(tx *store.Tx) error {
		for i := range 5000 {
			if err := tx.PutPath(store.PathRecord{Path: fmt.Sprintf("/tmp/x/%05d.json", i), State: store.StatePending}); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		err = db.Update(context.Background(), func(tx *store.Tx) error {
			for i := range 5000 {
				if err := tx.ForgetPath(fmt.Sprintf("/tmp/x/%05d.json", i)); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err != nil {
		t.Fatal(err)
	}

	code, _, errOut := stRun(t, "state", "compact", "--state-dir", dir)
	if code != 1 || !strings.Contains(errOut, "stop it, or pass --state-dir") {
		t.Errorf("compact while the state is held: exit %d, stderr %q; want 1 and a clear refusal", code, errOut)
	}
	db.Close()
	file := filepath.Join(dir, store.FileName)
	before, _ := os.Stat(file)
	diskBefore, err := store.Allocated(file)
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut := stRun(t, "state", "compact", "--state-dir", dir)
	if code != 0 {
		t.Fatalf("compact: exit %d, stderr %q", code, errOut)
	}
	after, _ := os.Stat(file)
	diskAfter, err := store.Allocated(file)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "compacted "+file) || !strings.Contains(out, "apparent size "+compactSize(before.Size())+" -> "+compactSize(after.Size())) {
		t.Errorf("compact output %q does not report the apparent size %s -> %s", out, compactSize(before.Size()), compactSize(after.Size()))
	}
	// The sparse file's apparent size (16 MiB reserved) says little about
	// the disk: the space allocated is reported first, and named.
	if !strings.Contains(out, ": "+compactSize(diskBefore)+" -> "+compactSize(diskAfter)+" on disk (allocated blocks)") {
		t.Errorf("compact output %q does not report the space on disk %s -> %s", out, compactSize(diskBefore), compactSize(diskAfter))
	}
	if diskBefore >= before.Size() {
		t.Logf("state file not sparse here (%d bytes allocated, %d apparent)", diskBefore, before.Size())
	}
	if after.Size() >= before.Size() {
		t.Errorf("compact: %d bytes before, %d after", before.Size(), after.Size())
	}
	if code, out, _ := stRun(t, "files", "--state-dir", dir); code != 0 || strings.Count(out, "\n") != 6 {
		t.Errorf("files after compact: exit %d, want the 5 rows back:\n%s", code, out)
	}
}

func TestStateCompactRefusesWhileDaemonRuns(t *testing.T) {
	dir := stShortDir(t)
	stServe(t, dir, stFill(t, dir))
	code, _, errOut := stRun(t, "state", "compact", "--state-dir", dir)
	if code != 1 || !strings.Contains(errOut, fmt.Sprintf("daemon (pid %d) is running", os.Getpid())) {
		t.Errorf("compact with a daemon: exit %d, stderr %q; want 1 naming the daemon", code, errOut)
	}
}

// No state where the state should be is a configuration error (exit 2):
// --state-dir is likely wrong.
func TestStateCompactWithoutState(t *testing.T) {
	code, _, errOut := stRun(t, "state", "compact", "--state-dir", t.TempDir())
	if code != exitUsage || !strings.Contains(errOut, "nothing to compact") {
		t.Errorf("compact with no state: exit %d, stderr %q", code, errOut)
	}
}

func TestCompactSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 5 << 20: "5.0 MiB", 3 << 30: "3.0 GiB"} {
		if got := compactSize(n); got != want {
			t.Errorf("compactSize(%d) = %q, want %q", n, got, want)
		}
	}
}
