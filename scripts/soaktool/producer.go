package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// content is one distinct file body the producer wrote. Every trace in it
// carries its id (field soak_content) and its index (field line), so the
// server's traces can be traced back to it.
type content struct {
	id     string
	ext    string // ".json" or ".jsonl"
	traces int    // traces the server makes of it
	size   int
	refs   int      // paths holding it now
	paths  []string // every path that ever held it (for reports)
}

// slowWrite is a file being written in chunks straight under its final name.
type slowWrite struct {
	path   string
	c      *content
	data   []byte
	cuts   []int // chunk ends, ascending; the last is len(data)
	next   int   // index into cuts
	dueAt  int64 // tick of the next chunk
	f      *os.File
	paused int64 // ticks between chunks, for the report
}

// counts are what the producer did.
type counts struct {
	written     int // new files renamed into place
	slowWritten int // new files written slowly under their name
	renamed     int // renamed within their folder
	moved       int // moved to another folder
	rewritten   int // new bytes under an existing name (atomic or in place)
	inPlace     int // of rewritten: truncated and written in place
	duplicated  int // same bytes under a second name
	deleted     int
	dirsMade    int
}

// producer writes, renames, rewrites, duplicates and deletes files under
// root. Only its Run goroutine touches it. Its choices depend on the seed
// and the tick number only.
type producer struct {
	rng     *rand.Rand
	root    string
	seed    uint64
	target  int
	maxSlow int
	rate    float64

	dirs    []string            // relative folders, "" is the root
	files   []string            // relative paths of idle files (pick uniformly)
	index   map[string]int      // path → index in files
	holds   map[string]*content // path → content
	slow    []*slowWrite
	slowAt  map[string]bool // paths being slowly written
	all     []*content
	nameSeq int
	tick    int64
	did     counts

	opLog io.Writer // when set: one line per operation (ops.log in the work dir)
	// steadyAt is when the folder first held 90% of target files: from
	// then on the working set no longer grows (zero: never).
	steadyAt time.Time
}

// logOp writes one line of the operation log: the UTC time (to set beside
// the daemon's log), tick, operation, the content and the paths.
func (p *producer) logOp(op string, c *content, paths ...string) {
	if p.opLog == nil {
		return
	}
	q := make([]string, len(paths))
	for i, path := range paths {
		q[i] = strconv.Quote(path)
	}
	fmt.Fprintf(p.opLog, "%s %7d %-9s %s %s\n", time.Now().UTC().Format("15:04:05.000"), p.tick, op, c.id, strings.Join(q, " "))
}

func newProducer(root string, seed uint64, rate float64, target, maxSlow int) *producer {
	return &producer{
		rng:     rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		root:    root,
		seed:    seed,
		target:  target,
		maxSlow: maxSlow,
		rate:    rate,
		dirs:    []string{"", "a", "b", filepath.Join("c", "deep")},
		index:   map[string]int{},
		holds:   map[string]*content{},
		slowAt:  map[string]bool{},
	}
}

// setup creates the initial folders.
func (p *producer) setup() error {
	for _, d := range p.dirs {
		if err := os.MkdirAll(filepath.Join(p.root, d), 0o755); err != nil {
			return err
		}
	}
	return nil
}

// Run does one operation per tick until ctx ends, then finishes the slow
// writes still open (at the same pace) and returns. progress, when set, is
// called from Run's goroutine after every tick.
func (p *producer) Run(ctx context.Context, progress func(*producer)) error {
	t := time.NewTicker(time.Duration(float64(time.Second) / p.rate))
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-ctx.Done():
			for len(p.slow) > 0 {
				<-t.C
				p.tick++
				if err := p.advanceSlow(); err != nil {
					return err
				}
			}
			return nil
		}
		p.tick++
		if err := p.advanceSlow(); err != nil {
			return err
		}
		if err := p.step(); err != nil {
			return fmt.Errorf("tick %d: %w", p.tick, err)
		}
		if p.steadyAt.IsZero() && len(p.files) >= p.target*9/10 {
			p.steadyAt = time.Now()
		}
		if progress != nil {
			progress(p)
		}
	}
}

// ticks converts a duration to ticks (at least 1).
func (p *producer) ticks(d time.Duration) int64 {
	return max(1, int64(d.Seconds()*p.rate))
}

// step does one random operation.
func (p *producer) step() error {
	n := len(p.files)
	type op struct {
		weight float64
		do     func() error
	}
	ops := []op{
		{22, p.create},
		{12, p.rename},
		{12, p.move},
		{12, p.rewrite},
		{9, p.duplicate},
		{min(60, 30*float64(n)/float64(p.target)), p.delete},
	}
	if len(p.slow) < p.maxSlow {
		ops = append(ops, op{3, p.startSlow})
	}
	if n == 0 {
		return p.create()
	}
	var total float64
	for _, o := range ops {
		total += o.weight
	}
	x := p.rng.Float64() * total
	for _, o := range ops {
		if x < o.weight {
			return o.do()
		}
		x -= o.weight
	}
	return ops[len(ops)-1].do()
}

