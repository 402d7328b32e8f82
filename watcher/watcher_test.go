package watcher

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/rs/zerolog"
)

func TestAtomicRenameIsReadyOnce(t *testing.T) {
	root := tempRoot(t)
	r := startWatcher(t, Config{Roots: []string{root}})
	r.waitEvent(ScanDone, root, "")

	tmp := filepath.Join(root, ".a.json.tmp")
	final := filepath.Join(root, "a.json")
	writeFile(t, tmp, `{"trace": 1}`)
	if err := os.Rename(tmp, final); err != nil {
		t.Fatal(err)
	}
	ev := r.waitEvent(Ready, root, final)
	if ev.Stat.Size != int64(len(`{"trace": 1}`)) {
		t.Fatalf("Ready %s: size %d, want %d", final, ev.Stat.Size, len(`{"trace": 1}`))
	}
	fi, err := os.Stat(final)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Stat.Ino != fi.Sys().(*syscall.Stat_t).Ino {
		t.Fatalf("Ready %s: inode %d, want %d", final, ev.Stat.Ino, fi.Sys().(*syscall.Stat_t).Ino)
	}
	r.barrier(root)
	evs, _ := r.snapshot()
	if n := count(evs, Ready, final); n != 1 {
		t.Fatalf("%s: got %d Ready events, want 1:\n%s", final, n, dump(evs))
	}
	if n := count(evs, Ready, tmp); n != 0 {
		t.Fatalf("temporary %s reported Ready %d times, want never", tmp, n)
	}
}

func TestSlowWriterIsReadyOnceAfterLastWrite(t *testing.T) {
	root := tempRoot(t)
	// A settle well above the writer's pace: on a loaded machine a sleep of
	// a third of the settle can overshoot it, and the file was then quiet.
	settle := 5 * testSettle
	r := startWatcher(t, Config{Roots: []string{root}, Settle: settle})
	r.waitEvent(ScanDone, root, "")

	p := filepath.Join(root, "slow.jsonl")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	const writes = 6
	line := `{"span": "x"}` + "\n"
	for i := 0; i < writes; i++ {
		if _, err := f.WriteString(line); err != nil {
			t.Fatal(err)
		}
		time.Sleep(testSettle / 3) // the writer's pace, far below the settle time
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	ev := r.waitEvent(Ready, root, p)
	if want := int64(writes * len(line)); ev.Stat.Size != want {
		t.Fatalf("Ready %s with size %d, want %d (reported before the last write)", p, ev.Stat.Size, want)
	}
	r.barrier(root)
	evs, _ := r.snapshot()
	if n := count(evs, Ready, p); n != 1 {
		t.Fatalf("slow writer %s: got %d Ready events, want 1:\n%s", p, n, dump(evs))
	}
}

// A writer that creates a file and stalls before its first write, for
// longer than the settle time: the file has had nothing but its Create and
// is empty, but its writer still holds it open, so it is not reported
// empty; it is reported once, whole, after the writer closes it.
func TestStalledWriterEmptyFileWaits(t *testing.T) {
	root := tempRoot(t)
	r := startWatcher(t, Config{Roots: []string{root}})
	r.waitEvent(ScanDone, root, "")

	p := filepath.Join(root, "stalled.json")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * testSettle)
	const body = `{"late": true}`
	if _, err := f.WriteString(body); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	ev := r.waitEvent(Ready, root, p)
	if ev.Stat.Size != int64(len(body)) {
		t.Fatalf("Ready %s with size %d, want %d (reported while its writer held it open, empty)", p, ev.Stat.Size, len(body))
	}
	r.barrier(root)
	evs, _ := r.snapshot()
	if n := count(evs, Ready, p); n != 1 {
		t.Fatalf("stalled writer %s: got %d Ready events, want 1:\n%s", p, n, dump(evs))
	}
}

