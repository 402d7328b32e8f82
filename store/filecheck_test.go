package store

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckFile walks what can become of an open state file: each case
// does it to a real file in a temporary directory and reads CheckFile.
func TestCheckFile(t *testing.T) {
	cases := []struct {
		name     string
		do       func(t *testing.T, dir, file string)
		wantGone string // a part of FileGoneError.What; "" for no error
	}{
		{"untouched", func(*testing.T, string, string) {}, ""},
		{"other files beside it come and go", func(t *testing.T, dir, _ string) {
			must(t, os.WriteFile(filepath.Join(dir, "other"), []byte("x"), 0o600))
			must(t, os.Remove(filepath.Join(dir, "other")))
			must(t, os.Remove(filepath.Join(dir, PIDFileName)))
		}, ""},
		{"deleted", func(t *testing.T, _, file string) { must(t, os.Remove(file)) }, "was deleted"},
		{"replaced by rename", func(t *testing.T, dir, file string) {
			tmp := filepath.Join(dir, "restored")
			must(t, os.WriteFile(tmp, []byte("a backup"), 0o600))
			must(t, os.Rename(tmp, file))
		}, "was replaced"},
		{"deleted and created again", func(t *testing.T, _, file string) {
			must(t, os.Remove(file))
			must(t, os.WriteFile(file, nil, 0o600))
		}, "was replaced"},
		{"moved away", func(t *testing.T, dir, file string) {
			must(t, os.Rename(file, filepath.Join(dir, "elsewhere.db")))
		}, "was moved away"},
		{"directory removed", func(t *testing.T, dir, _ string) { must(t, os.RemoveAll(dir)) }, "state directory"},
		{"directory moved", func(t *testing.T, dir, _ string) { must(t, os.Rename(dir, dir+".old")) }, "state directory"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "state")
			db := openT(t, dir, "target")
			tc.do(t, dir, db.File())
			err := db.CheckFile()
			if tc.wantGone == "" {
				if err != nil {
					t.Fatalf("CheckFile: %v, want nil", err)
				}
				return
			}
			var ge *FileGoneError
			if !errors.As(err, &ge) || !errors.Is(err, ErrFileGone) {
				t.Fatalf("CheckFile: %v, want a *FileGoneError", err)
			}
			if ge.File != db.File() || !strings.Contains(ge.What, tc.wantGone) || !strings.Contains(err.Error(), db.File()) {
				t.Fatalf("CheckFile: %q (What %q), want it to name %s and say %q", err, ge.What, db.File(), tc.wantGone)
			}
		})
	}
}

// TestCheckFileClosed: a closed DB has nothing open to check.
func TestCheckFileClosed(t *testing.T) {
	dir := t.TempDir()
	db := openT(t, dir, "target")
	must(t, db.Close())
	must(t, os.Remove(db.File()))
	if err := db.CheckFile(); err != nil {
		t.Fatalf("CheckFile after Close: %v, want nil", err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
