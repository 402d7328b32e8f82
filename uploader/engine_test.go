package uploader_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tracesync/tracesync/client"
	"github.com/tracesync/tracesync/client/stratixtest"
	"github.com/tracesync/tracesync/store"
	"github.com/tracesync/tracesync/uploader"
	"github.com/tracesync/tracesync/watcher"
)

// The engine consumes the store and the client through its own small
// interfaces (conventions.md #2).
var (
	_ uploader.Store = (*store.DB)(nil)
	_ uploader.API   = (*client.Client)(nil)
)

// resettles records the paths the engine sent back to settling.
type resettles struct {
	mu    sync.Mutex // guards paths
	paths []string
}

func (r *resettles) Resettle(path string) {
	r.mu.Lock()
	r.paths = append(r.paths, path)
	r.mu.Unlock()
}

func (r *resettles) has(path string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Contains(r.paths, path)
}

// harness is one engine on a real bbolt store in a temp dir, talking to a
// real stratixtest HTTP server, fed synthetic watcher events.
type harness struct {
	t        *testing.T
	root     string
	stateDir string
	srv      *stratixtest.Server
	api      *client.Client
	hooks    *hookedAPI // what the engine calls: api, with the test's hooks
	db       *store.DB
	target   client.Target
	cfg      uploader.Config
	eng      *uploader.Engine
	events   chan watcher.Event
	rs       *resettles
	readies  int // Ready events this engine has taken
	cancel   context.CancelFunc
	runErr   chan error
}

func fastConfig() uploader.Config {
	return uploader.Config{
		Workers:        4,
		InitialBackoff: time.Millisecond,
		MaxBackoff:     5 * time.Millisecond,
		ProbeInterval:  5 * time.Millisecond,
		HealthTimeout:  time.Minute,
		DeleteDelay:    -1, // the least wait: the tests that need a grace set one
		RemoteName:     testNaming(),
		Log:            zerolog.Nop(),
	}
}

// namingEnv, set to "basename", runs the tests with bare basenames as
// upload names (TestFaultMatrixWithBasenames sets it for a second pass).
const namingEnv = "TRACESYNC_TEST_REMOTE_NAME"

func testNaming() uploader.RemoteNaming {
	n, ok := uploader.ParseRemoteNaming(os.Getenv(namingEnv))
	if !ok {
		panic(namingEnv + ": use unique or basename")
	}
	return n
}

// nameOf is the name path's upload of data gets at the server under cfg.
func nameOf(cfg uploader.Config, path, data string) string {
	return uploader.UploadName(path, sha256.Sum256([]byte(data)), cfg.RemoteName)
}

func newHarness(t *testing.T, cfg uploader.Config, opts stratixtest.Options) *harness {
	t.Helper()
	srv := stratixtest.NewServer(opts)
	t.Cleanup(srv.Close)
	key := opts.APIKey
	if key == "" {
		key = stratixtest.DefaultAPIKey
	}
	api, err := client.New(client.Config{BaseURL: srv.URL(), APIKey: key})
	if err != nil {
		t.Fatal(err)
	}
	target, err := api.Discover(context.Background())
	if err != nil {
		t.Fatalf("discover: %v", err)
	}
	h := bareHarness(t, cfg, srv, api, target)
	h.openStore()
	h.start()
	t.Cleanup(h.stop)
	return h
}

// hookedAPI is the client with a hook per call: a test that must change
// something at a given point of an upload (the file after it was hashed,
// the server's clock while a PUT is on its way, the store before a create)
// sets the hook, and the change is made when the engine reaches that call,
// before the call goes out. A server delay to change things in instead
// would be a race a loaded machine can lose.
type hookedAPI struct {
	*client.Client
	presign, put, create atomic.Pointer[func()]
	listed               atomic.Pointer[func()] // after a listing's last page
}

// once runs fn at the next call hook is for, and not again.
func (a *hookedAPI) once(hook *atomic.Pointer[func()], fn func()) { hook.Store(&fn) }

func (a *hookedAPI) run(hook *atomic.Pointer[func()]) {
	if fn := hook.Swap(nil); fn != nil {
		(*fn)()
	}
}

func (a *hookedAPI) Presign(ctx context.Context, filename, contentType string, size int64) (client.Presigned, error) {
	a.run(&a.presign)
	return a.Client.Presign(ctx, filename, contentType, size)
}

func (a *hookedAPI) Put(ctx context.Context, url, contentType string, body io.Reader, size int64) ([32]byte, error) {
	a.run(&a.put)
	return a.Client.Put(ctx, url, contentType, body, size)
}

func (a *hookedAPI) All(ctx context.Context, opts client.ListOptions) iter.Seq2[client.TraceWithEvaluations, error] {
	return func(yield func(client.TraceWithEvaluations, error) bool) {
		for t, err := range a.Client.All(ctx, opts) {
			if !yield(t, err) {
				return
			}
		}
		a.run(&a.listed)
	}
}

