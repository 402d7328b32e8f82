package main

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/tracesync/tracesync/client/stratixtest"
	"github.com/tracesync/tracesync/store"
)

// checkConfigWorld is one check-config invocation's surroundings: a fake API
// on a real port, a key file, a folder and a state directory.
type checkConfigWorld struct {
	srv     *stratixtest.Server
	keyFile string
	folder  string
	state   string
	env     map[string]string
}

const checkConfigKey = "sk-check-config-secret-123"

func newCheckConfigWorld(t *testing.T) *checkConfigWorld {
	t.Helper()
	srv := stratixtest.NewServer(stratixtest.Options{APIKey: checkConfigKey})
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	w := &checkConfigWorld{
		srv:     srv,
		keyFile: filepath.Join(dir, "api-key"),
		folder:  filepath.Join(dir, "traces"),
		state:   filepath.Join(dir, "state"),
	}
	if err := os.WriteFile(w.keyFile, []byte(checkConfigKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(w.folder, 0o755); err != nil {
		t.Fatal(err)
	}
	w.env = map[string]string{
		"TRACESYNC_BASE_URL":     srv.URL(),
		"TRACESYNC_API_KEY_FILE": w.keyFile,
		"TRACESYNC_STATE_DIR":    w.state,
		"TRACESYNC_DIRS":         w.folder,
		"HOME":                   dir,
	}
	return w
}

// run runs `tracesync check-config args...` in process and returns the exit
// code and stdout; stderr must be empty (check-config reports on stdout).
func (w *checkConfigWorld) run(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := Main(context.Background(), append([]string{"check-config"}, args...), strings.NewReader(""), &stdout, &stderr,
		func(k string) string { return w.env[k] })
	out := stdout.String() + stderr.String()
	if strings.Contains(out, checkConfigKey) {
		t.Fatalf("check-config printed the API key:\n%s", out)
	}
	return code, out
}

// wantLine fails unless out has a line with that status whose text contains
// every fragment.
func wantLine(t *testing.T, out, status string, fragments ...string) {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if !strings.HasPrefix(l, status+" ") {
			continue
		}
		all := true
		for _, f := range fragments {
			all = all && strings.Contains(l, f)
		}
		if all {
			return
		}
	}
	t.Fatalf("no %q line containing %q in:\n%s", status, fragments, out)
}

func TestCheckConfigAllGood(t *testing.T) {
	w := newCheckConfigWorld(t)
	code, out := w.run(t)
	if code != exitOK {
		t.Fatalf("exit %d, want 0:\n%s", code, out)
	}
	wantLine(t, out, "ok", "flags")
	wantLine(t, out, "ok", "folder "+w.folder, "readable")
	wantLine(t, out, "ok", "api key", w.keyFile)
	wantLine(t, out, "ok", "api", stratixtest.DefaultOrgID, stratixtest.DefaultProjectID)
	wantLine(t, out, "ok", "state", "none yet")
	if strings.Contains(out, "FAIL") {
		t.Fatalf("a FAIL line in a good configuration:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(w.state, store.FileName)); !os.IsNotExist(err) {
		t.Fatalf("check-config created the state file (err %v): it must leave that to the first run", err)
	}
	if n := w.srv.Calls(stratixtest.EndpointOrganizations); n == 0 {
		t.Fatalf("check-config never asked the API (GET /organizations calls: %d)", n)
	}
}

func TestCheckConfigOpensExistingStateAndAcceptsARunningDaemon(t *testing.T) {
	w := newCheckConfigWorld(t)
	db, err := store.Open(w.state, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	code, out := w.run(t)
	if code != exitOK {
		t.Fatalf("existing state: exit %d, want 0:\n%s", code, out)
	}
	wantLine(t, out, "ok", "state", store.FileName, "opens")

	// The daemon holds the lock: that is how it should be, not an error.
	held, err := store.Open(w.state, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { held.Close() })
	code, out = w.run(t)
	if code != exitOK {
		t.Fatalf("state held by a running daemon: exit %d, want 0:\n%s", code, out)
	}
	wantLine(t, out, "ok", "state", "in use by the running tracesync", "pid")
}

func TestCheckConfigConfigurationErrorsExit2(t *testing.T) {
	for _, tc := range []struct {
		name      string
		change    func(w *checkConfigWorld)
		args      func(w *checkConfigWorld) []string
		wantFails [][]string
	}{
		{
			name:      "wrong key",
			change:    func(w *checkConfigWorld) { w.srv.SetAPIKey("another-key") },
			wantFails: [][]string{{"api", "rejected the API key", "401"}},
		},
		{
			name: "no key at all",
			change: func(w *checkConfigWorld) {
				delete(w.env, "TRACESYNC_API_KEY_FILE")
			},
			wantFails: [][]string{{"api key", "LAYERLENS_STRATIX_API_KEY"}},
		},
		{
			name:      "missing folder",
			change:    func(w *checkConfigWorld) { w.env["TRACESYNC_DIRS"] = w.folder + "-gone" },
			wantFails: [][]string{{"folder", "-gone", "does not exist", "create it"}},
		},
		{
			name:      "no folder",
			change:    func(w *checkConfigWorld) { delete(w.env, "TRACESYNC_DIRS") },
			wantFails: [][]string{{"folders", "TRACESYNC_DIRS"}},
		},
		{
			name: "a file given as folder",
			change: func(w *checkConfigWorld) {
				f := filepath.Join(w.folder, "a.json")
				if err := os.WriteFile(f, []byte("{}"), 0o644); err != nil {
					panic(err)
				}
				w.env["TRACESYNC_DIRS"] = f
			},
			wantFails: [][]string{{"is not a directory"}},
		},
		{
			name: "nested folders",
			change: func(w *checkConfigWorld) {
				if err := os.Mkdir(filepath.Join(w.folder, "sub"), 0o755); err != nil {
					panic(err)
				}
			},
			// DIR arguments win over TRACESYNC_DIRS.
			args:      func(w *checkConfigWorld) []string { return []string{w.folder, filepath.Join(w.folder, "sub")} },
			wantFails: [][]string{{"folders", "is inside"}},
		},
		{
			name:      "bad flags",
			args:      func(*checkConfigWorld) []string { return []string{"--workers", "0", "--settle-timeout", "1ms"} },
			wantFails: [][]string{{"flags", "--workers 0"}, {"flags", "--settle-timeout"}},
		},
		{
			name:      "root marker missing",
			args:      func(*checkConfigWorld) []string { return []string{"--root-marker", ".tracesync-root"} },
			wantFails: [][]string{{"marker", ".tracesync-root", "touch"}},
		},
		{
			name:      "unknown project",
			change:    func(w *checkConfigWorld) { w.env["TRACESYNC_PROJECT"] = "no-such-project" },
			wantFails: [][]string{{"api", "no-such-project"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newCheckConfigWorld(t)
			if tc.change != nil {
				tc.change(w)
			}
			var args []string
			if tc.args != nil {
				args = tc.args(w)
			}
			code, out := w.run(t, args...)
			if code != exitUsage {
				t.Fatalf("exit %d, want 2 (configuration error):\n%s", code, out)
			}
			for _, f := range tc.wantFails {
				wantLine(t, out, "FAIL", f...)
			}
			if !strings.Contains(out, "fix the configuration") {
				t.Fatalf("no closing line telling what to do:\n%s", out)
			}
		})
	}
}

func TestCheckConfigUnreachableAPIExit1(t *testing.T) {
	w := newCheckConfigWorld(t)
	url := w.srv.URL()
	w.srv.Close() // nothing listens there any more
	w.env["TRACESYNC_BASE_URL"] = url
	code, out := w.run(t)
	if code != exitFailure {
		t.Fatalf("API down: exit %d, want 1:\n%s", code, out)
	}
	wantLine(t, out, "FAIL", "api", "cannot reach", url)
	wantLine(t, out, "ok", "folder")
	wantLine(t, out, "ok", "state")
}

func TestCheckConfigServerErrorIsUnreachable(t *testing.T) {
	w := newCheckConfigWorld(t)
	w.srv.FailNext(stratixtest.EndpointOrganizations, 1, http.StatusServiceUnavailable)
	code, out := w.run(t)
	if code != exitFailure {
		t.Fatalf("API answering 503: exit %d, want 1 (a retry may fix it; not a configuration error):\n%s", code, out)
	}
	wantLine(t, out, "FAIL", "api")
}

func TestServiceAccountPermissions(t *testing.T) {
	dir := t.TempDir()
	// t.TempDir and its parent are 0700: open them to anyone, as /srv is.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	locked := filepath.Join(dir, "locked")
	open := filepath.Join(locked, "drop")
	if err := os.MkdirAll(open, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(locked, 0o750); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(locked)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)

	stranger := &svcAccount{name: "tracesync", uid: st.Uid + 1000, gids: []uint32{st.Gid + 1000}}
	if p, _ := stranger.cannotRead(open); p != locked {
		t.Fatalf("a user outside owner and group of a 0750 parent: blocked at %q, want %q", p, locked)
	}
	member := &svcAccount{name: "tracesync", uid: st.Uid + 1000, gids: []uint32{st.Gid}}
	if p, why := member.cannotRead(open); p != "" {
		t.Fatalf("a member of the parent's group: blocked at %q %s, want readable", p, why)
	}
	if err := os.Chmod(open, 0o700); err != nil {
		t.Fatal(err)
	}
	if p, _ := member.cannotRead(open); p != open {
		t.Fatalf("folder 0700 owned by someone else: blocked at %q, want %q", p, open)
	}
}
