package main

// scale_tree.go owns the scale figure's archive on disk: a tree of many tiny
// trace files over many folders, generated in parallel, reused by a later
// run that finds the same tree complete, and removed in parallel.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"

	"golang.org/x/sync/errgroup"
)

// invalidEvery is how often a generated file is invalid JSON (the last of
// every invalidEvery files): complete but with a syntax error, so that a
// backfill quarantines it rather than waiting for it to be finished.
const invalidEvery = 1000

// treeFormat names the generator's output; a tree written by another
// format is generated again rather than reused.
const treeFormat = "scale-tree v1"

// scaleTree is an archive of files spread evenly over dirs folders.
type scaleTree struct {
	root  string
	files int
	dirs  int
}

// newScaleTree names the tree of files over dirs folders under work.
func newScaleTree(work string, files, dirs int) scaleTree {
	return scaleTree{root: filepath.Join(work, fmt.Sprintf("scale-%dx%d", files, dirs)), files: files, dirs: dirs}
}

// perDir is how many files a folder holds (the last may hold fewer).
func (t scaleTree) perDir() int { return (t.files + t.dirs - 1) / t.dirs }

// invalid is how many of the tree's files are invalid JSON.
func (t scaleTree) invalid() int { return t.files / invalidEvery }

// marker is the file, beside the tree, written once the tree is complete.
func (t scaleTree) marker() string { return t.root + ".done" }

func (t scaleTree) markerText() string {
	return fmt.Sprintf("%s files=%d dirs=%d invalid-every=%d\n", treeFormat, t.files, t.dirs, invalidEvery)
}

// dirName and fileName place file i: files are dealt to folders in runs of
// perDir, so every folder but the last holds perDir of them.
func (t scaleTree) dirName(d int) string {
	return fmt.Sprintf("d%0*d", len(strconv.Itoa(t.dirs-1)), d)
}

func (t scaleTree) fileName(i int) string {
	return fmt.Sprintf("f%0*d.json", len(strconv.Itoa(t.files-1)), i)
}

// fileContent is file i's bytes: {"i":N}, or for the last of every
// invalidEvery files {"i":N,}, a syntax error.
func fileContent(i int) []byte {
	b := make([]byte, 0, 24)
	b = append(b, `{"i":`...)
	b = strconv.AppendInt(b, int64(i), 10)
	if i%invalidEvery == invalidEvery-1 {
		b = append(b, ',')
	}
	return append(b, '}')
}

// ensure makes the tree unless a complete one with the same shape is
// already there. It reports whether it reused one.
func (t scaleTree) ensure() (reused bool, err error) {
	if t.files <= 0 || t.dirs <= 0 {
		return false, fmt.Errorf("scale tree: need files and folders, got %d files over %d folders", t.files, t.dirs)
	}
	if t.dirs > t.files {
		return false, fmt.Errorf("scale tree: %d folders for %d files would leave folders empty", t.dirs, t.files)
	}
	if b, err := os.ReadFile(t.marker()); err == nil && string(b) == t.markerText() {
		if ents, err := os.ReadDir(t.root); err == nil && len(ents) == t.dirs {
			return true, nil
		}
	}
	// A tree without its marker was cut short (or is another format).
	_ = os.Remove(t.marker())
	if err := removeTree(t.root); err != nil {
		return false, err
	}
	if err := t.generate(); err != nil {
		return false, err
	}
	return false, os.WriteFile(t.marker(), []byte(t.markerText()), 0o644)
}

// generate writes every folder, several at a time: a million tiny files
// cost creates, not bytes, and creates in different folders do not
// serialise on one directory's lock.
func (t scaleTree) generate() error {
	if err := os.MkdirAll(t.root, 0o755); err != nil {
		return err
	}
	per := t.perDir()
	var g errgroup.Group
	g.SetLimit(4 * runtime.NumCPU())
	for d := range t.dirs {
		g.Go(func() error {
			dir := filepath.Join(t.root, t.dirName(d))
			if err := os.Mkdir(dir, 0o755); err != nil {
				return err
			}
			for i := d * per; i < min((d+1)*per, t.files); i++ {
				if err := os.WriteFile(filepath.Join(dir, t.fileName(i)), fileContent(i), 0o644); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return g.Wait()
}

// remove deletes the tree and its marker.
func (t scaleTree) remove() error {
	if err := os.Remove(t.marker()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return removeTree(t.root)
}

// removeTree deletes root, its top-level folders several at a time (a
// million files take minutes one by one).
func removeTree(root string) error {
	ents, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var g errgroup.Group
	g.SetLimit(4 * runtime.NumCPU())
	var failed atomic.Bool
	for _, e := range ents {
		g.Go(func() error {
			if failed.Load() {
				return nil
			}
			if err := os.RemoveAll(filepath.Join(root, e.Name())); err != nil {
				failed.Store(true)
				return err
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return os.RemoveAll(root)
}

// describe is the tree's shape for the printed figures.
func (t scaleTree) describe() string {
	return fmt.Sprintf("%s files over %s folders (%s a folder; %s invalid, one in %s)",
		thousands(t.files), thousands(t.dirs), thousands(t.perDir()), thousands(t.invalid()), thousands(invalidEvery))
}

// thousands formats n with commas: 1,000,000.
func thousands(n int) string {
	s := strconv.Itoa(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