func (a *hookedAPI) Create(ctx context.Context, filename string) ([]string, error) {
	a.run(&a.create)
	return a.Client.Create(ctx, filename)
}

// bareHarness is a harness with fresh temp dirs, its store not open yet.
func bareHarness(t *testing.T, cfg uploader.Config, srv *stratixtest.Server, api *client.Client, target client.Target) *harness {
	return &harness{t: t, root: t.TempDir(), stateDir: t.TempDir(), srv: srv, api: api, hooks: &hookedAPI{Client: api}, target: target, cfg: cfg}
}

func (h *harness) openStore() {
	db, err := store.Open(h.stateDir, store.Options{Target: h.target.String(), CommitInterval: -1})
	if err != nil {
		h.t.Fatalf("open store: %v", err)
	}
	h.db = db
}

func (h *harness) start() {
	h.t.Helper()
	eng, err := uploader.New(h.cfg, h.db, h.hooks)
	if err != nil {
		h.t.Fatalf("new engine: %v", err)
	}
	h.startEngine(eng)
}

// stop ends Run (bounded by a shutdown deadline) and closes the store.
func (h *harness) stop() {
	if h.eng == nil {
		return
	}
	h.cancel()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.eng.Shutdown(sctx); err != nil {
		h.t.Errorf("shutdown: %v", err)
	}
	if err := <-h.runErr; err != nil && !errors.Is(err, context.Canceled) {
		h.t.Errorf("run: %v", err)
	}
	h.eng = nil
	if err := h.db.Close(); err != nil {
		h.t.Errorf("close store: %v", err)
	}
}

// restart stops the engine and starts a new one on the reopened store.
func (h *harness) restart() {
	h.stop()
	h.openStore()
	h.start()
}

func (h *harness) send(ev watcher.Event) {
	h.t.Helper()
	select {
	case h.events <- ev:
		if ev.Kind == watcher.Ready {
			h.readies++
		}
	case <-time.After(20 * time.Second):
		h.t.Fatalf("engine did not take event %v %s", ev.Kind, ev.Path)
	}
}

// write creates root/rel with data and returns its absolute path.
func (h *harness) write(rel, data string) string {
	h.t.Helper()
	p := filepath.Join(h.root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		h.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		h.t.Fatal(err)
	}
	return p
}

func statOf(t testing.TB, p string) watcher.Stat {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	st := watcher.Stat{Size: fi.Size(), ModTime: fi.ModTime(), Mode: fi.Mode()}
	if s, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.Dev, st.Ino = uint64(s.Dev), s.Ino
	}
	return st
}

func (h *harness) ready(p string) {
	h.t.Helper()
	h.send(watcher.Event{Kind: watcher.Ready, Root: h.root, Path: p, Stat: statOf(h.t, p)})
}

func (h *harness) removed(p string) {
	h.t.Helper()
	h.send(watcher.Event{Kind: watcher.Removed, Root: h.root, Path: p})
}

func (h *harness) scanDone(s watcher.ScanSummary) {
	h.t.Helper()
	h.send(watcher.Event{Kind: watcher.ScanDone, Root: h.root, Scan: s})
}

// rootDev is the device of the harness's root.
func (h *harness) rootDev() uint64 { return statOf(h.t, h.root).Dev }

// waitFor waits until cond holds, failing with what after a generous timeout.
func (h *harness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s (progress %+v)", what, h.eng.Progress())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (h *harness) rec(p string) store.PathRecord {
	rec, err := h.db.GetPath(p)
	if err != nil {
		return store.PathRecord{}
	}
	return rec
}

func (h *harness) waitState(p string, want store.State) store.PathRecord {
	h.t.Helper()
	h.waitFor(fmt.Sprintf("%s to be %s", filepath.Base(p), want), func() bool { return h.rec(p).State == want })
	return h.rec(p)
}

func hexHash(data string) string {
	s := sha256.Sum256([]byte(data))
	return hex.EncodeToString(s[:])
}

// idle waits until every Ready sent has been counted and nothing is
// queued, hashing or in flight. The engine takes an event before it counts
// it, so without the first check idle could pass while the last Ready is
// still in the loop's hands, and the next write would race its hash.
func (h *harness) idle() {
	h.t.Helper()
	h.waitFor("the engine to be idle", func() bool {
		p := h.eng.Progress()
		return p.FilesSeen >= h.readies &&
			p.Hashing == 0 && p.Queued == 0 && p.InFlight == 0 && p.FilesDone+p.Settling >= p.FilesSeen
	})
}

const traceA = `{"name": "a", "spans": [1, 2, 3]}`
const traceB = `{"name": "b", "spans": []}`