func TestBurstOfTenThousandFiles(t *testing.T) {
	root := tempRoot(t)
	r := startWatcher(t, Config{Roots: []string{root}})
	r.waitEvent(ScanDone, root, "")

	const n = 10000
	for i := 0; i < n; i++ {
		writeFile(t, filepath.Join(root, fmt.Sprintf("burst-%05d.json", i)), `{"i":1}`)
	}
	r.waitFor(fmt.Sprintf("%d Ready", n), func(evs []Event) bool {
		return count(evs, Ready, "") >= n
	})
	r.barrier(root)
	evs, _ := r.snapshot()
	seen := map[string]int{}
	for _, ev := range evs {
		if ev.Kind == Ready && strings.Contains(ev.Path, "burst-") {
			seen[ev.Path]++
		}
	}
	if len(seen) != n {
		t.Fatalf("burst: %d distinct files Ready, want %d", len(seen), n)
	}
	for p, c := range seen {
		if c != 1 {
			t.Fatalf("burst: %s Ready %d times, want 1", p, c)
		}
	}
}

func TestNewNestedDirectoriesFilledImmediately(t *testing.T) {
	root := tempRoot(t)
	r := startWatcher(t, Config{Roots: []string{root}})
	r.waitEvent(ScanDone, root, "")

	var want []string
	for i := 0; i < 5; i++ {
		d := filepath.Join(root, fmt.Sprintf("n%d", i), "b", "c")
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{
			filepath.Join(root, fmt.Sprintf("n%d", i), "top.json"),
			filepath.Join(root, fmt.Sprintf("n%d", i), "b", "mid.json"),
			filepath.Join(d, "deep.jsonl"),
		} {
			writeFile(t, p, "{}\n")
			want = append(want, p)
		}
	}
	for _, p := range want {
		r.waitEvent(Ready, root, p)
	}
	r.barrier(root)
	evs, _ := r.snapshot()
	for _, p := range want {
		if n := count(evs, Ready, p); n != 1 {
			t.Fatalf("%s: %d Ready events, want 1:\n%s", p, n, dump(evs))
		}
	}
	// The new directories are watched: a later file in the deepest one is seen.
	late := filepath.Join(root, "n0", "b", "c", "late.json")
	writeFile(t, late, "{}")
	r.waitEvent(Ready, root, late)
}

func TestDirectoryMovedInAndOut(t *testing.T) {
	root := tempRoot(t)
	outside := tempRoot(t)
	r := startWatcher(t, Config{Roots: []string{root}})
	r.waitEvent(ScanDone, root, "")

	src := filepath.Join(outside, "batch")
	writeFile(t, filepath.Join(src, "one.json"), "{}")
	writeFile(t, filepath.Join(src, "sub", "two.jsonl"), "{}\n")
	in := filepath.Join(root, "batch")
	if err := os.Rename(src, in); err != nil {
		t.Fatal(err)
	}
	r.waitEvent(Ready, root, filepath.Join(in, "one.json"))
	r.waitEvent(Ready, root, filepath.Join(in, "sub", "two.jsonl"))

	// Watched once moved in: a new file in its subdirectory is seen.
	three := filepath.Join(in, "sub", "three.json")
	writeFile(t, three, "{}")
	r.waitEvent(Ready, root, three)

	if err := os.Rename(in, filepath.Join(outside, "gone")); err != nil {
		t.Fatal(err)
	}
	r.waitEvent(Removed, root, in)
	r.removalBarrier(root)
	evs, _ := r.snapshot()
	for _, ev := range evs {
		if ev.Kind == Removed && ev.Path != in && strings.HasPrefix(ev.Path, in+"/") {
			t.Fatalf("moved-out directory: got Removed for %s inside it, want only %s:\n%s", ev.Path, in, dump(evs))
		}
	}
	// Not watched once moved out: writing there reports nothing under root.
	writeFile(t, filepath.Join(outside, "gone", "four.json"), "{}")
	r.barrier(root)
	evs, _ = r.snapshot()
	for _, ev := range evs {
		if ev.Kind == Ready && strings.Contains(ev.Path, "four.json") {
			t.Fatalf("a file written in a directory moved out was reported: %s", ev.Path)
		}
	}
}

