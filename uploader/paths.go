package uploader

// paths.go owns what happens to a path from the watcher's event to its
// decision: hashing, the decide step in the store, and attaching the path
// to the upload of its content.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/tracesync/tracesync/client"
	"github.com/tracesync/tracesync/store"
	"github.com/tracesync/tracesync/watcher"
)

// pathJob is the main loop's note on a path with work under way.
type pathJob struct {
	root     string
	hashing  bool    // queued for, or in, the hash pool
	deciding bool    // a decideOp is on its way to the store
	rehash   bool    // a newer Ready came while busy: hash again afterwards
	growing  bool    // the latest Ready was for a file still being written (a .jsonl)
	readied  bool    // a Ready (or a retry) came this run: not only resumed from the store at start
	force    bool    // `tracesync retry`
	job      *upload // the upload this path waits for
	// size is the hashed size, or, until the hash is done, the size the
	// watcher saw: orphanBusy compares it from the moment the path is
	// queued for hashing, not only once a hash worker has it.
	size int64
}

func (p *pathJob) busy() bool { return p.hashing || p.deciding || p.job != nil }

type hashReq struct {
	path    string
	root    string
	growing bool
}

type hashDone struct {
	req hashReq
	res hashResult
}

// hasher hashes and validates files until hashIn is closed.
func (l *loop) hasher() {
	lookup := recordLookup(l.e.st.GetPath, l.e.st.GetContent, l.e.st.PathByInode)
	for req := range l.hashIn {
		res := readSource(req.path, l.e.cfg.MaxFileSize, l.e.cfg.MaxInflate, lookup, req.growing)
		select {
		case l.hashOut <- hashDone{req: req, res: res}:
		case <-l.abort:
			return
		}
	}
}

func (l *loop) onEvent(ev watcher.Event) {
	if l.guardEvent(ev) {
		return // parked: its root is held back on another device
	}
	switch ev.Kind {
	case watcher.Removed:
		l.onRemoved(ev)
	case watcher.Ready:
		if l.skipTooOld(ev) {
			return
		}
		l.onReady(ev.Path, ev.Root, ev.Stat.Size, false, ev.Growing)
	case watcher.Incomplete:
		delete(l.settling, ev.Path)
		l.forgetGrowth(ev.Path)
		reason := ev.Reason
		if reason == "" {
			reason = "still incomplete after the settle timeout"
		}
		reason = fmt.Sprintf("%s: %s; the writer should write a temporary name and rename it into place", ev.Path, reason)
		l.writes = append(l.writes, &quarantineOp{path: ev.Path, root: ev.Root, reason: reason})
		l.countQuarantine(ev.Path, "incomplete", -1, reason)
	case watcher.RootGone:
		l.onRootGone(ev.Root, ev.Reason)
	case watcher.RootBack:
		l.onRootBack(ev.Root)
	case watcher.ScanDone:
		l.scanned[ev.Root] = true
		l.onScanDone(ev)
	}
}

func (l *loop) onReady(path, root string, size int64, force, growing bool) {
	delete(l.settling, path)
	l.unhold(path, root)
	p := l.paths[path]
	if p == nil {
		p = &pathJob{root: root}
		l.paths[path] = p
	}
	p.force = p.force || force
	p.growing, p.readied = growing, true
	l.noteGrowth(path, size)
	l.e.progress(func(pr *Progress) {
		pr.FilesSeen++
		if size <= l.e.cfg.MaxFileSize || isJSONL(path) {
			pr.BytesSeen += size // a larger file is refused unread (a .jsonl goes in segments)
		}
	})
	if p.busy() {
		if p.job != nil && p.job.state != jobRunning && p.job.state != jobRecording && !isJSONL(path) {
			// Not started: let go of the upload and look at the new bytes.
			// (A segment of a growing file stays as it was cut: the next
			// one follows once it is recorded.)
			l.detach(path, p)
		} else {
			p.rehash = true
			return
		}
	}
	p.size = size
	l.startHash(path, p)
}

func (l *loop) startHash(path string, p *pathJob) {
	p.hashing, p.rehash = true, false
	l.hashQ = append(l.hashQ, hashReq{path: path, root: p.root, growing: p.growing})
}

// detach takes path off the upload it waits for.
func (l *loop) detach(path string, p *pathJob) {
	u := p.job
	p.job = nil
	if u == nil {
		return
	}
	delete(u.paths, path)
	if len(u.paths) == 0 && u.state != jobRunning && u.state != jobRecording {
		if u.resolve != resolveNone {
			l.resolveInBackground(u)
			return
		}
		l.dropJob(u)
		return
	}
	if u.path == path {
		for other := range u.paths {
			u.path, u.root = other, l.paths[other].root
			break
		}
	}
}

