package watcher

import (
	"path"
	"path/filepath"
	"strings"
	"testing"
)

// The include/exclude rules see every name that lands in a watched folder,
// whatever bytes it holds. These fuzz targets check that they never panic,
// that a glob New accepts never errors later, and that the decisions agree
// with path.Match and with the always-ignored temporary names. Seed corpora:
// testdata/fuzz/<FuzzName>.

// FuzzGlob checks a user's glob against a file name, the way --include and
// --exclude use it.
func FuzzGlob(f *testing.F) {
	for _, s := range [][2]string{
		{"*.json", "a.json"}, {"*.jsonl", "sub/b.jsonl"}, {"sub/*.json", "sub/x.json"}, {"[a-c]*.json", "b.json"},
		{"[^a]*.json", "a.json"}, {"\\*.json", "*.json"}, {"[", "a"}, {"a[", "a"}, {"*", ".hidden.json"},
		{"**/*.json", "x/y/z.json"}, {"?.json", "é.json"}, {"*.json", "new\nline.json"}, {"*.json", "bad\xffutf8.json"},
		{"[\\]]", "]"}, {"[a-]", "b"}, {"*.tmp", "a.json.tmp"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, glob, rel string) {
		if _, err := path.Match(glob, ""); err != nil {
			// New refuses this glob: it must not be usable at all.
			if _, nerr := (Config{Roots: []string{"/r"}, Include: []string{glob}}).withDefaults(); nerr == nil {
				t.Fatalf("glob %q is malformed (%v) but the configuration accepts it", glob, err)
			}
			return
		}
		// New accepts it: no name may make it error later (the error would
		// be ignored and the name silently not matched).
		if _, err := path.Match(glob, rel); err != nil {
			t.Fatalf("glob %q passed validation but fails on %q: %v", glob, rel, err)
		}
		rel = strings.Trim(path.Clean("/"+rel), "/")
		if rel == "" || strings.ContainsRune(rel, 0) {
			return
		}
		root := "/r"
		p := filepath.Join(root, filepath.FromSlash(rel))
		base := filepath.Base(p)
		fl := newFilter([]string{glob}, nil)
		got := fl.wantFile(root, p)
		if byName := fl.wantName(root, filepath.Dir(p), base); byName != got {
			t.Fatalf("include %q, file %q: wantName %v, wantFile %v", glob, rel, byName, got)
		}
		relMatch, _ := path.Match(glob, rel)
		baseMatch, _ := path.Match(glob, base)
		want := !ignoredName(base) && (relMatch || baseMatch)
		if got != want {
			t.Fatalf("include %q, file %q (base %q): wanted=%v, path.Match on the path %v, on the name %v, ignored name %v",
				glob, rel, base, got, relMatch, baseMatch, ignoredName(base))
		}
		// The same glob as an exclude with everything included: the
		// opposite decision for names not always ignored.
		ex := newFilter([]string{"*"}, []string{glob})
		if byName := ex.wantName(root, filepath.Dir(p), base); byName != ex.wantFile(root, p) {
			t.Fatalf("exclude %q, file %q: wantName %v, wantFile %v", glob, rel, byName, ex.wantFile(root, p))
		}
		if !ignoredName(base) && ex.wantFile(root, p) == (relMatch || baseMatch) {
			t.Fatalf("exclude %q, file %q: wanted=%v but the glob matches=%v", glob, rel, ex.wantFile(root, p), relMatch || baseMatch)
		}
	})
}

// FuzzDefaultRules checks the default rules (*.json, *.jsonl, temporary
// names ignored) against an independent reading of the README's promise.
func FuzzDefaultRules(f *testing.F) {
	for _, s := range []string{"a.json", "a.jsonl", ".a.json", "a.json.tmp", "a.json~", "#a.json#", "a.JSON", "sub/.git/x.json",
		"a.json.part", "a.swp", "x/y.json", "weird\nname.json", "\xff\xfe.jsonl", ".json", "a.jsonl/b.txt", "#.json"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, rel string) {
		rel = strings.Trim(path.Clean("/"+rel), "/")
		if rel == "" || strings.ContainsRune(rel, 0) {
			return
		}
		cfg, err := Config{Roots: []string{"/r"}}.withDefaults()
		if err != nil {
			t.Fatal(err)
		}
		fl := newFilter(cfg.Include, cfg.Exclude)
		root := "/r"
		p := filepath.Join(root, filepath.FromSlash(rel))
		base := filepath.Base(p)
		want := (strings.HasSuffix(base, ".json") || strings.HasSuffix(base, ".jsonl")) &&
			!strings.HasPrefix(base, ".") && !(strings.HasPrefix(base, "#") && strings.HasSuffix(base, "#") && len(base) > 1)
		if got := fl.wantFile(root, p); got != want {
			t.Fatalf("file %q (name %q): wanted=%v, want %v", rel, base, got, want)
		}
		if got := fl.wantName(root, filepath.Dir(p), base); got != want {
			t.Fatalf("file %q (name %q): wantName %v, want %v", rel, base, got, want)
		}
		// A directory whose name starts with a dot is never descended.
		dirsOK := true
		for _, seg := range strings.Split(path.Dir(rel), "/") {
			if seg != "." && ignoredName(seg) {
				dirsOK = false
			}
		}
		if got := fl.dirsWanted(root, p); got != dirsOK {
			t.Fatalf("file %q: directories wanted=%v, want %v", rel, got, dirsOK)
		}
	})
}
