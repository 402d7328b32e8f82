package watcher

// Local faults of issue 7 at the watcher: special files and symlink loops
// named like traces, odd names, a 4,000-byte path, and a directory of
// 100,000 files. Nothing blocks a scan, nothing is reported that cannot be
// read as a file, and what is only odd (not broken) is not counted as an
// I/O error, which would hold back every removal (rule 6) for as long as
// it stays.

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// runOnce runs a Once watcher over cfg's roots to the end and returns its
// events; it fails the test if Run does not return by itself.
func runOnce(t *testing.T, cfg Config) []Event {
	t.Helper()
	cfg.Once = true
	if cfg.Settle == 0 {
		cfg.Settle = testSettle
	}
	w, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var evs []Event
	for ev := range w.Events() {
		evs = append(evs, ev)
	}
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatalf("Once scan did not finish by itself (blocked?):\n%s", dump(evs))
	}
	return evs
}

func scanOf(t *testing.T, evs []Event, root string) ScanSummary {
	t.Helper()
	for _, ev := range evs {
		if ev.Kind == ScanDone && ev.Root == root {
			return ev.Scan
		}
	}
	t.Fatalf("no ScanDone for %s:\n%s", root, dump(evs))
	return ScanSummary{}
}

// specialTree makes, under root, a socket, a character device (when
// allowed) and symlink loops, all named like traces, plus one good file.
func specialTree(t *testing.T, root string) (good string) {
	t.Helper()
	good = filepath.Join(root, "good.json")
	writeFile(t, good, `{"ok": true}`)
	ln, err := net.Listen("unix", filepath.Join(root, "socket.json"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	if err := syscall.Mknod(filepath.Join(root, "zero.json"), syscall.S_IFCHR|0o644, int(unix.Mkdev(1, 5))); err != nil {
		t.Logf("no device file (%v): needs CAP_MKNOD; the socket stands for it", err)
	}
	// A link to itself, a two-link cycle, and a directory link to its own
	// parent (a cycle a walker that entered directory links would loop in).
	for _, l := range [][2]string{{"self.json", "self.json"}, {"ping.json", "pong.json"}, {"pong.json", "ping.json"}} {
		if err := os.Symlink(l[1], filepath.Join(root, l[0])); err != nil {
			t.Fatal(err)
		}
	}
	sub := filepath.Join(root, "sub")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("..", filepath.Join(sub, "up")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("up/sub/up/good.json", filepath.Join(sub, "deep.json")); err != nil {
		t.Fatal(err)
	}
	return good
}

// Sockets, devices and symlink loops named *.json are neither reported nor
// opened, the scan ends, and they are not I/O errors: with or without
// FollowSymlinks.
func TestSpecialFilesAndSymlinkLoopsIgnored(t *testing.T) {
	for _, follow := range []bool{false, true} {
		t.Run(fmt.Sprintf("follow=%v", follow), func(t *testing.T) {
			root := tempRoot(t)
			good := specialTree(t, root)
			evs := runOnce(t, Config{Roots: []string{root}, FollowSymlinks: follow})
			var ready []string
			for _, ev := range evs {
				if ev.Kind == Ready {
					ready = append(ready, ev.Path)
				}
			}
			want := []string{good}
			if follow {
				// sub/deep.json resolves (through the directory link) to
				// good.json inside the root: a symlink to a file, followed.
				want = append(want, filepath.Join(root, "sub", "deep.json"))
			}
			if strings.Join(ready, "\n") != strings.Join(want, "\n") && !(len(ready) == 2 && len(want) == 2 && ready[0] == want[1] && ready[1] == want[0]) {
				t.Fatalf("Ready %q, want %q:\n%s", ready, want, dump(evs))
			}
			if s := scanOf(t, evs, root); s.Errors != 0 {
				t.Fatalf("scan counted %d I/O errors (first %q): a symlink loop or special file would hold back every removal", s.Errors, s.FirstErr)
			}
		})
	}
}

// While watching: a socket and a symlink loop appearing, and a file swapped
// for a FIFO while it settles, are not reported and block nothing; the next
// file is reported as usual.
func TestSpecialFilesWhileWatching(t *testing.T) {
	root := tempRoot(t)
	r := startWatcher(t, Config{Roots: []string{root}, FollowSymlinks: true})
	r.waitEvent(ScanDone, root, "")
	swapped := filepath.Join(root, "swapped.json")
	// Its writer holds it open until the swap, so that a stall of this
	// test past the settle time cannot get the half file reported.
	half, err := os.Create(swapped)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := half.WriteString(`{"half":`); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(swapped); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(swapped, 0o644); err != nil {
		t.Fatal(err)
	}
	half.Close()
	ln, err := net.Listen("unix", filepath.Join(root, "late-socket.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := os.Symlink("loop.json", filepath.Join(root, "loop.json")); err != nil {
		t.Fatal(err)
	}
	r.barrier(root)
	r.w.Rescan()
	r.waitCount(ScanDone, 2)
	evs, _ := r.snapshot()
	for _, ev := range evs {
		if ev.Kind == Ready && ev.Path != "" && !strings.Contains(ev.Path, "zz-barrier") {
			t.Fatalf("reported %v %s:\n%s", ev.Kind, ev.Path, dump(evs))
		}
		if ev.Kind == ScanDone && ev.Scan.Errors != 0 {
			t.Fatalf("rescan counted %d errors (%s)", ev.Scan.Errors, ev.Scan.FirstErr)
		}
	}
}

// longPath builds a path under root of exactly total bytes ending in name,
// through directories of at most 200 bytes (a component may be 255).
func longPath(root string, total int, name string) string {
	p := root
	for total-len(p)-1 > 255 {
		p = filepath.Join(p, strings.Repeat("d", min(200, total-len(p)-1-1-20)))
	}
	return filepath.Join(p, strings.Repeat("x", total-len(p)-1-len(name))+name)
}

// Odd names (a newline, invalid UTF-8, a backslash) and a 4,000-byte path
// are reported Ready under their exact paths, from the first scan and when
// they appear while watching.
func TestOddNamesAndLongPath(t *testing.T) {
	root := tempRoot(t)
	names := []string{"two\nlines.json", "bad-\xff\xfe.json", `back\slash.json`, "tab\tand space.jsonl"}
	var before, during []string
	for _, n := range names {
		before = append(before, filepath.Join(root, "old", n))
		during = append(during, filepath.Join(root, "new", n))
	}
	before = append(before, longPath(filepath.Join(root, "old"), 4000, ".json"))
	for _, p := range before {
		writeFile(t, p, "{}\n")
	}
	if n := len(before[len(before)-1]); n != 4000 {
		t.Fatalf("long path is %d bytes, want 4000", n)
	}
	r := startWatcher(t, Config{Roots: []string{root}})
	r.waitEvent(ScanDone, root, "")
	during = append(during, longPath(filepath.Join(root, "new"), 4000, ".json"))
	for _, p := range during {
		writeFile(t, p, "{}\n")
	}
	for _, p := range append(before, during...) {
		r.waitEvent(Ready, root, p)
	}
	if s := scanOf(t, r.waitCount(ScanDone, 1), root); s.Errors != 0 {
		t.Fatalf("scan errors %d: %s", s.Errors, s.FirstErr)
	}
}

// A directory of 100,000 files: a restart's scan (every file Known) and
// the handful of new files among them. The figures are logged; nothing
// asserts on time (the machines are shared).
func TestHundredThousandFiles(t *testing.T) {
	if testing.Short() {
		t.Skip("creates 100,000 files; skipped with -short")
	}
	root := tempRoot(t)
	dir := filepath.Join(root, "big")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	const n = 100_000
	start := time.Now()
	for i := range n {
		f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("t-%06d.json", i)), os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	created := time.Since(start)
	fresh := map[string]bool{}
	for i := 0; i < n; i += n / 10 {
		fresh[filepath.Join(dir, fmt.Sprintf("t-%06d.json", i))] = true
	}
	var asked atomic.Int64
	start = time.Now()
	evs := runOnce(t, Config{Roots: []string{root}, Known: perFile(func(p string, st Stat) bool {
		asked.Add(1)
		return !fresh[p]
	})})
	scanned := time.Since(start)
	s := scanOf(t, evs, root)
	if s.Files != n || s.Unchanged != n-len(fresh) || s.Errors != 0 {
		t.Fatalf("ScanDone %+v, want Files %d, Unchanged %d, Errors 0", s, n, n-len(fresh))
	}
	if got := asked.Load(); got != n {
		t.Fatalf("Known asked %d times, want once per file (%d)", got, n)
	}
	for p := range fresh {
		if c := count(evs, Ready, p); c != 1 {
			t.Fatalf("new file %s Ready %d times, want 1", p, c)
		}
	}
	if c := count(evs, Ready, ""); c != len(fresh) {
		t.Fatalf("%d Ready, want only the %d new files", c, len(fresh))
	}
	t.Logf("100,000 files: created in %v; Once scan (Known for each, %d new settled) in %v", created, len(fresh), scanned)
}