// newContent builds a new content: its bytes and its record.
func (p *producer) newContent(big bool) (*content, []byte) {
	c := &content{id: fmt.Sprintf("c%07d", len(p.all)), ext: ".jsonl"}
	if p.rng.IntN(3) == 0 {
		c.ext = ".json"
	}
	p.all = append(p.all, c)
	n := 1 + p.rng.IntN(3) + p.rng.IntN(3)/2
	if big {
		n = 10 + p.rng.IntN(20)
	}
	pad := func() string { return strings.Repeat("abcdefgh", 4+p.rng.IntN(big2(big, 60, 120))) }
	obj := func(i int) map[string]any {
		steps := make([]map[string]any, 1+p.rng.IntN(4))
		for j := range steps {
			steps[j] = map[string]any{"step": j, "tool": fmt.Sprintf("tool-%d", p.rng.IntN(9)), "ms": p.rng.IntN(5000)}
		}
		return map[string]any{"soak_content": c.id, "line": i, "of": n, "seed": p.seed,
			"agent_name": fmt.Sprintf("soak-agent-%d", p.rng.IntN(7)), "steps": steps, "pad": pad()}
	}
	var b bytes.Buffer
	switch {
	case c.ext == ".jsonl":
		for i := range n {
			line, _ := json.Marshal(obj(i))
			b.Write(line)
			b.WriteByte('\n')
		}
	case n == 1 || p.rng.IntN(2) == 0:
		n = 1
		out, _ := json.MarshalIndent(obj(0), "", "  ")
		b.Write(out)
		b.WriteByte('\n')
	default:
		arr := make([]map[string]any, n)
		for i := range arr {
			arr[i] = obj(i)
		}
		out, _ := json.MarshalIndent(arr, "", "  ")
		b.Write(out)
		b.WriteByte('\n')
	}
	c.traces = n
	c.size = b.Len()
	return c, b.Bytes()
}

func big2(big bool, small, large int) int {
	if big {
		return large
	}
	return small
}

// newName returns a fresh relative path in dir with ext. Some names have
// spaces and non-ASCII letters.
func (p *producer) newName(dir, ext string) string {
	p.nameSeq++
	base := fmt.Sprintf("trace-%06d", p.nameSeq)
	if p.rng.IntN(10) == 0 {
		base = fmt.Sprintf("agent run %06d é✓", p.nameSeq)
	}
	return filepath.Join(dir, base+ext)
}

func (p *producer) pickDir() string { return p.dirs[p.rng.IntN(len(p.dirs))] }

func (p *producer) pickFile() string { return p.files[p.rng.IntN(len(p.files))] }

func (p *producer) abs(rel string) string { return filepath.Join(p.root, rel) }

// occupied says whether a path is in use (idle or being written).
func (p *producer) occupied(rel string) bool {
	_, idle := p.holds[rel]
	return idle || p.slowAt[rel]
}

func (p *producer) addFile(rel string, c *content) {
	p.index[rel] = len(p.files)
	p.files = append(p.files, rel)
	p.holds[rel] = c
	c.refs++
	c.paths = append(c.paths, rel)
}

func (p *producer) dropFile(rel string) *content {
	i := p.index[rel]
	last := p.files[len(p.files)-1]
	p.files[i] = last
	p.index[last] = i
	p.files = p.files[:len(p.files)-1]
	delete(p.index, rel)
	c := p.holds[rel]
	delete(p.holds, rel)
	c.refs--
	return c
}