// Rules 1 and 2: one content under several names is created once; the
// other paths are linked to the same traces.
func TestDuplicatesCreatedOnce(t *testing.T) {
	h := newHarness(t, fastConfig(), stratixtest.Options{})
	var paths []string
	for _, rel := range []string{"a.json", "copy of a.json", "sub/a.json", "sub/deeper/other-name.json"} {
		paths = append(paths, h.write(rel, traceA))
	}
	for _, p := range paths {
		h.ready(p)
	}
	var ids []string
	for _, p := range paths {
		rec := h.waitState(p, store.StateUploaded)
		if rec.Hash.String() != hexHash(traceA) {
			t.Fatalf("%s: recorded hash %s, want %s", p, rec.Hash, hexHash(traceA))
		}
	}
	c, err := h.db.GetContent(h.rec(paths[0]).Hash)
	if err != nil {
		t.Fatalf("content of %s: %v", paths[0], err)
	}
	ids = c.TraceIDs
	if n := h.srv.CreatesByHash()[hexHash(traceA)]; n != 1 {
		t.Fatalf("content under %d names: got %d creates, want 1", len(paths), n)
	}
	if len(ids) != 1 {
		t.Fatalf("got trace ids %v, want one", ids)
	}
	// The same bytes appearing later under a new name: linked, no upload.
	late := h.write("later.json", traceA)
	h.ready(late)
	h.waitState(late, store.StateUploaded)
	if n := h.srv.CreatesByHash()[hexHash(traceA)]; n != 1 {
		t.Fatalf("late duplicate: got %d creates, want 1", n)
	}
	// The store is written before the engine counts: wait for the count.
	h.waitFor("progress to count 1 upload and 4 links", func() bool {
		got := h.eng.Progress()
		return got.Uploaded+got.Linked >= 5
	})
	if got := h.eng.Progress(); got.Uploaded != 1 || got.Linked != 4 {
		t.Fatalf("progress: uploaded %d linked %d, want 1 and 4", got.Uploaded, got.Linked)
	}
}

func TestEmptyFileSkipped(t *testing.T) {
	h := newHarness(t, fastConfig(), stratixtest.Options{})
	empty := h.write("empty.json", "")
	blank := h.write("blank.jsonl", "\n\n")
	h.ready(empty)
	h.ready(blank)
	h.waitState(empty, store.StateSkipped)
	h.waitState(blank, store.StateSkipped)
	if n := h.srv.Calls(stratixtest.EndpointPresign); n != 0 {
		t.Fatalf("empty files: got %d presigns, want 0", n)
	}
	h.waitFor("progress to count 2 skipped", func() bool { return h.eng.Progress().Skipped == 2 })
}

// Rule 3: changed bytes are a new content; the old one loses the path.
func TestChangedBytesUploadedAgain(t *testing.T) {
	h := newHarness(t, fastConfig(), stratixtest.Options{})
	p := h.write("t.json", traceA)
	h.ready(p)
	h.waitState(p, store.StateUploaded)
	old := h.rec(p).Hash
	h.write("t.json", traceB)
	h.ready(p)
	h.waitFor("the new content to be uploaded", func() bool {
		r := h.rec(p)
		return r.State == store.StateUploaded && r.Hash.String() == hexHash(traceB)
	})
	creates := h.srv.CreatesByHash()
	if creates[hexHash(traceA)] != 1 || creates[hexHash(traceB)] != 1 {
		t.Fatalf("creates by hash: %v, want one of each", creates)
	}
	if refs, _ := h.db.Refs(old); len(refs) != 0 {
		t.Fatalf("old content still referenced by %v", refs)
	}
	// Without delete-on-remove the old content is kept (and nothing deleted).
	if _, err := h.db.GetContent(old); err != nil {
		t.Fatalf("old content record: %v, want kept", err)
	}
	if d := h.srv.Deleted(); len(d) != 0 {
		t.Fatalf("deleted %v without --delete-on-remove", d)
	}
}

// An idle engine does not wake: with nothing under way or due, its loop
// turns only for the health beat (a third of HealthTimeout), not every
// few milliseconds to publish what did not change.
func TestIdleEngineDoesNotWake(t *testing.T) {
	h := newHarness(t, fastConfig(), stratixtest.Options{}) // HealthTimeout: a minute
	p := h.write("a.json", traceA)
	h.ready(p)
	h.waitState(p, store.StateUploaded)
	h.waitFor("the engine to be quiet", func() bool {
		pr := h.eng.Progress()
		return pr.FilesDone == 1 && pr.InFlight == 0 && pr.Queued == 0 && pr.Hashing == 0
	})
	// Its last turns publish what the upload changed; then it sleeps.
	time.Sleep(100 * time.Millisecond)
	before := uploader.LastTurn(h.eng)
	time.Sleep(500 * time.Millisecond)
	if after := uploader.LastTurn(h.eng); after != before {
		t.Fatalf("an idle engine turned %v after its last turn, within 500 ms; want no turn before its health beat (20 s)", time.Duration(after-before))
	}
	if !h.eng.Healthy() {
		t.Fatalf("an idle engine reports unhealthy")
	}
}
