package store

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const crashChildEnv = "TRACESYNC_STORE_CRASH_CHILD"

// crashPath is the path goroutine g of a child of the given round writes in
// its op k.
func crashPath(round string, g, k int) string {
	return fmt.Sprintf("/r/%s/%02d/%08d.json", round, g, k)
}

// runCrashChild writes records from several goroutines until it is killed,
// printing "ok G K" after each Update that returned nil. Each op k of
// goroutine g records a result the way the engine does (content, path,
// intent cleared in one transaction), changes the content of the previous
// path (moving its ref), removes the one before that, and links some paths
// to shared contents.
func runCrashChild(dir, round string) {
	db, err := Open(dir, Options{Target: targetA, Timeout: 10 * time.Second})
	if err != nil {
		fmt.Println("open:", err)
		return
	}
	var out sync.Mutex
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // killed long before
	defer cancel()
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for k := 0; ctx.Err() == nil; k++ {
				content := fmt.Sprintf("%d/%d", g, k)
				if k%4 == 0 {
					content = fmt.Sprintf("shared-%d", k%7)
				}
				err := db.Update(ctx, func(tx *Tx) error {
					h := hashOf(content)
					if err := tx.PutIntent(Intent{Hash: h, Path: crashPath(round, g, k), Phase: PhaseCreate, StartedAt: time.Now()}); err != nil {
						return err
					}
					if err := tx.PutContent(Content{Hash: h, Filename: "x.json", TraceIDs: []string{"trace-" + content}}); err != nil {
						return err
					}
					rec := PathRecord{Path: crashPath(round, g, k), Hash: h, State: StateUploaded, UpdatedAt: time.Now()}
					if err := tx.PutPath(rec); err != nil {
						return err
					}
					if err := tx.DeleteIntent(h); err != nil {
						return err
					}
					if k >= 1 && k%2 == 0 { // the previous file's bytes changed
						prev, err := tx.GetPath(crashPath(round, g, k-1))
						if err != nil {
							return err
						}
						prev.Hash = hashOf("changed " + content)
						prev.State = StatePending
						if err := tx.PutPath(prev); err != nil {
							return err
						}
					}
					if k >= 2 && k%3 == 0 {
						if _, err := tx.RemovePath(crashPath(round, g, k-2), time.Now()); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					return
				}
				out.Lock()
				fmt.Printf("ok %d %d\n", g, k)
				out.Unlock()
			}
		})
	}
	wg.Wait()
}

func TestCrashMidCommitLosesNothing(t *testing.T) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		runCrashChild(dir, os.Getenv(crashChildEnv+"_ROUND"))
		return
	}
	if testing.Short() {
		t.Skip("re-executes the test binary 20 times")
	}
	dir := t.TempDir()
	committed := map[string]bool{}
	const kills = 20
	for round := range kills {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashMidCommitLosesNothing$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+dir, fmt.Sprintf("%s_ROUND=%d", crashChildEnv, round))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		killAfter := 40 + (round*97)%400 // reported commits before the kill, varied per round
		sc := bufio.NewScanner(stdout)
		seen, killed := 0, false
		for sc.Scan() {
			line := sc.Text()
			var g, k int
			if _, err := fmt.Sscanf(line, "ok %d %d", &g, &k); err != nil {
				if !strings.HasPrefix(line, "PASS") && !strings.HasPrefix(line, "ok ") {
					t.Errorf("round %d: child said %q", round, line)
				}
				continue
			}
			committed[crashPath(fmt.Sprint(round), g, k)] = true
			if seen++; seen == killAfter && !killed {
				_ = cmd.Process.Signal(syscall.SIGKILL) // mid-commit: 16 writers are busy
				killed = true
			}
		}
		_ = cmd.Wait()
		if !killed {
			t.Fatalf("round %d: child stopped after %d commits before it was killed", round, seen)
		}

		db, err := Open(dir, Options{Target: targetA})
		if err != nil {
			t.Fatalf("round %d: reopen after SIGKILL: %v", round, err)
		}
		if db.Recovered() != "" {
			t.Fatalf("round %d: SIGKILL left a file bbolt could not open (moved to %s)", round, db.Recovered())
		}
		checkConsistent(t, db)
		for p := range committed {
			if _, err := db.GetPath(p); err != nil {
				t.Errorf("round %d: %s was reported committed before the kill but is missing: %v", round, p, err)
			}
		}
		// Atomicity: a path recorded uploaded always has its content,
		// and no intent outlives its transaction.
		err = db.ForEachPath("", func(r PathRecord) error {
			if r.State == StateUploaded {
				if _, err := db.GetContent(r.Hash); err != nil {
					return fmt.Errorf("%s uploaded but its content %s is missing: %w", r.Path, r.Hash, err)
				}
			}
			return nil
		})
		if err != nil {
			t.Errorf("round %d: %v", round, err)
		}
		if in, _ := db.Intents(); len(in) != 0 {
			t.Errorf("round %d: %d intents left, but every intent is cleared in the transaction that wrote it", round, len(in))
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d SIGKILLs, %d records reported committed, all present", kills, len(committed))
}
