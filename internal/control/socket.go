package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"syscall"
	"time"

	"github.com/tracesync/tracesync/store"
)

const (
	dialTimeout     = time.Second
	requestTimeout  = 2 * time.Minute // a files listing of a large store takes a while
	shutdownTimeout = 5 * time.Second
	maxRequestBody  = 64 << 20 // retry/forget of many paths
)

// Serve answers the control commands with h on a unix socket at
// socketPath (mode 0600) until ctx is done, then shuts down, removes the
// socket and returns nil. A stale socket file (nobody answers) is replaced;
// if another process answers, Serve returns ErrAlreadyServing.
func Serve(ctx context.Context, socketPath string, h Handler) error {
	addr, release, err := shortPath(socketPath)
	if err != nil {
		return err
	}
	defer release() // after the listener's Close has unlinked addr
	if _, err := os.Lstat(socketPath); err == nil {
		if conn, err := net.DialTimeout("unix", addr, dialTimeout); err == nil {
			conn.Close()
			return fmt.Errorf("control socket %s: %w", socketPath, ErrAlreadyServing)
		}
		if err := os.Remove(socketPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove stale control socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", addr)
	if err != nil {
		return fmt.Errorf("listen on control socket %s: %w", socketPath, err)
	}
	defer ln.Close() // also unlinks the socket file
	if err := os.Chmod(socketPath, 0o600); err != nil {
		return fmt.Errorf("chmod control socket %s: %w", socketPath, err)
	}
	srv := &http.Server{
		Handler:           newMux(h),
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }() // owned here: Serve waits for it below
	select {
	case err := <-served:
		return fmt.Errorf("control socket %s: %w", socketPath, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	err = srv.Shutdown(sctx)
	<-served
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("control socket %s: shutdown: %w", socketPath, err)
	}
	return nil
}

// errorBody is the JSON of every non-2xx answer.
type errorBody struct {
	Error string   `json:"error"`
	Code  string   `json:"code,omitempty"` // "not_tracked", "unknown_state"
	Paths []string `json:"paths,omitempty"`
}

type changeRequest struct {
	Paths []string `json:"paths"`
	All   bool     `json:"all,omitempty"`
}

type changeResponse struct {
	Changed int `json:"changed"`
}

func newMux(h Handler) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		st, err := h.Status(r.Context())
		if err != nil {
			writeError(w, err)
			return
		}
		st.Daemon = true
		st.DaemonPID = os.Getpid()
		writeJSON(w, http.StatusOK, st)
	})
	mux.HandleFunc("GET /v1/files", func(w http.ResponseWriter, r *http.Request) {
		files, err := h.Files(r.Context(), store.State(r.URL.Query().Get("state")))
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, files)
	})
	mux.HandleFunc("POST /v1/retry", func(w http.ResponseWriter, r *http.Request) {
		var req changeRequest
		if !readJSON(w, r, &req) {
			return
		}
		res, err := h.Retry(r.Context(), req.Paths, req.All)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, res)
	})
	mux.HandleFunc("POST /v1/forget", func(w http.ResponseWriter, r *http.Request) {
		var req changeRequest
		if !readJSON(w, r, &req) {
			return
		}
		n, err := h.Forget(r.Context(), req.Paths)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, changeResponse{Changed: n})
	})
	mux.HandleFunc("POST /v1/reconcile", func(w http.ResponseWriter, r *http.Request) {
		var req reconcileRequest
		if !readJSON(w, r, &req) {
			return
		}
		rep, err := h.Reconcile(r.Context(), req.Roots, req.Confirm)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, rep)
	})
	return mux
}

