package uploader_test

// Local faults of issue 7 at the engine: what the file system does between
// the watcher's Ready and the upload (a file swapped for a FIFO, socket or
// device, deleted, truncated, unreadable), odd names and paths, and a state
// store that stops taking writes. Each ends with the file uploaded,
// quarantined with a reason, or ignored; nothing hangs, nothing is lost or
// created twice.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/tracesync/tracesync/client/stratixtest"
	"github.com/tracesync/tracesync/store"
	"github.com/tracesync/tracesync/uploader"
	"github.com/tracesync/tracesync/watcher"
)

// swapForSpecial replaces the file at p with a FIFO, a unix socket or a
// character device (root only) of the same name.
func swapForSpecial(t *testing.T, p, kind string) {
	t.Helper()
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	switch kind {
	case "fifo":
		if err := syscall.Mkfifo(p, 0o644); err != nil {
			t.Fatal(err)
		}
	case "socket":
		ln, err := net.Listen("unix", p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
	case "device":
		// /dev/zero: reading it never ends, so a hasher that opens it
		// blindly would spin until the size limit.
		if err := syscall.Mknod(p, syscall.S_IFCHR|0o644, int(unix.Mkdev(1, 5))); err != nil {
			t.Skipf("cannot make a device file (%v): needs CAP_MKNOD", err)
		}
	}
}

// A file swapped for a FIFO, a socket or a device after the watcher found
// it settled must not block the hasher: it is quarantined as unreadable
// ("not a regular file"), and the next file is hashed and uploaded by the
// same (single) hash worker.
func TestSpecialFileAfterSettleDoesNotBlockHashing(t *testing.T) {
	for _, kind := range []string{"fifo", "socket", "device"} {
		t.Run(kind, func(t *testing.T) {
			cfg := fastConfig()
			cfg.HashWorkers = 1
			h := newHarness(t, cfg, stratixtest.Options{})
			p := h.write("swapped.json", traceA)
			st := statOf(t, p)
			swapForSpecial(t, p, kind)
			h.send(readyEvent(h, p, st))
			b := h.write("next.json", traceB)
			h.ready(b)
			r := h.waitState(p, store.StateQuarantined)
			if !strings.Contains(r.LastError, "not a regular file") && !strings.Contains(r.LastError, "cannot read") {
				t.Fatalf("%s quarantined with %q, want a reason saying it is not a regular file", kind, r.LastError)
			}
			h.waitState(b, store.StateUploaded)
			if n := h.srv.CreatesByHash()[hexHash(traceA)]; n != 0 {
				t.Fatalf("the %s's former content was created %d times", kind, n)
			}
		})
	}
}

// A file swapped for a FIFO after it was hashed, while its upload waits for
// presign: the worker's open for the PUT must not block either (a blocked
// open cannot be cancelled, not even by Shutdown).
func TestFIFOAfterHashDoesNotBlockUpload(t *testing.T) {
	cfg := fastConfig()
	cfg.Workers = 1
	h := newHarness(t, cfg, stratixtest.Options{})
	p := h.write("swapped.json", traceA)
	h.hooks.once(&h.hooks.presign, func() {
		if err := os.Remove(p); err != nil {
			t.Error(err)
		}
		if err := syscall.Mkfifo(p, 0o644); err != nil {
			t.Error(err)
		}
	})
	h.ready(p)
	t.Cleanup(func() {
		// A worker stuck in a blocking open(2) for reading waits for a
		// writer: become one (non-blocking, so this never waits itself),
		// so that a failing test still ends.
		if f, err := os.OpenFile(p, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
		os.Remove(p)
	})
	// A worker blocked in open(2) never reports: the path stays pending
	// and this wait fails.
	h.waitFor("the path to leave pending", func() bool {
		s := h.rec(p).State
		return s == store.StateQuarantined || s == store.StateRetrying || h.rs.has(p)
	})
	if n := h.srv.Calls(stratixtest.EndpointCreate); n != 0 {
		t.Fatalf("%d creates for a path that is now a FIFO", n)
	}
	b := h.write("next.json", traceB)
	h.ready(b)
	h.waitState(b, store.StateUploaded)
}

// readyEvent is the watcher's Ready for p with a stat taken earlier.
func readyEvent(h *harness, p string, st watcher.Stat) watcher.Event {
	return watcher.Event{Kind: watcher.Ready, Root: h.root, Path: p, Stat: st}
}

// A file deleted after it was hashed, while its upload waits for presign:
// nothing is created for it and no intent is left behind; the same bytes
// under another name are still uploaded (from that name), once; the
// watcher's Removed then marks the path removed.
func TestDeletedBetweenSettleAndUpload(t *testing.T) {
	cfg := fastConfig()
	cfg.Workers = 1
	h := newHarness(t, cfg, stratixtest.Options{})
	alone := h.write("alone.json", traceB)
	removed := make(chan struct{})
	h.hooks.once(&h.hooks.presign, func() {
		if err := os.Remove(alone); err != nil {
			t.Error(err)
		}
		close(removed)
	})
	h.ready(alone)
	<-removed
	h.waitFor("the upload of the deleted file to end", func() bool {
		in, _ := h.db.Intents()
		p := h.eng.Progress()
		return len(in) == 0 && p.InFlight == 0 && p.Queued == 0
	})
	if n := h.srv.Calls(stratixtest.EndpointCreate); n != 0 {
		t.Fatalf("a file deleted before its PUT: %d creates, want 0", n)
	}
	h.removed(alone)
	h.waitState(alone, store.StateRemoved)

	// Two names, one content: the one being read is deleted. The presign
	// waits until the second name is known and the first is gone.
	first := h.write("first.json", traceA)
	second := h.write("later/second.json", traceA)
	presigning, goOn := make(chan struct{}), make(chan struct{})
	h.hooks.once(&h.hooks.presign, func() { close(presigning); <-goOn })
	h.ready(first)
	<-presigning
	h.ready(second)
	h.waitFor("both paths to wait for the upload", func() bool { return h.eng.Progress().Hashing == 0 && h.rec(second).State == store.StatePending })
	err := os.Remove(first)
	close(goOn)
	if err != nil {
		t.Fatal(err)
	}
	h.waitState(second, store.StateUploaded)
	if n := h.srv.CreatesByHash()[hexHash(traceA)]; n != 1 {
		t.Fatalf("content read from its second name: %d creates, want 1", n)
	}
	h.removed(first)
	h.waitState(first, store.StateRemoved)
}

// A .jsonl file truncated (at a line boundary: still valid) after it was
// hashed: the PUT sends fewer bytes than decided, create is not called, the
// path goes back to settling, and its new bytes are uploaded, once.
func TestTruncatedBetweenSettleAndUpload(t *testing.T) {
	h := newHarness(t, fastConfig(), stratixtest.Options{})
	full := "{\"line\":1}\n{\"line\":2}\n{\"line\":3}\n"
	cut := "{\"line\":1}\n"
	p := h.write("cut.jsonl", full)
	h.hooks.once(&h.hooks.presign, func() {
		if err := os.Truncate(p, int64(len(cut))); err != nil {
			t.Error(err)
		}
	})
	h.ready(p)
	h.waitFor("the path to go back to settling", func() bool { return h.rs.has(p) })
	if n := h.srv.Calls(stratixtest.EndpointCreate); n != 0 {
		t.Fatalf("truncated mid-upload: %d creates, want 0", n)
	}
	h.ready(p)
	h.waitFor("the truncated bytes to be uploaded", func() bool {
		r := h.rec(p)
		return r.State == store.StateUploaded && r.Hash.String() == hexHash(cut)
	})
	if c := h.srv.CreatesByHash(); c[hexHash(full)] != 0 || c[hexHash(cut)] != 1 {
		t.Fatalf("creates by hash %v: want only the truncated content, once", c)
	}
}

// Odd names (a newline, a backslash) and a 4,000-byte path are uploaded
// under their basename, once, and a lost create answer for each is adopted,
// not created again (rule 9 finds the traces by the name the server
// recorded). A name that is not valid UTF-8 is quarantined with the reason
// before anything is sent.
func TestOddNamesUploadedOnce(t *testing.T) {
	h := newHarness(t, fastConfig(), stratixtest.Options{})
	// A path of 4,000 bytes: components of at most 200 bytes (255 is the
	// most a component may have), then a file name of what is left.
	rel := ""
	for 4000-len(h.root)-1-len(rel) > 255 {
		rel += strings.Repeat("d", min(200, 4000-len(h.root)-1-len(rel)-1-20)) + "/"
	}
	rel += strings.Repeat("f", 4000-len(h.root)-1-len(rel)-len(".json")) + ".json"
	long := h.write(rel, `{"long": true}`)
	if len(long) != 4000 {
		t.Fatalf("long path is %d bytes, want 4000", len(long))
	}
	names := map[string]string{
		"newline":      "two\nlines.json",
		"invalid-utf8": "bad-\xff\xfe-name.json",
		"backslash":    `windows\style.json`,
		"long":         "",
	}
	paths := map[string]string{"long": long}
	for k, name := range names {
		if name != "" {
			paths[k] = h.write(name, fmt.Sprintf(`{"name": %q}`, k))
		}
	}
	for _, k := range []string{"long", "newline", "backslash", "invalid-utf8"} {
		p := paths[k]
		base := filepath.Base(p)
		switch k {
		case "invalid-utf8":
			// The API takes names as UTF-8 text: it would record another
			// name, which recovery could never match.
			h.ready(p)
			r := h.waitState(p, store.StateQuarantined)
			if !strings.Contains(r.LastError, "not valid UTF-8") || !strings.Contains(r.LastError, "rename the file") {
				t.Fatalf("invalid UTF-8 name quarantined with %q: want the reason and the fix", r.LastError)
			}
		case "backslash":
			// The fake, like a cautious API, refuses a name that looks
			// like a path: quarantined with the server's message (the
			// whole name reached it; before, the client cut it to
			// "style.json" and a lost create answer was created twice).
			h.ready(p)
			r := h.waitState(p, store.StateQuarantined)
			if !strings.Contains(r.LastError, "400") || !strings.Contains(r.LastError, "base name") {
				t.Fatalf("backslash name quarantined with %q: want the server's 400 and message", r.LastError)
			}
		default:
			h.srv.LoseCreateResponseNext(1)
			h.ready(p)
			r := h.waitState(p, store.StateUploaded)
			if n := h.srv.CreatesByHash()[r.Hash.String()]; n != 1 {
				t.Fatalf("%s %q: %d creates (a lost create answer for this name was not adopted), want 1", k, base, n)
			}
		}
		if n := h.srv.CreatesByFilename()[base]; k != "long" && k != "newline" && n != 0 {
			t.Fatalf("%s %q: %d creates, want 0", k, base, n)
		}
		if in, _ := h.db.Intents(); len(in) != 0 {
			t.Fatalf("%s: intents left: %+v", k, in)
		}
	}
	if c := h.srv.CreatesByFilename(); c["style.json"] != 0 {
		t.Fatalf("a name was shortened at a backslash: %v", c)
	}
}

// failingStore is a real store whose writes start failing (a state
// directory remounted read-only, or full) when broken is set.
type failingStore struct {
	*store.DB
	broken atomic.Pointer[error]
}

func (s *failingStore) Update(ctx context.Context, fn func(*store.Tx) error) error {
	if err := s.broken.Load(); err != nil {
		return &os.PathError{Op: "write", Path: "state.db", Err: *err}
	}
	return s.DB.Update(ctx, fn)
}

func (s *failingStore) Submit(fn func(*store.Tx) error, done func(error)) error {
	if err := s.broken.Load(); err != nil {
		go done(&os.PathError{Op: "write", Path: "state.db", Err: *err}) // as the store's writer would: not on the caller's goroutine
		return nil
	}
	return s.DB.Submit(fn, done)
}

// The state store stops taking writes (EROFS, ENOSPC) just as a create
// runs, so its traces cannot be recorded: the engine stops with an error
// line and Run's error (the daemon exits non-zero and systemd restarts it);
// the next run on the repaired store adopts the traces, creates nothing
// again, and uploads what was still waiting.
func TestStateStoreWritesFail(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.EROFS, syscall.ENOSPC} {
		t.Run(errno.Error(), func(t *testing.T) {
			logs := &syncBuffer{}
			cfg := fastConfig()
			cfg.Workers = 1
			cfg.Log = zerolog.New(logs)
			h := newHarness(t, cfg, stratixtest.Options{})
			h.stop()
			h.openStore()
			fs := &failingStore{DB: h.db}
			eng, err := uploader.New(cfg, fs, h.hooks)
			if err != nil {
				t.Fatal(err)
			}
			h.startEngine(eng)
			// The store breaks as the first create goes out.
			e := error(errno)
			h.hooks.once(&h.hooks.create, func() { fs.broken.Store(&e) })
			a := h.write("a.json", traceA)
			b := h.write("b.json", traceB)
			h.ready(a)
			h.ready(b)
			var runErr error
			select {
			case runErr = <-h.runErr:
			case <-time.After(30 * time.Second):
				t.Fatalf("the engine did not stop when the store refused writes")
			}
			if !errors.Is(runErr, errno) {
				t.Fatalf("run: %v, want an error wrapping %v", runErr, errno)
			}
			h.runErr <- nil
			findLog(t, logs, logWant{level: "error", msg: "cannot write the state store", errHas: errno.Error()})
			h.stop()
			h.openStore()
			h.start()
			h.ready(a)
			h.ready(b)
			checkNothingLostOrDuplicated(t, h, []string{a, b}, []string{hexHash(traceA), hexHash(traceB)})
		})
	}
}

// runAsNobody re-runs the current test in a child test binary with the
// credentials of nobody (65534), for checks root would bypass (file
// permissions). It reports whether the caller should return (the child ran
// or the test was skipped); false means we are not root: run the test here.
func runAsNobody(t *testing.T) bool {
	t.Helper()
	if os.Geteuid() != 0 {
		return false
	}
	if os.Getenv("TRACESYNC_TEST_AS_NOBODY") != "" {
		t.Fatalf("still root in the child")
	}
	// The test binary sits in go's 0700 work directory: copy it where
	// nobody can run it.
	dir, err := os.MkdirTemp("", "tracesync-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "test.bin")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1")
	cmd.Dir = dir
	cmd.Env = []string{"TRACESYNC_TEST_AS_NOBODY=1", "HOME=" + dir, "TMPDIR=" + os.TempDir(), "PATH=" + os.Getenv("PATH")}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil && len(out) == 0 {
		t.Skipf("running as root and cannot start a child as nobody (%v): file permissions cannot be tested", err)
	}
	if err != nil || !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("as nobody: %v\n%s", err, out)
	}
	t.Logf("ran as nobody (uid 65534): root reads any file regardless of its mode")
	return true
}

// A file the daemon's user may not read (chmod 000) is quarantined as
// unreadable with a reason that says how to fix it; the next file goes on.
func TestUnreadableFileQuarantined(t *testing.T) {
	if runAsNobody(t) {
		return
	}
	h := newHarness(t, fastConfig(), stratixtest.Options{})
	p := h.write("secret.json", traceA)
	if err := os.Chmod(p, 0); err != nil {
		t.Fatal(err)
	}
	h.ready(p)
	b := h.write("next.json", traceB)
	h.ready(b)
	r := h.waitState(p, store.StateQuarantined)
	if !strings.Contains(r.LastError, "permission denied") || !strings.Contains(r.LastError, "read permission") {
		t.Fatalf("unreadable file quarantined with %q: want the permission error and how to fix it", r.LastError)
	}
	h.waitState(b, store.StateUploaded)
	h.waitFor("the quarantine to be counted", func() bool { return h.eng.Progress().QuarantineReasons["unreadable"] == 1 })
	// Fixed permissions and `tracesync retry`: uploaded.
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	h.eng.Requeue([]string{p})
	h.waitState(p, store.StateUploaded)
}
