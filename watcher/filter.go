package watcher

import (
	"path"
	"path/filepath"
	"strings"
)

// filter decides which names the watcher looks at.
type filter struct {
	include []string
	exclude []string
}

// ignoredName reports the names always ignored: dotfiles and
// dot-directories, *.tmp, *.part, *.swp, *~ and #*# (editor and
// downloader temporaries).
func ignoredName(base string) bool {
	if base == "" || base[0] == '.' {
		return true
	}
	if strings.HasSuffix(base, "~") || strings.HasSuffix(base, ".tmp") ||
		strings.HasSuffix(base, ".part") || strings.HasSuffix(base, ".swp") {
		return true
	}
	return len(base) >= 2 && base[0] == '#' && base[len(base)-1] == '#'
}

func matchAny(globs []string, rel, base string) bool {
	for _, g := range globs {
		if ok, _ := path.Match(g, rel); ok {
			return true
		}
		if ok, _ := path.Match(g, base); ok {
			return true
		}
	}
	return false
}

// relSlash returns p relative to root with forward slashes.
func relSlash(root, p string) string {
	if p == root {
		return "."
	}
	rel := strings.TrimPrefix(p, root)
	rel = strings.TrimPrefix(rel, string(filepath.Separator))
	return filepath.ToSlash(rel)
}

// wantFile reports whether the file at p (under root) is one to report.
// Every directory between root and p must also pass wantDir; callers that
// walk the tree have checked that already, others use wantPath.
func (f *filter) wantFile(root, p string) bool {
	base := filepath.Base(p)
	if ignoredName(base) {
		return false
	}
	rel := relSlash(root, p)
	return matchAny(f.include, rel, base) && !matchAny(f.exclude, rel, base)
}

// wantDir reports whether the directory at p (under root) is descended.
func (f *filter) wantDir(root, p string) bool {
	if p == root {
		return true
	}
	base := filepath.Base(p)
	if ignoredName(base) {
		return false
	}
	return !matchAny(f.exclude, relSlash(root, p), base)
}

// dirsWanted reports whether every directory strictly between root and p
// passes wantDir.
func (f *filter) dirsWanted(root, p string) bool {
	for d := filepath.Dir(p); d != root && isUnder(d, root); d = filepath.Dir(d) {
		if !f.wantDir(root, d) {
			return false
		}
	}
	return true
}