// release forgets a path's note when nothing is under way for it.
func (l *loop) release(path string, p *pathJob) {
	if p.rehash && !p.busy() {
		l.startHash(path, p)
		return
	}
	if !p.busy() {
		delete(l.paths, path)
	}
}

func (l *loop) onHashed(d hashDone) {
	path := d.req.path
	p := l.paths[path]
	if p == nil {
		p = &pathJob{root: d.req.root}
		l.paths[path] = p
	}
	p.hashing = false
	p.size = d.res.ID.Size
	res := d.res
	switch res.Outcome {
	case hashVanished:
		l.release(path, p)
		return
	case hashIncomplete, hashChanged:
		l.e.log.Debug().Str("path", path).Err(res.Err).Msg("not complete yet: back to settling")
		l.settling[path] = true
		l.w.Resettle(path)
		p.rehash = false
		l.release(path, p)
		return
	}
	op := &decideOp{path: path, root: p.root, name: UploadName(path, res.Hash, l.e.cfg.RemoteName), res: res, force: p.force}
	switch res.Outcome {
	case hashInvalid:
		op.reason = "invalid"
	case hashTooLarge:
		op.reason = "too-large"
	case hashUnreadable:
		op.reason = "unreadable"
	case hashUnsupported:
		op.reason = "unsupported"
	}
	p.force = false
	p.deciding = true
	l.deciding++
	l.writes = append(l.writes, op)
}

func (l *loop) onDecided(o *decideOp) {
	path := o.path
	p := l.paths[path]
	if p == nil {
		p = &pathJob{root: o.root}
		l.paths[path] = p
	}
	p.deciding = false
	l.deciding--
	growing := notQuiet(path, p)
	read := o.res.Read
	if read == 0 && !readOutcome(o.res.Outcome) {
		read = -1 // refused unread
	}
	log := l.e.log
	switch o.dec {
	case decUnchanged:
		l.noteSent(path, o.res.End)
		l.doneFor(path, func(pr *Progress) { pr.Unchanged++ }, read)
	case decLinked:
		l.noteSent(path, o.res.End)
		l.logLinked(path, o.res.Hash)
		l.e.m.links.Inc()
		l.doneFor(path, func(pr *Progress) { pr.Linked++ }, read)
	case decSkipped:
		l.forgetGrowth(path)
		log.Info().Str("path", path).Msg("skipped: empty file, nothing to upload")
		l.doneFor(path, func(pr *Progress) { pr.Skipped++ }, read)
	case decQuarantined:
		l.forgetGrowth(path) // nothing of it goes up until its bytes change
		reason := o.reason
		if reason == "" {
			reason = "rejected"
		}
		if o.prevState != store.StateQuarantined || o.reason != "" {
			l.countQuarantine(path, reason, read, o.lastErr)
		} else {
			l.doneFor(path, func(pr *Progress) { pr.Quarantined++; pr.QuarantineReasons[reason]++ }, read)
		}
	case decUpload:
		l.noteSent(path, o.res.Start)
		l.attach(path, p, o)
	case decRehash:
		p.rehash = true // its record changed since it was read
	}
	if o.res.More && (o.dec == decUpload || o.dec == decLinked || o.dec == decUnchanged) {
		p.rehash = true // the next segment follows once this one is recorded
		l.cont[path] = true
	}
	if o.res.Partial && o.dec != decRehash {
		// Its last line is not finished: the watcher looks again, and
		// quarantines it as incomplete if it never is.
		l.settling[path] = true
		l.w.Resettle(path)
	}
	if len(o.orphans) > 0 && !l.movedAway(path, o.prev, o.res.ID) {
		for _, or := range o.orphans {
			l.orphan(or.hash, or.size, "")
		}
	}
	l.release(path, p)
	if o.dec == decUnchanged || o.dec == decLinked {
		l.afterUpload([]string{path}, map[string]bool{path: growing}) // recorded in the batch just written
	}
}

// maxRenameChecks bounds the lstat calls logLinked makes among a content's
// other paths, so a content held by thousands of files costs a few.
const maxRenameChecks = 8