// writeAtomic writes data to a dotted temporary name beside rel and renames
// it into place (replacing what was there).
func (p *producer) writeAtomic(rel string, data []byte) error {
	dir, base := filepath.Split(p.abs(rel))
	tmp := filepath.Join(dir, "."+base+".tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, p.abs(rel))
}

func (p *producer) create() error {
	c, data := p.newContent(false)
	rel := p.newName(p.pickDir(), c.ext)
	if err := p.writeAtomic(rel, data); err != nil {
		return err
	}
	p.addFile(rel, c)
	p.did.written++
	p.logOp("write", c, rel)
	return nil
}

func (p *producer) rename() error {
	old := p.pickFile()
	rel := p.newName(filepath.Dir(old), filepath.Ext(old))
	if err := os.Rename(p.abs(old), p.abs(rel)); err != nil {
		return err
	}
	c := p.dropFile(old)
	p.addFile(rel, c)
	p.did.renamed++
	p.logOp("rename", c, old, rel)
	return nil
}

// move moves a file to another folder, keeping its name when free there
// (one basename in two folders is a case of rule 8); one move in ten goes
// to a folder made for it.
func (p *producer) move() error {
	old := p.pickFile()
	dir := p.pickDir()
	if len(p.dirs) < 16 && p.rng.IntN(10) == 0 {
		dir = filepath.Join(p.dirs[p.rng.IntN(len(p.dirs))], fmt.Sprintf("sub%02d", len(p.dirs)))
		if err := os.MkdirAll(p.abs(dir), 0o755); err != nil {
			return err
		}
		p.dirs = append(p.dirs, dir)
		p.did.dirsMade++
	}
	if dir == filepath.Dir(old) || (dir == "" && filepath.Dir(old) == ".") {
		dir = p.dirs[(indexOf(p.dirs, dir)+1)%len(p.dirs)]
	}
	rel := filepath.Join(dir, filepath.Base(old))
	if p.occupied(rel) {
		rel = p.newName(dir, filepath.Ext(old))
	}
	if err := os.Rename(p.abs(old), p.abs(rel)); err != nil {
		return err
	}
	c := p.dropFile(old)
	p.addFile(rel, c)
	p.did.moved++
	p.logOp("move", c, old, rel)
	return nil
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return 0
}

// rewrite gives an existing name new bytes of the same kind: half by a
// temporary file renamed over it, half truncated and written in place.
func (p *producer) rewrite() error {
	rel := p.pickFile()
	old := p.holds[rel]
	var c *content
	var data []byte
	for {
		c, data = p.newContent(false)
		if c.ext == old.ext {
			break
		}
		p.all = p.all[:len(p.all)-1] // not used: the kind must match the name
	}
	if p.rng.IntN(2) == 0 {
		if err := p.writeAtomic(rel, data); err != nil {
			return err
		}
	} else {
		if err := os.WriteFile(p.abs(rel), data, 0o644); err != nil {
			return err
		}
		p.did.inPlace++
	}
	p.dropFile(rel)
	p.addFile(rel, c)
	p.did.rewritten++
	p.logOp("rewrite", c, rel, "was "+old.id)
	return nil
}

// duplicate copies a file's bytes to a second name (by temp + rename), half
// the time under the same basename in another folder.
func (p *producer) duplicate() error {
	src := p.pickFile()
	c := p.holds[src]
	data, err := os.ReadFile(p.abs(src))
	if err != nil {
		return err
	}
	rel := p.newName(p.pickDir(), c.ext)
	if p.rng.IntN(2) == 0 {
		if cand := filepath.Join(p.pickDir(), filepath.Base(src)); !p.occupied(cand) {
			rel = cand
		}
	}
	if err := p.writeAtomic(rel, data); err != nil {
		return err
	}
	p.addFile(rel, c)
	p.did.duplicated++
	p.logOp("duplicate", c, src, rel)
	return nil
}

func (p *producer) delete() error {
	rel := p.pickFile()
	if err := os.Remove(p.abs(rel)); err != nil {
		return err
	}
	c := p.dropFile(rel)
	p.did.deleted++
	p.logOp("delete", c, rel)
	return nil
}

// startSlow opens a new file under its final name and writes its first
// chunk; advanceSlow writes the rest, 50 ms to 1.5 s apart. No chunk ends
// where the file would look whole (a .jsonl after a newline, a .json
// after its closing bracket), so a daemon that honours the design's
// completeness rule never uploads a part.
func (p *producer) startSlow() error {
	c, data := p.newContent(true)
	rel := p.newName(p.pickDir(), c.ext)
	f, err := os.OpenFile(p.abs(rel), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	// The last byte a chunk may stop before: a .jsonl's final newline, a
	// .json's closing bracket.
	limit := len(data) - 1
	if c.ext == ".json" {
		limit = bytes.LastIndexAny(data, "}]")
	}
	chunks := 3 + p.rng.IntN(6)
	var cuts []int
	for len(cuts) < chunks-1 {
		cut := 1 + p.rng.IntN(limit) // data[:cut] stops before data[limit]
		if c.ext == ".jsonl" && data[cut-1] == '\n' {
			continue // a .jsonl cut after a newline would look whole
		}
		cuts = append(cuts, cut)
	}
	slices.Sort(cuts)
	cuts = append(cuts, len(data))
	sw := &slowWrite{path: rel, c: c, data: data, cuts: cuts, f: f}
	p.slow = append(p.slow, sw)
	p.slowAt[rel] = true
	p.logOp("slowstart", c, rel)
	return p.writeChunk(sw)
}

// writeChunk writes the next chunk of sw and schedules the one after.
func (p *producer) writeChunk(sw *slowWrite) error {
	from := 0
	if sw.next > 0 {
		from = sw.cuts[sw.next-1]
	}
	if _, err := sw.f.Write(sw.data[from:sw.cuts[sw.next]]); err != nil {
		return err
	}
	sw.next++
	pause := p.ticks(time.Duration(50+p.rng.IntN(1450)) * time.Millisecond)
	sw.dueAt = p.tick + pause
	sw.paused += pause
	return nil
}

// advanceSlow writes the chunks that are due and finishes complete files.
func (p *producer) advanceSlow() error {
	keep := p.slow[:0]
	for _, sw := range p.slow {
		if sw.dueAt > p.tick {
			keep = append(keep, sw)
			continue
		}
		if err := p.writeChunk(sw); err != nil {
			return err
		}
		if sw.next < len(sw.cuts) {
			keep = append(keep, sw)
			continue
		}
		if err := sw.f.Close(); err != nil {
			return err
		}
		delete(p.slowAt, sw.path)
		p.addFile(sw.path, sw.c)
		p.did.slowWritten++
		p.logOp("slowdone", sw.c, sw.path)
	}
	clear(p.slow[len(keep):])
	p.slow = keep
	return nil
}
