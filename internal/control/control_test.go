package control

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tracesync/tracesync/store"
)

const target = "https://api.example|org|proj"

var t0 = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

// shortDir is a temporary directory short enough for a unix socket path
// (about 108 bytes at most).
func shortDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if len(SocketPath(dir)) < 100 {
		return dir
	}
	dir, err := os.MkdirTemp("/tmp", "tsc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// fill opens a store in dir with a few paths in different states.
func fill(t *testing.T, dir string) *store.DB {
	t.Helper()
	db, err := store.Open(dir, store.Options{Target: target})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	h := store.Hash(sha256.Sum256([]byte("a")))
	err = db.Update(context.Background(), func(tx *store.Tx) error {
		if err := tx.PutContent(store.Content{Hash: h, Filename: "a.json", TraceIDs: []string{"tr-1", "tr-2"}}); err != nil {
			return err
		}
		recs := []store.PathRecord{
			{Path: "/r/a.json", Hash: h, State: store.StateUploaded, UpdatedAt: t0},
			{Path: "/r/b.json", Hash: h, State: store.StateUploaded, UpdatedAt: t0},
			{Path: "/r/bad.json", Hash: store.Hash(sha256.Sum256([]byte("bad"))), State: store.StateQuarantined, Attempts: 1, LastError: "invalid JSON at byte 3: fix the file", UpdatedAt: t0.Add(time.Minute)},
			{Path: "/r/flaky.json", Hash: store.Hash(sha256.Sum256([]byte("flaky"))), State: store.StateRetrying, Attempts: 4, NextAttempt: t0.Add(time.Hour), LastError: "503 from server", UpdatedAt: t0.Add(2 * time.Minute)},
			{Path: "/r/new.json", State: store.StatePending, UpdatedAt: t0},
		}
		for _, r := range recs {
			if err := tx.PutPath(r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// serve runs Serve in the background for the test's duration.
func serve(t *testing.T, sock string, h Handler) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, sock, h) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve returned %v after cancel, want nil", err)
		}
	})
	for range 200 { // wait until it listens
		if _, err := Dial(sock); err == nil {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("Serve never listened on %s", sock)
}

// handlers returns the two Handlers that must behave alike: the store
// directly, and the same store through the socket.
func handlers(t *testing.T) map[string]func(t *testing.T) (Handler, *store.DB) {
	return map[string]func(t *testing.T) (Handler, *store.DB){
		"store": func(t *testing.T) (Handler, *store.DB) {
			db := fill(t, t.TempDir())
			return NewStoreHandler(db), db
		},
		"socket": func(t *testing.T) (Handler, *store.DB) {
			dir := shortDir(t)
			db := fill(t, dir)
			serve(t, SocketPath(dir), NewStoreHandler(db))
			h, err := Dial(SocketPath(dir))
			if err != nil {
				t.Fatal(err)
			}
			return h, db
		},
	}
}

func TestStatus(t *testing.T) {
	for name, mk := range handlers(t) {
		t.Run(name, func(t *testing.T) {
			h, db := mk(t)
			st, err := h.Status(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			wantFiles := map[store.State]int{store.StatePending: 1, store.StateRetrying: 1, store.StateUploaded: 2, store.StateQuarantined: 1, store.StateIncomplete: 0, store.StateSkipped: 0, store.StateRemoved: 0}
			if !reflect.DeepEqual(st.Files, wantFiles) || st.Contents != 1 || st.Traces != 2 || st.Target != target || st.StateFile != db.File() {
				t.Errorf("Status = %+v\nwant files %v, 1 content, 2 traces, target %s, file %s", st, wantFiles, target, db.File())
			}
			if len(st.LastErrors) != 2 || st.LastErrors[0].Path != "/r/flaky.json" || st.LastErrors[1].Error != "invalid JSON at byte 3: fix the file" {
				t.Errorf("LastErrors = %+v, want flaky.json then bad.json", st.LastErrors)
			}
			if wantDaemon := name == "socket"; st.Daemon != wantDaemon || (wantDaemon && st.DaemonPID != os.Getpid()) {
				t.Errorf("Daemon = %v (pid %d), want %v", st.Daemon, st.DaemonPID, wantDaemon)
			}
		})
	}
}

func TestStatusJSONKeys(t *testing.T) {
	db := fill(t, t.TempDir())
	st, err := NewStoreHandler(db).Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(st)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	files, ok := m["files"].(map[string]any)
	if !ok {
		t.Fatalf("status JSON has no \"files\" object: %s", b)
	}
	for _, s := range []string{"pending", "retrying", "uploaded", "quarantined", "skipped", "removed"} {
		if _, ok := files[s]; !ok {
			t.Errorf("status JSON files.%s missing: %s", s, b)
		}
	}
	for _, k := range []string{"target", "state_file", "contents", "traces", "deletes_pending", "intents", "last_errors", "daemon"} {
		if _, ok := m[k]; !ok {
			t.Errorf("status JSON key %q missing: %s", k, b)
		}
	}
}

func TestFiles(t *testing.T) {
	for name, mk := range handlers(t) {
		t.Run(name, func(t *testing.T) {
			h, _ := mk(t)
			all, err := h.Files(context.Background(), "")
			if err != nil {
				t.Fatal(err)
			}
			var paths []string
			for _, f := range all {
				paths = append(paths, f.Path)
			}
			if want := []string{"/r/a.json", "/r/b.json", "/r/bad.json", "/r/flaky.json", "/r/new.json"}; !slices.Equal(paths, want) {
				t.Fatalf("Files(\"\") paths = %v, want %v", paths, want)
			}
			if !slices.Equal(all[0].TraceIDs, []string{"tr-1", "tr-2"}) || len(all[0].Hash) != 64 {
				t.Errorf("Files row for a.json = %+v, want its content's trace ids and hex hash", all[0])
			}
			if all[4].Hash != "" {
				t.Errorf("unhashed path shows hash %q", all[4].Hash)
			}
			q, err := h.Files(context.Background(), store.StateQuarantined)
			if err != nil {
				t.Fatal(err)
			}
			if len(q) != 1 || q[0].Path != "/r/bad.json" || q[0].LastError == "" {
				t.Errorf("Files(quarantined) = %+v, want bad.json with its error", q)
			}
			if _, err := h.Files(context.Background(), "bogus"); !errors.Is(err, ErrUnknownState) {
				t.Errorf("Files(bogus): %v, want ErrUnknownState", err)
			}
		})
	}
}

func TestRetry(t *testing.T) {
	for name, mk := range handlers(t) {
		t.Run(name, func(t *testing.T) {
			h, db := mk(t)
			res, err := h.Retry(context.Background(), []string{"/r/bad.json", "/r/a.json"}, false)
			if err != nil || res.Requeued != 1 {
				t.Fatalf("Retry(bad, a) = %+v, %v; want 1 (a.json is uploaded: untouched)", res, err)
			}
			if len(res.Left) != 1 || res.Left["/r/a.json"] != store.StateUploaded {
				t.Fatalf("Retry(bad, a) left %v, want a.json, uploaded", res.Left)
			}
			r, _ := db.GetPath("/r/bad.json")
			if r.State != store.StatePending || r.Attempts != 0 || !r.NextAttempt.IsZero() || r.LastError != "" {
				t.Errorf("retried record = %+v, want pending, 0 attempts, no next attempt, no error", r)
			}
			if r, _ := db.GetPath("/r/a.json"); r.State != store.StateUploaded {
				t.Errorf("uploaded path changed by retry: %s", r.State)
			}
			_, err = h.Retry(context.Background(), []string{"/r/flaky.json", "/r/nope.json"}, false)
			var nt *NotTrackedError
			if !errors.As(err, &nt) || !slices.Equal(nt.Paths, []string{"/r/nope.json"}) || !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("Retry with an unknown path: %v, want NotTrackedError{/r/nope.json}", err)
			}
			if r, _ := db.GetPath("/r/flaky.json"); r.State != store.StateRetrying {
				t.Errorf("a failed Retry changed flaky.json to %s; want all or nothing", r.State)
			}
			res, err = h.Retry(context.Background(), nil, true)
			if err != nil || res.Requeued != 1 || len(res.Left) != 0 {
				t.Fatalf("Retry(--all) = %+v, %v; want 1 (flaky.json), nothing named left", res, err)
			}
			if r, _ := db.GetPath("/r/flaky.json"); r.State != store.StatePending || !r.NextAttempt.IsZero() {
				t.Errorf("after --all flaky.json = %s next %v, want pending now", r.State, r.NextAttempt)
			}
		})
	}
}

func TestForget(t *testing.T) {
	for name, mk := range handlers(t) {
		t.Run(name, func(t *testing.T) {
			h, db := mk(t)
			hash := store.Hash(sha256.Sum256([]byte("a")))
			n, err := h.Forget(context.Background(), []string{"/r/a.json"})
			if err != nil || n != 1 {
				t.Fatalf("Forget(a) = %d, %v; want 1", n, err)
			}
			if _, err := db.GetContent(hash); err != nil {
				t.Errorf("content dropped while b.json still references it: %v", err)
			}
			if _, err := h.Forget(context.Background(), []string{"/r/b.json", "/r/nope.json"}); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("Forget with an unknown path: %v, want not tracked", err)
			}
			if _, err := db.GetPath("/r/b.json"); err != nil {
				t.Errorf("a failed Forget dropped b.json: want all or nothing")
			}
			if n, err := h.Forget(context.Background(), []string{"/r/b.json"}); err != nil || n != 1 {
				t.Fatalf("Forget(b) = %d, %v", n, err)
			}
			if _, err := db.GetContent(hash); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("content kept after its last path was forgotten (err %v)", err)
			}
		})
	}
}

func TestDialWithoutDaemon(t *testing.T) {
	dir := shortDir(t)
	sock := SocketPath(dir)
	if _, err := Dial(sock); !errors.Is(err, ErrNoDaemon) {
		t.Fatalf("Dial with no socket: %v, want ErrNoDaemon", err)
	}
	// A stale socket file, left by a daemon that died.
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Stat(sock); err != nil {
		t.Fatalf("stale socket not left behind: %v", err)
	}
	if _, err := Dial(sock); !errors.Is(err, ErrNoDaemon) {
		t.Fatalf("Dial with a stale socket: %v, want ErrNoDaemon", err)
	}
	// Serve replaces the stale socket.
	db := fill(t, dir)
	serve(t, sock, NewStoreHandler(db))
	h, err := Dial(sock)
	if err != nil {
		t.Fatalf("Dial after Serve replaced a stale socket: %v", err)
	}
	if _, err := h.Status(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// A state directory so deep that its socket's path does not fit a unix
// socket address (108 bytes) still gets a working control socket: status
// answers, a second server is refused, and the socket is removed after.
func TestDeepStateDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), strings.Repeat("deep-state-directory/", 6))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	sock := SocketPath(dir)
	if len(sock) <= 108 {
		t.Fatalf("socket path %d bytes: the test needs more than 108", len(sock))
	}
	if _, err := Dial(sock); !errors.Is(err, ErrNoDaemon) {
		t.Fatalf("Dial with no daemon: %v, want ErrNoDaemon", err)
	}
	db := fill(t, dir)
	serve(t, sock, NewStoreHandler(db))
	h, err := Dial(sock)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	st, err := h.Status(context.Background())
	if err != nil {
		t.Fatalf("status over the socket of a deep state directory: %v", err)
	}
	if st.Files[store.StateRetrying] != 1 {
		t.Fatalf("status %+v: want the store's one retrying file", st.Files)
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket at its real path: %v, mode %v; want mode 600", err, fi)
	}
	if err := Serve(context.Background(), sock, NewStoreHandler(db)); !errors.Is(err, ErrAlreadyServing) {
		t.Fatalf("second Serve: %v, want ErrAlreadyServing", err)
	}
}

func TestServeSocketModeSecondServerAndCleanup(t *testing.T) {
	dir := shortDir(t)
	sock := SocketPath(dir)
	db := fill(t, dir)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, sock, NewStoreHandler(db)) }()
	for range 200 {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	st, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %o, want 600", st.Mode().Perm())
	}
	if err := Serve(context.Background(), sock, NewStoreHandler(db)); !errors.Is(err, ErrAlreadyServing) {
		t.Errorf("second Serve: %v, want ErrAlreadyServing", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve after cancel: %v", err)
	}
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket %s left after Serve returned (stat err %v)", sock, err)
	}
	if _, err := Dial(filepath.Join(dir, SocketName)); !errors.Is(err, ErrNoDaemon) {
		t.Errorf("Dial after shutdown: %v, want ErrNoDaemon", err)
	}
}