func TestRootDeletedAndRecreated(t *testing.T) {
	t.Run("inotify", func(t *testing.T) { testRootDeletedAndRecreated(t, 0) })
	t.Run("polling", func(t *testing.T) { testRootDeletedAndRecreated(t, 20*time.Millisecond) })
}

func testRootDeletedAndRecreated(t *testing.T, poll time.Duration) {
	parent := tempRoot(t)
	root := filepath.Join(parent, "drop")
	for i := 0; i < 50; i++ {
		writeFile(t, filepath.Join(root, "sub", fmt.Sprintf("f%02d.json", i)), "{}")
	}
	r := startWatcher(t, Config{Roots: []string{root}, Poll: poll})
	r.waitCount(Ready, 50)
	r.waitEvent(ScanDone, root, "")

	if err := os.RemoveAll(root); err != nil {
		t.Fatal(err)
	}
	gone := r.waitEvent(RootGone, root, "")
	if gone.Reason != "missing" {
		t.Fatalf("RootGone reason %q, want %q", gone.Reason, "missing")
	}
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	r.waitEvent(RootBack, root, "")
	r.waitCount(ScanDone, 2)
	fresh := filepath.Join(root, "fresh.json")
	writeFile(t, fresh, "{}")
	r.waitEvent(Ready, root, fresh)
	// Past the removal grace of everything deleted with the root.
	r.removalBarrier(root)
	evs, _ := r.snapshot()
	if n := count(evs, Removed, ""); n != 1 {
		t.Fatalf("root deleted: got %d Removed events, want only the barrier's 1:\n%s", n, dump(evs))
	}
}

func TestInjectedOverflowTriggersRescan(t *testing.T) {
	root := tempRoot(t)
	w := newTestWatcher(t, Config{Roots: []string{root}})
	drop, inject := w.FSFaults()
	r := runRecorder(t, w)
	r.waitEvent(ScanDone, root, "")

	// Events lost as an overflowing kernel queue would lose them.
	drop.Store(true)
	missed := filepath.Join(root, "sub", "missed.json")
	writeFile(t, missed, "{}")
	inject <- fsnotify.ErrEventOverflow
	r.waitCount(ScanDone, 2)
	r.waitEvent(Ready, root, missed)
	drop.Store(false)
	// The rescan watched the directory created while events were lost.
	after := filepath.Join(root, "sub", "after.json")
	writeFile(t, after, "{}")
	r.waitEvent(Ready, root, after)
}

func TestSymlinks(t *testing.T) {
	root := tempRoot(t)
	outside := tempRoot(t)
	secret := filepath.Join(outside, "secret.json")
	writeFile(t, secret, `{"secret": true}`)
	real := filepath.Join(root, "real", "data.json")
	writeFile(t, real, `{"real": true}`)
	escape := filepath.Join(root, "escape.json")
	inside := filepath.Join(root, "inside.json")
	if err := os.Symlink(secret, escape); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, inside); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "outdir")); err != nil {
		t.Fatal(err)
	}

	t.Run("followed inside the roots only", func(t *testing.T) {
		r := startWatcher(t, Config{Roots: []string{root}, FollowSymlinks: true})
		ev := r.waitEvent(Ready, root, inside)
		if ev.Stat.Size != int64(len(`{"real": true}`)) {
			t.Fatalf("symlink %s: Stat size %d, want the target's %d", inside, ev.Stat.Size, len(`{"real": true}`))
		}
		late := filepath.Join(root, "late-escape.json")
		if err := os.Symlink(secret, late); err != nil {
			t.Fatal(err)
		}
		r.barrier(root)
		evs, _ := r.snapshot()
		for _, ev := range evs {
			if strings.Contains(ev.Path, "escape") || strings.HasPrefix(ev.Path, outside) || strings.Contains(ev.Path, "outdir") {
				t.Fatalf("symlink out of the root followed: %v %s", ev.Kind, ev.Path)
			}
		}
	})
	t.Run("not followed by default", func(t *testing.T) {
		r := startWatcher(t, Config{Roots: []string{root}})
		r.waitEvent(Ready, root, real)
		r.waitEvent(ScanDone, root, "")
		r.barrier(root)
		evs, _ := r.snapshot()
		for _, ev := range evs {
			if ev.Path == inside || ev.Path == escape {
				t.Fatalf("symlink %s reported without FollowSymlinks", ev.Path)
			}
		}
	})
}

