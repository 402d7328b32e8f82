package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestStateDirPrepareRefusesWrongPaths(t *testing.T) {
	base := t.TempDir()
	file := filepath.Join(base, "a-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(base, "link")
	if err := os.Symlink(base, link); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ dir, want string }{
		{"relative/state", "absolute"},
		{base + "/x/../state", "clean"},
		{base + "/state/", "clean"},
		{"/", "system folder"},
		{"/var/lib", "system folder"},
		{"/etc/tracesync", "under /etc"},
		{"/proc/self", "under /proc"},
		{file, "not a directory"},
		{filepath.Join(link, "state"), "symlink"},
	} {
		code, _, stderr := mainIn(t, context.Background(), nil, "state-dir", "prepare", tc.dir, "--uid", "65532", "--gid", "65532")
		if code != exitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("state-dir prepare %s: exit %d, stderr %q; want exit 2 saying %q", tc.dir, code, stderr, tc.want)
		}
	}
	if code, _, stderr := mainIn(t, context.Background(), nil, "state-dir", "prepare", filepath.Join(base, "s"), "--uid", "0"); code != exitUsage {
		t.Errorf("--uid 0: exit %d (%s), want 2", code, stderr)
	}
}

// A kubelet-created hostPath is root:root 0755: prepare hands it, and the
// state file in it, to the daemon's user with mode 0700. It needs root
// (CAP_CHOWN), as the init container has.
func TestStateDirPrepareHandsOver(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_CHOWN) to chown")
	}
	dir := filepath.Join(t.TempDir(), "tracesync", "default-tracesync")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "state.db"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for run := range 2 { // a second run (a pod restart) changes nothing and succeeds
		code, stdout, stderr := mainIn(t, context.Background(), nil, "state-dir", "prepare", dir, "--uid", "65532", "--gid", "65533")
		if code != 0 {
			t.Fatalf("run %d: exit %d: %s", run, code, stderr)
		}
		if !strings.Contains(stdout, "owner 65532:65533, mode 0700") {
			t.Errorf("run %d: stdout %q", run, stdout)
		}
	}
	for _, p := range []string{dir, filepath.Join(dir, "state.db")} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != 65532 || st.Gid != 65533 {
			t.Errorf("%s: owner %d:%d, want 65532:65533", p, st.Uid, st.Gid)
		}
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("%s: mode %v, want 0700", dir, fi.Mode().Perm())
	}
	// A missing directory is created.
	fresh := filepath.Join(t.TempDir(), "new", "state")
	if code, _, stderr := mainIn(t, context.Background(), nil, "state-dir", "prepare", fresh); code != 0 {
		t.Fatalf("prepare a missing dir: exit %d: %s", code, stderr)
	}
	if fi, err := os.Stat(fresh); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("prepared %s: %v %v", fresh, fi, err)
	}
}