type reconcileRequest struct {
	Roots   []string `json:"roots"`
	Confirm bool     `json:"confirm"`
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequestBody)).Decode(v); err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "bad request body: " + err.Error()})
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, err error) {
	var nt *NotTrackedError
	switch {
	case errors.As(err, &nt):
		writeJSON(w, http.StatusNotFound, errorBody{Error: err.Error(), Code: "not_tracked", Paths: nt.Paths})
	case errors.Is(err, ErrUnknownState):
		writeJSON(w, http.StatusBadRequest, errorBody{Error: err.Error(), Code: "unknown_state"})
	default:
		writeJSON(w, http.StatusInternalServerError, errorBody{Error: err.Error()})
	}
}

// Dial returns a Handler that asks the daemon listening on socketPath. It
// connects once to check: when nobody listens (no socket, or a stale one)
// the error wraps ErrNoDaemon.
func Dial(socketPath string) (Handler, error) {
	dialer := &net.Dialer{Timeout: dialTimeout}
	conn, err := dialSocket(context.Background(), dialer, socketPath)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("%w (%s)", ErrNoDaemon, socketPath)
		}
		return nil, fmt.Errorf("connect to the daemon's control socket %s: %w (run as the user the daemon runs as)", socketPath, err)
	}
	conn.Close()
	return &client{http: &http.Client{
		Timeout: requestTimeout,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return dialSocket(ctx, dialer, socketPath)
			},
			MaxIdleConns:    1,
			IdleConnTimeout: 10 * time.Second,
		},
	}}, nil
}

// dialSocket connects to the control socket at socketPath, however deep
// its directory (shortPath).
func dialSocket(ctx context.Context, d *net.Dialer, socketPath string) (net.Conn, error) {
	addr, release, err := shortPath(socketPath)
	if err != nil {
		return nil, err
	}
	defer release()
	return d.DialContext(ctx, "unix", addr)
}

// client is the Handler Dial returns.
type client struct{ http *http.Client }

// base is the URL every request goes to; the host is ignored by the unix dialer.
const base = "http://tracesync"

func (c *client) Status(ctx context.Context) (Status, error) {
	var st Status
	err := c.do(ctx, http.MethodGet, "/v1/status", nil, &st)
	return st, err
}

func (c *client) Files(ctx context.Context, state store.State) ([]File, error) {
	var files []File
	err := c.do(ctx, http.MethodGet, "/v1/files?state="+url.QueryEscape(string(state)), nil, &files)
	return files, err
}

func (c *client) Retry(ctx context.Context, paths []string, all bool) (RetryResult, error) {
	var res RetryResult
	err := c.do(ctx, http.MethodPost, "/v1/retry", changeRequest{Paths: paths, All: all}, &res)
	return res, err
}

func (c *client) Forget(ctx context.Context, paths []string) (int, error) {
	var resp changeResponse
	err := c.do(ctx, http.MethodPost, "/v1/forget", changeRequest{Paths: paths}, &resp)
	return resp.Changed, err
}

func (c *client) Reconcile(ctx context.Context, roots []string, confirm bool) (ReconcileReport, error) {
	var rep ReconcileReport
	err := c.do(ctx, http.MethodPost, "/v1/reconcile", reconcileRequest{Roots: roots, Confirm: confirm}, &rep)
	return rep, err
}

func (c *client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("ask the daemon: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		var eb errorBody
		if err := json.NewDecoder(resp.Body).Decode(&eb); err != nil {
			return &RemoteError{StatusCode: resp.StatusCode, Message: "unreadable answer: " + err.Error()}
		}
		switch eb.Code {
		case "not_tracked":
			return &NotTrackedError{Paths: eb.Paths}
		case "unknown_state":
			return &wireError{msg: eb.Error, sentinel: ErrUnknownState}
		}
		return &RemoteError{StatusCode: resp.StatusCode, Message: eb.Error}
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("read the daemon's answer: %w", err)
	}
	return nil
}

// wireError is a sentinel error that crossed the socket, with the daemon's message.
type wireError struct {
	msg      string
	sentinel error
}

func (e *wireError) Error() string { return e.msg }
func (e *wireError) Unwrap() error { return e.sentinel }