func TestPollingMode(t *testing.T) {
	root := tempRoot(t)
	old := filepath.Join(root, "old.json")
	writeFile(t, old, "{}")
	r := startWatcher(t, Config{Roots: []string{root}, Poll: 30 * time.Millisecond})
	r.waitEvent(Ready, root, old)
	r.waitEvent(ScanDone, root, "")

	p := filepath.Join(root, "d", "polled.json")
	writeFile(t, p, `{"v":1}`)
	r.waitEvent(Ready, root, p)

	if err := os.WriteFile(p, []byte(`{"v":22}`), 0o644); err != nil {
		t.Fatal(err)
	}
	r.waitFor("second Ready after a change", func(evs []Event) bool {
		for _, ev := range evs {
			if ev.Kind == Ready && ev.Path == p && ev.Stat.Size == int64(len(`{"v":22}`)) {
				return true
			}
		}
		return false
	})
	if err := os.RemoveAll(filepath.Join(root, "d")); err != nil {
		t.Fatal(err)
	}
	r.waitEvent(Removed, root, filepath.Join(root, "d"))
	r.removalBarrier(root)
	evs, _ := r.snapshot()
	if n := count(evs, Removed, p); n != 0 {
		t.Fatalf("polling: the removed directory's file got its own Removed (%d), want it covered by the directory's:\n%s", n, dump(evs))
	}
}

func TestOnceMode(t *testing.T) {
	root := tempRoot(t)
	known := filepath.Join(root, "known.json")
	fresh := filepath.Join(root, "a", "fresh.jsonl")
	writeFile(t, known, "{}")
	writeFile(t, fresh, "{}\n")
	writeFile(t, filepath.Join(root, "notes.txt"), "not a trace")
	missing := filepath.Join(tempRoot(t), "no-such-root")

	var mu sync.Mutex
	asked := map[string]int{}
	evs := runOnce(t, Config{Roots: []string{root, missing},
		Known: perFile(func(p string, st Stat) bool {
			mu.Lock()
			asked[p]++
			mu.Unlock()
			return p == known
		})})
	if n := count(evs, Ready, fresh); n != 1 {
		t.Fatalf("Once: %s Ready %d times, want 1:\n%s", fresh, n, dump(evs))
	}
	if n := count(evs, Ready, ""); n != 1 {
		t.Fatalf("Once: %d Ready events, want 1 (known and non-matching files not reported):\n%s", n, dump(evs))
	}
	var sum *ScanSummary
	for i := range evs {
		if evs[i].Kind == ScanDone && evs[i].Root == root {
			sum = &evs[i].Scan
		}
	}
	if sum == nil || sum.Files != 2 || sum.Unchanged != 1 || sum.Errors != 0 {
		t.Fatalf("Once: ScanDone for %s = %+v, want Files 2, Unchanged 1, Errors 0:\n%s", root, sum, dump(evs))
	}
	if count(evs, RootGone, "") != 1 {
		t.Fatalf("Once: missing root not reported gone:\n%s", dump(evs))
	}
	if asked[known] != 1 || asked[fresh] < 1 {
		t.Fatalf("Known asked %v, want once for %s and at least once for %s", asked, known, fresh)
	}
}

