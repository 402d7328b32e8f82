package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tracesync/tracesync/store"
)

// The daemon prunes after its first scan: records of files removed longer
// ago than --retention go, and contents nothing refers to; records of
// files on disk, and their contents, stay, even a file that came back
// under a path recorded as removed long ago (it is linked to its content,
// not uploaded again).
func TestRunPrunesAfterFirstScan(t *testing.T) {
	w := newCheckConfigWorld(t)
	keep := writeFile(t, w.folder, "keep.json", traceJSON("keep"))
	back := writeFile(t, w.folder, "back.json", traceJSON("back"))
	gone := writeFile(t, w.folder, "gone.json", traceJSON("gone"))
	if code, out, errOut := mainIn(t, context.Background(), w.env, "backfill", "--settle", "50ms", w.folder); code != 0 {
		t.Fatalf("backfill: exit %d\n%s%s", code, out, errOut)
	}
	// back.json and gone.json were removed 40 days ago (as a daemon records
	// it); back.json has been restored since, gone.json has not.
	if err := os.Remove(filepath.Join(w.folder, "gone.json")); err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(w.state, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	longAgo := time.Now().Add(-40 * 24 * time.Hour)
	err = db.Update(context.Background(), func(tx *store.Tx) error {
		for _, name := range []string{"back.json", "gone.json"} {
			if _, err := tx.RemovePath(filepath.Join(w.folder, name), longAgo); err != nil {
				return err
			}
		}
		return nil
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	// The restored file must look new to the daemon's restart check.
	if err := os.Chtimes(filepath.Join(w.folder, "back.json"), time.Now(), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}

	logged := runUntil(t, w.env, []string{"--settle", "100ms", w.folder}, func(stderr string) bool {
		return strings.Contains(stderr, `"message":"pruned`)
	})
	if !regexp.MustCompile(`"paths":1,"contents":1,`).MatchString(logged) {
		t.Errorf("prune log line: want paths 1 (gone.json) and contents 1 (gone.json's):\n%s", logged)
	}
	if per, _ := createsOf(w.srv, []string{keep, back, gone}); per[keep] != 1 || per[back] != 1 || per[gone] != 1 {
		t.Errorf("creates per content: %v, want each once (back.json, restored, must be linked, not uploaded again)", per)
	}
	db, err = store.Open(w.state, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for name, want := range map[string]store.State{"keep.json": store.StateUploaded, "back.json": store.StateUploaded} {
		if rec, err := db.GetPath(filepath.Join(w.folder, name)); err != nil || rec.State != want {
			t.Errorf("%s after prune: %+v, %v; want %s", name, rec.State, err, want)
		}
	}
	if _, err := db.GetPath(filepath.Join(w.folder, "gone.json")); err == nil {
		t.Errorf("gone.json (removed 40 days ago) still recorded after prune")
	}
	for name, h := range map[string]string{"keep.json": keep, "back.json": back} {
		hash, _ := store.ParseHash(h)
		if _, err := db.GetContent(hash); err != nil {
			t.Errorf("content of %s pruned: %v", name, err)
		}
	}
	hash, _ := store.ParseHash(gone)
	if _, err := db.GetContent(hash); err == nil {
		t.Errorf("content of gone.json (no path left) kept after prune")
	}
}
