package watcher

import (
	"path"
	"path/filepath"
	"strings"
)

// filter decides which names the watcher looks at.
type filter struct {
	include []glob
	exclude []glob
}

func newFilter(include, exclude []string) filter {
	return filter{include: compileGlobs(include), exclude: compileGlobs(exclude)}
}

// glob is a pattern of Config.Include or Exclude, with what a scan needs
// to match it against a name cheaply.
type glob struct {
	pat string
	// slashes: the pattern can match a path with a slash in it; one that
	// cannot is matched against a file's name alone when it is deeper
	// than the root.
	slashes bool
	// suffix: the pattern is "*" and a literal, as "*.json" is: it matches
	// a name that ends with suffix.
	suffix string
}

func compileGlobs(pats []string) []glob {
	out := make([]glob, 0, len(pats))
	for _, p := range pats {
		g := glob{pat: p, slashes: strings.ContainsAny(p, "/[\\")}
		if len(p) > 1 && p[0] == '*' && !strings.ContainsAny(p[1:], "*?[\\/") {
			g.suffix = p[1:]
		}
		out = append(out, g)
	}
	return out
}

// matchName reports whether g matches a name (no slash in it).
func (g *glob) matchName(name string) bool {
	if g.suffix != "" {
		return strings.HasSuffix(name, g.suffix)
	}
	ok, _ := path.Match(g.pat, name)
	return ok
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

func matchAny(globs []glob, rel, base string) bool {
	for i := range globs {
		g := &globs[i]
		if rel != base {
			if ok, _ := path.Match(g.pat, rel); ok {
				return true
			}
		}
		if g.matchName(base) {
			return true
		}
	}
	return false
}

// matchIn is matchAny for the entry name of dir (under root), building
// the relative path only for the patterns that could match it.
func matchIn(globs []glob, root, dir, name string) bool {
	for i := range globs {
		g := &globs[i]
		if g.matchName(name) {
			return true
		}
		if dir != root && g.slashes {
			if ok, _ := path.Match(g.pat, relSlash(root, dir)+"/"+name); ok {
				return true
			}
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

// wantName is wantFile for the entry name of the directory dir, without
// building its path when the patterns need only the name.
func (f *filter) wantName(root, dir, name string) bool {
	if ignoredName(name) {
		return false
	}
	return matchIn(f.include, root, dir, name) && !matchIn(f.exclude, root, dir, name)
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