func TestKnownSuppressesReady(t *testing.T) {
	root := tempRoot(t)
	a := filepath.Join(root, "a.json")
	b := filepath.Join(root, "b.json")
	writeFile(t, a, "{}")
	writeFile(t, b, "{}")
	fa, _ := os.Lstat(a)
	r := startWatcher(t, Config{Roots: []string{root}, RescanInterval: time.Hour,
		Known: perFile(func(p string, st Stat) bool {
			return p == a && st.Size == fa.Size() && st.ModTime.Equal(fa.ModTime())
		})})
	ev := r.waitEvent(ScanDone, root, "")
	if ev.Scan.Files != 2 || ev.Scan.Unchanged != 1 {
		t.Fatalf("ScanDone %+v, want Files 2, Unchanged 1", ev.Scan)
	}
	r.waitEvent(Ready, root, b)
	// A requested rescan reports neither again: a is known, b was reported.
	r.w.Rescan()
	r.waitCount(ScanDone, 2)
	r.barrier(root)
	evs, _ := r.snapshot()
	if count(evs, Ready, a) != 0 || count(evs, Ready, b) != 1 {
		t.Fatalf("Known: a Ready %d times (want 0), b %d times (want 1):\n%s", count(evs, Ready, a), count(evs, Ready, b), dump(evs))
	}
	// a changes: Known no longer vouches for it.
	if err := os.WriteFile(a, []byte(`{"changed": true}`), 0o644); err != nil {
		t.Fatal(err)
	}
	r.waitEvent(Ready, root, a)
}

func TestIncludeExcludeAndIgnoredNames(t *testing.T) {
	root := tempRoot(t)
	r := startWatcher(t, Config{Roots: []string{root},
		Include: []string{"*.json", "*.jsonl", "*.trace"},
		Exclude: []string{"archive", "*-draft.json", "logs/*.jsonl"}})
	r.waitEvent(ScanDone, root, "")
	wanted := []string{"a.json", "b.jsonl", "c.trace", "sub/d.json", "other/e.jsonl"}
	unwanted := []string{"notes.txt", ".hidden.json", ".dot/x.json", "x.json.tmp", "y.json.part",
		"z.json.swp", "w.json~", "#v.json#", "archive/old.json", "q-draft.json", "logs/l.jsonl"}
	for _, n := range append(append([]string{}, unwanted...), wanted...) {
		writeFile(t, filepath.Join(root, n), "{}\n")
	}
	for _, n := range wanted {
		r.waitEvent(Ready, root, filepath.Join(root, n))
	}
	r.barrier(root)
	evs, _ := r.snapshot()
	for _, n := range unwanted {
		if c := count(evs, Ready, filepath.Join(root, n)); c != 0 {
			t.Fatalf("%s should be ignored, got %d Ready", n, c)
		}
	}
}

