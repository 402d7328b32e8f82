package main

// append_watch.go holds what the append figures watch: the server's traces
// (tracker), the tracesync process (daemon) and its log (logWatch).

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tracesync/tracesync/client"
)

// tracker follows what the server holds, source (upload name) by source:
// a source's traces are read once when it appears (stratix-fake creates
// all the traces of one create at once), and each trace's "id" is counted
// with its earliest created_at. Reading only new sources keeps a poll
// cheap while the server already holds a large file's traces.
type tracker struct {
	api   *client.Client
	read  map[string]int       // source -> traces of it read (or skipped)
	count map[string]int       // line id -> traces holding it ("" : no id)
	first map[string]time.Time // line id -> earliest created_at
}

func newTracker(ctx context.Context, url string) (*tracker, error) {
	api, err := client.New(client.Config{BaseURL: url, APIKey: "bench-key", HTTPClient: &http.Client{Transport: client.NewTransport(), Timeout: 30 * time.Second}})
	if err != nil {
		return nil, err
	}
	if _, err := api.Discover(ctx); err != nil {
		return nil, err
	}
	return &tracker{api: api, read: map[string]int{}, count: map[string]int{}, first: map[string]time.Time{}}, nil
}

// total is the number of traces the server holds.
func (t *tracker) total(ctx context.Context) (int, error) {
	res, err := t.api.List(ctx, client.ListOptions{PageSize: 1})
	return res.TotalCount, err
}

// skipExisting marks every trace the server holds now as read without
// reading it: what was there before a measurement is not counted.
func (t *tracker) skipExisting(ctx context.Context) error {
	srcs, err := t.api.Sources(ctx)
	if err != nil {
		return err
	}
	for _, src := range srcs {
		res, err := t.api.List(ctx, client.ListOptions{Source: src, PageSize: 1})
		if err != nil {
			return err
		}
		t.read[src] = res.TotalCount
	}
	return nil
}

// poll reads the traces of the sources not seen before; with recheck, also
// the new traces of sources seen before (a second create under one name).
func (t *tracker) poll(ctx context.Context, recheck bool) error {
	srcs, err := t.api.Sources(ctx)
	if err != nil {
		return err
	}
	for _, src := range srcs {
		if _, seen := t.read[src]; seen && !recheck {
			continue
		}
		if err := t.readSource(ctx, src); err != nil {
			return err
		}
	}
	return nil
}

// readSource reads the traces of src past those already read, oldest first.
func (t *tracker) readSource(ctx context.Context, src string) error {
	const size = 500
	from := t.read[src]
	page, skip := from/size+1, from%size
	for {
		res, err := t.api.List(ctx, client.ListOptions{Source: src, Page: page, PageSize: size, SortBy: "created_at", SortOrder: "asc"})
		if err != nil {
			return err
		}
		for _, tr := range res.Traces[min(skip, len(res.Traces)):] {
			id, _ := tr.Data["id"].(string)
			t.count[id]++
			if f, ok := t.first[id]; !ok || tr.CreatedAt.Before(f) {
				t.first[id] = tr.CreatedAt
			}
		}
		t.read[src] = max(t.read[src], (page-1)*size+len(res.Traces))
		if len(res.Traces) < size {
			return nil
		}
		page, skip = page+1, 0
	}
}

// daemon is a `tracesync run` under measurement.
type daemon struct {
	cmd  *exec.Cmd
	log  *logWatch
	gone chan struct{}
}

// startDaemon starts `tracesync run dir` with default flags: only the key,
// base URL, state directory and log settings, from the environment.
func startDaemon(c config, url, state, dir string) (*daemon, error) {
	cmd := exec.Command(c.tracesync, "run", dir)
	cmd.Env = env(c, url, state)
	d := &daemon{cmd: cmd, log: &logWatch{msgs: map[string]int{}}, gone: make(chan struct{})}
	cmd.Stderr = d.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive benchtool
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start tracesync run: %w", err)
	}
	go func() { _ = cmd.Wait(); close(d.gone) }()
	return d, nil
}

func (d *daemon) pid() int { return d.cmd.Process.Pid }

func (d *daemon) exited() bool {
	select {
	case <-d.gone:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, and SIGKILL if tracesync has not exited 40 s later
// (its --shutdown-timeout is 30 s).
func (d *daemon) stop() {
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.gone:
	case <-time.After(40 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.gone
	}
}

// logWatch reads tracesync's JSON log (warnings and errors, as
// TRACESYNC_LOG_LEVEL=warn): it counts each distinct message and keeps the
// paths quarantined, and the last lines that were not JSON (a panic).
type logWatch struct {
	mu          sync.Mutex
	partial     []byte
	msgs        map[string]int // message -> times logged (at most maxMsgs distinct)
	order       []string
	quarantines map[string]string // path -> error
	nq          int               // quarantines logged
	lastQ       string            // the last one's error
	raw         []string
}

const maxMsgs = 20

func (l *logWatch) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = eachLine(l.partial, p, l.line)
	return len(p), nil
}

func (l *logWatch) line(b []byte) {
	var e struct {
		Level   string `json:"level"`
		Message string `json:"message"`
		Path    string `json:"path"`
		Error   string `json:"error"`
	}
	if json.Unmarshal(b, &e) != nil || e.Message == "" {
		l.raw = append(l.raw, string(b))
		if len(l.raw) > 20 {
			l.raw = l.raw[1:]
		}
		return
	}
	if strings.HasPrefix(e.Message, "quarantined") && e.Path != "" {
		if l.quarantines == nil {
			l.quarantines = map[string]string{}
		}
		l.quarantines[e.Path] = e.Error
		l.nq, l.lastQ = l.nq+1, e.Error
	}
	key := e.Level + ": " + e.Message
	if _, ok := l.msgs[key]; !ok {
		if len(l.msgs) >= maxMsgs {
			return
		}
		l.order = append(l.order, key)
	}
	l.msgs[key]++
}

// quarantined returns the error of a quarantined path whose name contains name.
func (l *logWatch) quarantined(name string) (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for p, e := range l.quarantines {
		if strings.Contains(filepath.Base(p), name) {
			return e, true
		}
	}
	return "", false
}

// lastQuarantine returns how many quarantines tracesync logged and the last one's error.
func (l *logWatch) lastQuarantine() (int, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.nq, l.lastQ
}

// tail is the log's distinct messages and its last non-JSON lines.
func (l *logWatch) tail() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for _, k := range l.order {
		fmt.Fprintf(&b, "      tracesync logged %dx %s\n", l.msgs[k], shorten(k, 200))
	}
	for _, r := range l.raw {
		fmt.Fprintf(&b, "      tracesync: %s\n", shorten(r, 200))
	}
	return b.String()
}

func printLogs(l *logWatch) {
	if l != nil {
		fmt.Print(l.tail())
	}
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// threadsCPU is the on-CPU time of pid's live threads, from
// /proc/PID/task/*/schedstat (ns): finer than procCPU's 10 ms ticks, for an
// append figure of a few ticks. Threads that exited are not counted (Go's
// rarely exit). Falls back to procCPU when schedstat cannot be read.
func threadsCPU(pid int) time.Duration {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return procCPU(pid)
	}
	var sum int64
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) == 0 {
			continue
		}
		ns, _ := strconv.ParseInt(f[0], 10, 64)
		sum += ns
	}
	if sum == 0 {
		return procCPU(pid)
	}
	return time.Duration(sum)
}