// logLinked says what a path whose bytes are already uploaded is: the new
// name of a file gone a moment ago (a rename, rule 5), or a copy of a file
// still there. Neither uploads anything.
func (l *loop) logLinked(path string, h store.Hash) {
	refs, err := l.e.st.Refs(h)
	if err != nil {
		l.e.log.Error().Err(err).Str("path", path).Msg("read the paths of a linked content")
	}
	var from, copyOf string
	checked := 0
	for _, r := range refs {
		if r == path {
			continue
		}
		_, pending := l.g.pending[r]
		gone := pending
		if !gone && checked < maxRenameChecks {
			checked++
			_, err := os.Lstat(r)
			gone = errors.Is(err, fs.ErrNotExist)
		}
		if gone {
			from = r
			l.g.renamed[r] = true // judgeRemovals does not tell its removal again
			break
		}
		if copyOf == "" {
			copyOf = r
		}
	}
	if t, ok := l.orphans[h]; from == "" && ok {
		from = t.from // its removal was acted on first; "" if not known
	}
	ev := l.e.log.Info().Str("path", path).Str("hash", h.String())
	switch {
	case from != "": // from and same_as are for JSON; the console leaves out what the message says
		ev.Str("from", from).Msg("renamed: " + from + " -> " + path + " (no upload, no delete)")
	case copyOf != "":
		ev.Str("same_as", copyOf).Msg("linked: same bytes as " + copyOf + " (no upload)")
	default:
		ev.Msg("linked: same bytes as a file uploaded before (no upload)")
	}
}

// countQuarantine logs a quarantined path once, its path and advice once:
// msg names the path (the reasons built in hash.go and onEvent do) or the
// line adds it, and reasons without advice of their own get the general
// one. read is as for done.
func (l *loop) countQuarantine(path, reason string, read int64, msg string) {
	text := msg
	if !strings.Contains(msg, path) {
		text = path + ": " + msg
	}
	if reason == "invalid" || reason == "rejected" {
		text += "; fix the file and it is tried again (or `tracesync retry` it)"
	}
	// error stays a field for JSON; the console leaves it out, as the message says it.
	l.e.log.Warn().Str("path", path).Str("reason", reason).Str("error", msg).Msg("quarantined: " + text)
	l.e.m.quarantined.WithLabelValues(reason).Inc()
	l.done(func(pr *Progress) { pr.Quarantined++; pr.QuarantineReasons[reason]++ }, read)
}

// doneFor is done for path, except that the next segment of a file cut at
// the size limit is not another file: only its bytes count.
func (l *loop) doneFor(path string, fn func(p *Progress), read int64) {
	if l.cont[path] {
		delete(l.cont, path)
		l.e.progress(func(pr *Progress) { pr.BytesDone += max(read, 0) })
		return
	}
	l.done(fn, read)
}

// done counts one file reaching a final state after read bytes of it were
// read; read < 0 means it was refused unread (too large, unsupported).
func (l *loop) done(fn func(p *Progress), read int64) {
	l.e.progress(func(pr *Progress) {
		fn(pr)
		pr.FilesDone++
		if read >= 0 {
			pr.FilesRead++
			pr.BytesDone += read
		}
	})
}

// readOutcome reports whether a hash outcome came from reading the file
// (an empty file was read too), not from refusing it unread.
func readOutcome(o hashOutcome) bool {
	switch o {
	case hashTooLarge, hashUnsupported, hashVanished, hashUnreadable:
		return false // an unreadable file that was partly read has Read > 0
	}
	return true
}

// attach makes path wait for the upload of its content, creating the job.
func (l *loop) attach(path string, p *pathJob, o *decideOp) {
	h := o.res.Hash
	u := l.jobs[h]
	if u == nil {
		ct, err := client.ContentType(o.name) // x.jsonl.gz is sent as x.<hash>.jsonl
		if err != nil {
			ct = "application/json"
		}
		u = &upload{hash: h, path: path, root: p.root, filename: o.name, contentType: ct, size: o.res.segSize(), offset: o.res.Start, wrap: o.res.Wrap,
			paths: map[string]bool{}, attempts: o.attempts}
		if o.hasIntent && o.intent.Phase == store.PhaseCreate {
			u.resolve, u.intentAt = resolveFirst, o.intent.StartedAt
			if o.intent.Filename != "" {
				u.filename = o.intent.Filename
			}
		}
		u.checkRemote = u.resolve == resolveNone && l.e.cfg.RemoteName == RemoteNameUnique && !l.e.cfg.NoRemoteCheck
		l.jobs[h] = u
		if o.next.After(l.now()) {
			l.schedule(u, o.next)
		} else {
			l.enqueue(u, false)
		}
	}
	u.paths[path] = true
	p.job = u
}

func (l *loop) onRequeue(paths []string) {
	l.writes = append(l.writes, &requeueOp{paths: paths})
}