func TestFIFONamedJSONDoesNotBlock(t *testing.T) {
	root := tempRoot(t)
	if err := syscall.Mkfifo(filepath.Join(root, "before.json"), 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	r := startWatcher(t, Config{Roots: []string{root}})
	r.waitEvent(ScanDone, root, "")
	if err := syscall.Mkfifo(filepath.Join(root, "during.json"), 0o644); err != nil {
		t.Fatal(err)
	}
	r.barrier(root)
	r.w.Rescan()
	r.waitCount(ScanDone, 2)
	evs, _ := r.snapshot()
	for _, ev := range evs {
		if strings.HasSuffix(ev.Path, "before.json") || strings.HasSuffix(ev.Path, "during.json") {
			t.Fatalf("FIFO reported: %v %s", ev.Kind, ev.Path)
		}
	}
}

func TestResettleReportsIncompleteAfterTimeout(t *testing.T) {
	root := tempRoot(t)
	p := filepath.Join(root, "half.json")
	writeFile(t, p, `{"half":`)
	r := startWatcher(t, Config{Roots: []string{root}, SettleTimeout: 4 * testSettle})
	r.waitEvent(Ready, root, p)
	// The engine keeps finding it incomplete.
	for i := 1; ; i++ {
		r.w.Resettle(p)
		evs := r.waitFor("Ready or Incomplete after Resettle", func(evs []Event) bool {
			return count(evs, Ready, p) > i || count(evs, Incomplete, p) > 0
		})
		if count(evs, Incomplete, p) > 0 {
			break
		}
		if i > 100 {
			t.Fatalf("never reported Incomplete after %d Resettle calls", i)
		}
	}
}

func TestRootMarkerMissing(t *testing.T) {
	root := tempRoot(t)
	marker := filepath.Join(root, ".tracesync-root")
	writeFile(t, marker, "")
	r := startWatcher(t, Config{Roots: []string{root}, RootMarker: ".tracesync-root"})
	r.waitEvent(ScanDone, root, "")
	if err := os.Remove(marker); err != nil {
		t.Fatal(err)
	}
	ev := r.waitEvent(RootGone, root, "")
	if ev.Reason != "marker .tracesync-root missing" {
		t.Fatalf("RootGone reason %q, want %q", ev.Reason, "marker .tracesync-root missing")
	}
	writeFile(t, marker, "")
	r.waitEvent(RootBack, root, "")
	r.waitCount(ScanDone, 2)
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no roots", Config{}},
		{"grace not above settle", Config{Roots: []string{"/tmp"}, Settle: time.Second, RemoveGrace: time.Second}},
		{"bad glob", Config{Roots: []string{"/tmp"}, Include: []string{"["}}},
		{"nested roots", Config{Roots: []string{"/tmp", "/tmp/x"}}},
		{"marker path", Config{Roots: []string{"/tmp"}, RootMarker: "a/b"}},
	} {
		if _, err := New(tc.cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: New error %v, want ErrConfig", tc.name, err)
		}
	}
	w, err := New(Config{Roots: []string{"rel/../x"}})
	if err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(w.cfg.Roots[0]) || w.cfg.Settle != DefaultSettle || w.cfg.RemoveGrace != 2*DefaultSettle+time.Second {
		t.Fatalf("defaults: roots %v settle %v grace %v", w.cfg.Roots, w.cfg.Settle, w.cfg.RemoveGrace)
	}
}

// syncBuffer is a log sink safe for the watcher's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
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

func TestOutOfWatchesFallsBackToPolling(t *testing.T) {
	root := tempRoot(t)
	full := filepath.Join(root, "full")
	if err := os.MkdirAll(filepath.Join(full, "deeper"), 0o755); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	cfg := Config{Roots: []string{root}, Poll: 0, Settle: testSettle, RemoveGrace: 3 * testSettle,
		Log: zerolog.New(&logs)}
	w, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The kernel refuses watches for the "full" subtree.
	w.SetAddWatch(func(fsw *fsnotify.Watcher, dir string) error {
		if isUnder(dir, full) {
			return fmt.Errorf("add watch %s: %w", dir, syscall.ENOSPC)
		}
		return fsw.Add(dir)
	})
	w.fallbackPoll = 30 * time.Millisecond
	r := runRecorder(t, w)
	r.waitEvent(ScanDone, root, "")
	if !strings.Contains(logs.String(), "fs.inotify.max_user_watches") || !strings.Contains(logs.String(), "sysctl fs.inotify.max_user_watches=524288") {
		t.Fatalf("no clear error naming fs.inotify.max_user_watches and the sysctl to raise it; log:\n%s", logs.String())
	}
	if n := strings.Count(logs.String(), "sysctl fs.inotify.max_user_watches"); n != 1 {
		t.Fatalf("the watch-limit error was logged %d times, want once", n)
	}
	// Polled.
	p := filepath.Join(full, "deeper", "polled.json")
	writeFile(t, p, "{}")
	r.waitEvent(Ready, root, p)
	// Watched parts still work by inotify.
	q := filepath.Join(root, "watched.json")
	writeFile(t, q, "{}")
	r.waitEvent(Ready, root, q)
}

