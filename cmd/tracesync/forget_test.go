package main

import (
	"crypto/sha256"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tracesync/tracesync/store"
)

func TestForgetDropsPathsAndOrphanContent(t *testing.T) {
	dir := t.TempDir()
	stFill(t, dir).Close()
	a, cp := filepath.Join(dir, "in", "a.json"), filepath.Join(dir, "in", "copy.json")
	code, out, errOut := stRun(t, "forget", "--state-dir", dir, a)
	if code != 0 || !strings.Contains(out, "forgot 1 path") {
		t.Fatalf("forget a.json: exit %d, out %q, stderr %q", code, out, errOut)
	}
	h := store.Hash(sha256.Sum256([]byte("shared")))
	check := func(wantContent bool) {
		t.Helper()
		db, err := store.Open(dir, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := db.GetPath(a); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("a.json still tracked after forget (err %v)", err)
		}
		_, err = db.GetContent(h)
		if wantContent && err != nil {
			t.Errorf("content dropped while copy.json still references it: %v", err)
		}
		if !wantContent && !errors.Is(err, store.ErrNotFound) {
			t.Errorf("content kept after its last path was forgotten (err %v)", err)
		}
	}
	check(true)
	if code, _, errOut := stRun(t, "forget", "--state-dir", dir, cp); code != 0 {
		t.Fatalf("forget copy.json: exit %d, stderr %q", code, errOut)
	}
	check(false)
}

func TestForgetUnknownPathAndUsage(t *testing.T) {
	dir := t.TempDir()
	stFill(t, dir).Close()
	code, _, errOut := stRun(t, "forget", "--state-dir", dir, filepath.Join(dir, "in", "nope.json"))
	if code != 1 || !strings.Contains(errOut, "not tracked") {
		t.Errorf("forget of an untracked path: exit %d, stderr %q", code, errOut)
	}
	if code, _, _ := stRun(t, "forget", "--state-dir", dir); code != 2 {
		t.Errorf("forget with no path: exit %d, want 2", code)
	}
}

func TestForgetViaDaemon(t *testing.T) {
	dir := stShortDir(t)
	db := stFill(t, dir)
	stServe(t, dir, db)
	p := filepath.Join(dir, "in", "new.json")
	if code, out, errOut := stRun(t, "forget", "--state-dir", dir, p); code != 0 || !strings.Contains(out, "forgot 1 path") {
		t.Fatalf("forget via daemon: exit %d, out %q, stderr %q", code, out, errOut)
	}
	if _, err := db.GetPath(p); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("daemon's store still tracks %s (err %v)", p, err)
	}
}