func TestCheckRoot(t *testing.T) {
	dir := tempRoot(t)
	file := filepath.Join(dir, "plain")
	writeFile(t, file, "x")
	writeFile(t, filepath.Join(dir, "m", ".marker"), "")
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	dev := uint64(st.Dev)
	for _, tc := range []struct {
		name, root, marker string
		wantDev            uint64
		haveDev            bool
		want               string
	}{
		{"healthy", dir, "", dev, true, ""},
		{"missing", filepath.Join(dir, "nope"), "", 0, false, "missing"},
		{"not a directory", file, "", 0, false, "not a directory"},
		{"device changed", dir, "", dev + 1, true, fmt.Sprintf("device changed from %d to %d", dev+1, dev)},
		{"marker missing", dir, ".marker", dev, true, "marker .marker missing"},
		{"marker present", filepath.Join(dir, "m"), ".marker", dev, true, ""},
	} {
		h := checkRoot(tc.root, tc.marker, tc.wantDev, tc.haveDev)
		if h.reason != tc.want || h.ok != (tc.want == "") {
			t.Errorf("%s: checkRoot = ok %v reason %q, want reason %q", tc.name, h.ok, h.reason, tc.want)
		}
	}
}

func TestRootNotADirectoryAtStart(t *testing.T) {
	dir := tempRoot(t)
	file := filepath.Join(dir, "file-root")
	writeFile(t, file, "x")
	r := startWatcher(t, Config{Roots: []string{file}})
	ev := r.waitEvent(RootGone, file, "")
	if ev.Reason != "not a directory" {
		t.Fatalf("RootGone reason %q, want %q", ev.Reason, "not a directory")
	}
	// It becomes a directory: RootBack, then a scan that finds its files.
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(file, "t.json"), "{}")
	r.waitEvent(RootBack, file, "")
	r.waitEvent(Ready, file, filepath.Join(file, "t.json"))
	r.waitEvent(ScanDone, file, "")
}

func TestNoRecursive(t *testing.T) {
	root := tempRoot(t)
	top := filepath.Join(root, "top.json")
	deep := filepath.Join(root, "sub", "deep.json")
	writeFile(t, top, "{}")
	writeFile(t, deep, "{}")
	r := startWatcher(t, Config{Roots: []string{root}, NoRecursive: true})
	r.waitEvent(Ready, root, top)
	ev := r.waitEvent(ScanDone, root, "")
	if ev.Scan.Files != 1 {
		t.Fatalf("non-recursive scan counted %d files, want 1 (the subdirectory's file is not watched)", ev.Scan.Files)
	}
	later := filepath.Join(root, "sub", "later.json")
	writeFile(t, later, "{}")
	writeFile(t, filepath.Join(root, "newdir", "x.json"), "{}")
	r.barrier(root)
	evs, _ := r.snapshot()
	for _, ev := range evs {
		if ev.Kind == Ready && strings.Contains(ev.Path, string(filepath.Separator)+"sub"+string(filepath.Separator)) ||
			strings.Contains(ev.Path, "newdir") {
			t.Fatalf("non-recursive: %s reported", ev.Path)
		}
	}
}

func TestPeriodicRescan(t *testing.T) {
	root := tempRoot(t)
	writeFile(t, filepath.Join(root, "a.json"), "{}")
	r := startWatcher(t, Config{Roots: []string{root}, RescanInterval: 20 * time.Millisecond})
	// Settling takes longer than a rescan: count the scans after Ready,
	// so a slow machine does not end the wait before the file settled.
	r.waitEvent(Ready, root, filepath.Join(root, "a.json"))
	first := count(r.waitCount(ScanDone, 1), ScanDone, "")
	evs := r.waitCount(ScanDone, first+4)
	if n := count(evs, Ready, filepath.Join(root, "a.json")); n != 1 {
		t.Fatalf("periodic rescans reported an untouched file %d times, want 1:\n%s", n, dump(evs))
	}
	for _, ev := range evs {
		if ev.Kind == ScanDone && (ev.Scan.Files != 1 || ev.Scan.RootDev == 0 || ev.Scan.Started.IsZero()) {
			t.Fatalf("ScanDone summary %+v: want Files 1, RootDev and Started set", ev.Scan)
		}
	}
}

func TestDirectoryRenamedWithinRoot(t *testing.T) {
	root := tempRoot(t)
	oldDir := filepath.Join(root, "a")
	writeFile(t, filepath.Join(oldDir, "sub", "x.json"), "{}")
	r := startWatcher(t, Config{Roots: []string{root}})
	r.waitEvent(Ready, root, filepath.Join(oldDir, "sub", "x.json"))
	r.waitEvent(ScanDone, root, "")

	newDir := filepath.Join(root, "b")
	if err := os.Rename(oldDir, newDir); err != nil {
		t.Fatal(err)
	}
	r.waitEvent(Ready, root, filepath.Join(newDir, "sub", "x.json"))
	r.waitEvent(Removed, root, oldDir)
	// Events under the new name carry the new name.
	y := filepath.Join(newDir, "sub", "y.json")
	writeFile(t, y, "{}")
	r.waitEvent(Ready, root, y)
	r.barrier(root)
	evs, _ := r.snapshot()
	for _, ev := range evs {
		if ev.Kind == Ready && strings.HasSuffix(ev.Path, "y.json") && ev.Path != y {
			t.Fatalf("file in a renamed directory reported under a stale path %s, want %s", ev.Path, y)
		}
	}
}

// A clean scan logs nothing at info level: the command says what the first
// scan found, and a rescan every --rescan-interval would be noise.
func TestCleanScanIsQuietAtInfo(t *testing.T) {
	root := tempRoot(t)
	writeFile(t, filepath.Join(root, "a.json"), "{}")
	var logs syncBuffer
	w, err := New(Config{Roots: []string{root}, Settle: testSettle, Log: zerolog.New(&logs).Level(zerolog.InfoLevel)})
	if err != nil {
		t.Fatal(err)
	}
	r := runRecorder(t, w)
	r.waitEvent(ScanDone, root, "")
	if strings.Contains(logs.String(), "scan done") {
		t.Fatalf("a clean scan logged at info:\n%s", logs.String())
	}
}

// A full scan's summary carries the keys of every file it matched, so the
// consumer finds tracked files that are gone without a stat of each.
func TestScanDoneCarriesKeys(t *testing.T) {
	root := tempRoot(t)
	a, b := filepath.Join(root, "a.json"), filepath.Join(root, "sub", "b.jsonl")
	writeFile(t, a, "{}")
	writeFile(t, b, "{}\n")
	writeFile(t, filepath.Join(root, "skip.txt"), "no")
	r := startWatcher(t, Config{Roots: []string{root}, Settle: 20 * time.Millisecond})
	ev := r.waitEvent(ScanDone, root, "")
	if !ev.Scan.Keyed || !ev.Scan.Saw(a) || !ev.Scan.Saw(b) {
		t.Fatalf("scan summary keyed %v, saw a %v, b %v: want both", ev.Scan.Keyed, ev.Scan.Saw(a), ev.Scan.Saw(b))
	}
	if ev.Scan.Saw(filepath.Join(root, "skip.txt")) || ev.Scan.Saw(filepath.Join(root, "gone.json")) {
		t.Fatalf("scan summary saw a file it should not have: %v", ev.Scan.Seen)
	}
	if len(ev.Scan.Seen) != 2 {
		t.Fatalf("keys %v, want 2", ev.Scan.Seen)
	}
}
