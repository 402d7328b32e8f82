package uploader

// worker.go owns one upload or delete attempt on a worker: the check by
// name, presign, PUT, create, recovery listings, and their intents.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"time"

	"github.com/tracesync/tracesync/client"
	"github.com/tracesync/tracesync/internal/tracefile"
	"github.com/tracesync/tracesync/store"
)

// maxRepresign bounds the fresh presigns one attempt makes after expired or
// mismatched presigned URLs, before the attempt counts as a transient failure.
const maxRepresign = 3

// uploadSpec is a worker's copy of what one upload attempt needs; the
// loop-owned job is never touched by a worker.
type uploadSpec struct {
	hash        store.Hash
	path        string
	filename    string
	contentType string
	size        int64
	offset      int64     // where the content starts in path
	wrap        bool      // a part of a .json array: the size less 2 bytes from offset, in brackets
	needResolve bool      // a create-phase intent exists: look for its traces first (rule 9)
	checkRemote bool      // ask the server for traces of this unique name before uploading (rule 15)
	resolveOnly bool      // start-up recovery: resolve, do not upload
	intentAt    time.Time // when that create phase began
	// stagedAt is set when the loop wrote this attempt's create-phase
	// intent ahead (stageMore), with that StartedAt: it is durable.
	stagedAt time.Time
	attempt  int
}

// workItem is one job for a worker: an upload or a delete.
type workItem struct {
	up   *upload
	spec uploadSpec
	del  *delJob
	id   string
}

type resultKind uint8

const (
	resCreated      resultKind = iota + 1 // create returned trace ids
	resAdopted                            // recovery found the traces of an earlier create
	resFound                              // the server already holds traces of this unique name: adopted, no upload
	resResolvedNone                       // recovery found nothing: upload from scratch
	resChanged                            // the bytes sent differ from the decided hash (rule 7)
	resVanished                           // the source file is gone
	resUnreadable                         // the source file cannot be read
	resFailed                             // the API refused or could not be reached
	resDeleted                            // a remote delete is done (or the trace was already gone)
)

type workResult struct {
	item           workItem
	kind           resultKind
	ids            []string
	err            error
	class          client.Class
	transport      bool // err got no HTTP answer at all
	stage          string
	mayHaveCreated bool // the failure came after the create-phase intent was written
	createAt       time.Time
	listedAt       time.Time // when the listing of a resolution began (cfg.Now)
	started        time.Time
	dur            time.Duration
}

// worker runs work items until in is closed. Results go to out.
func (e *Engine) worker(in <-chan workItem, out chan<- workResult, abort <-chan struct{}) {
	for it := range in {
		var r workResult
		if it.del != nil {
			r = e.runDelete(it)
		} else {
			r = e.runUpload(it)
		}
		select {
		case out <- r:
		case <-abort:
			return
		}
	}
}

func (e *Engine) wait(ctx context.Context) error {
	if e.lim == nil {
		return nil
	}
	return e.lim.Wait(ctx)
}

func (e *Engine) fail(r workResult, stage string, err error) workResult {
	r.kind, r.stage, r.err = resFailed, stage, err
	r.class = client.Classify(err)
	var te *client.TransportError
	r.transport = errors.As(err, &te) && r.class == client.ClassTransient
	r.dur = time.Since(r.started)
	if r.class == 0 {
		r.class = client.ClassTransient
	}
	return r
}

func (e *Engine) runUpload(it workItem) (res workResult) {
	ctx := e.workCtx
	s := it.spec
	r := workResult{item: it, started: time.Now()}
	if s.needResolve {
		r.listedAt = e.cfg.Now()
		since := time.Time{} // a unique name's traces are ours whenever made
		if !nameIsUnique(s.filename, s.hash) {
			since = s.intentAt.Add(-e.cfg.RecoverySkew)
		}
		ids, err := e.findTraces(ctx, s.filename, s.hash, since)
		if err != nil {
			r = e.fail(r, "recover", err)
			r.mayHaveCreated = true
			return r
		}
		if len(ids) > 0 {
			r.kind, r.ids, r.dur = resAdopted, ids, time.Since(r.started)
			return r
		}
		if s.resolveOnly {
			r.kind, r.dur = resResolvedNone, time.Since(r.started)
			return r
		}
	}
	// Rule 9: the create-phase intent is durable before create. It is
	// written while presign and the PUT run, so that its fsync overlaps
	// them instead of adding to every upload's time (and intents of
	// several workers share one commit). A create-phase intent must exist
	// only while a create may have run: recovery adopts the unrecorded
	// traces of its upload name, and the name lock (rule 8) is released
	// after a failure before create. So when this attempt fails before
	// create, the intent goes back to the presign phase before the worker
	// returns (and if that write fails, the result says a create may have
	// run, which keeps the lock until a listing resolved it). The worker
	// always waits for these writes before returning: the loop never acts
	// on a result before they ended. A recovery in progress (needResolve)
	// keeps the intent it resolves and writes the new one before create.
	early := !s.needResolve
	intentDone := make(chan error, 1)
	var intentErr error
	intentWaited := false
	waitIntent := func() error {
		if !intentWaited {
			intentErr, intentWaited = <-intentDone, true
		}
		return intentErr
	}
	in := store.Intent{Hash: s.hash, Path: s.path, Filename: s.filename, Size: s.size, Phase: store.PhaseCreate}
	writeIntent := func() {
		r.createAt = e.cfg.Now()
		in.StartedAt = r.createAt
		go func(in store.Intent) {
			intentDone <- e.st.Update(context.WithoutCancel(ctx), func(tx *store.Tx) error { return tx.PutIntent(in) })
		}(in)
	}
	if early {
		if s.stagedAt.IsZero() {
			writeIntent()
		} else {
			r.createAt, in.StartedAt = s.stagedAt, s.stagedAt
			intentDone <- nil
		}
		defer func() {
			if waitIntent() != nil || res.mayHaveCreated {
				return
			}
			back := in
			back.Phase = store.PhasePresign
			if err := e.st.Update(context.WithoutCancel(ctx), func(tx *store.Tx) error { return tx.PutIntent(back) }); err != nil {
				res.mayHaveCreated = true
			}
		}()
	}
	// Rule 15: another process, or this host before its state was lost,
	// may have uploaded these bytes under this very name. The listing runs
	// beside the first presign, so it adds no round trip to an upload; a
	// presigned URL left unused costs nothing. (The intent above is written
	// meanwhile; if traces are found, it goes back to the presign phase and
	// their record clears it.)
	type listing struct {
		ids []string
		err error
	}
	var checked chan listing
	if s.checkRemote && early {
		checked = make(chan listing, 1)
		go func() {
			ids, err := e.findTraces(ctx, s.filename, s.hash, time.Time{})
			checked <- listing{ids, err}
		}()
	}
	// awaitCheck waits for the listing, once: done when it decides the
	// attempt (traces found, or the listing failed).
	awaitCheck := func() (res workResult, done bool) {
		if checked == nil {
			return r, false
		}
		c := <-checked
		checked = nil
		switch {
		case c.err != nil:
			return e.fail(r, "check", c.err), true
		case len(c.ids) > 0:
			r.kind, r.ids, r.dur = resFound, c.ids, time.Since(r.started)
			return r, true
		}
		return r, false
	}
	for represign := 0; ; represign++ {
		if err := e.wait(ctx); err != nil {
			if res, done := awaitCheck(); done {
				return res
			}
			return e.fail(r, "presign", err)
		}
		pre, err := e.api.Presign(ctx, s.filename, s.contentType, s.size)
		if res, done := awaitCheck(); done {
			return res
		}
		if err != nil {
			r = e.fail(r, "presign", err)
			r.mayHaveCreated = s.needResolve
			return r
		}
		// OpenSource, not os.Open: a FIFO swapped in under the name since
		// it was hashed would block open(2) forever, past any Shutdown.
		f, err := OpenSource(s.path)
		if err != nil {
			r.err, r.dur = err, time.Since(r.started)
			r.mayHaveCreated = s.needResolve
			switch {
			case errors.Is(err, fs.ErrNotExist):
				r.kind = resVanished
			case errors.Is(err, ErrNotRegular):
				r.kind = resUnreadable
			default:
				r.kind = resUnreadable
				r.err = openFailure(s.path, err).Err
			}
			return r
		}
		// A segment is a range of a file that may grow meanwhile; a whole
		// file must not (client.ErrBodySize tells it changed).
		var body io.Reader = f
		switch {
		case s.wrap:
			body = wrapped(f, s.offset, s.offset+s.size-2)
		case isJSONL(s.path):
			body = io.NewSectionReader(f, s.offset, s.size)
		}
		closeBody := func() error { return nil }
		if isCompressed(s.path) {
			// Its decompressed bytes are sent (compressed.go).
			ib, err := newInflatedBody(f, s.path, s.offset, s.size)
			if err != nil {
				f.Close()
				r.kind, r.err, r.dur, r.mayHaveCreated = resUnreadable, err, time.Since(r.started), s.needResolve
				return r
			}
			body, closeBody = ib, ib.Close
		}
		sum, err := e.api.Put(ctx, pre.URL, s.contentType, body, s.size)
		closeBody()
		f.Close()
		if errors.Is(err, client.ErrBodySize) || errors.Is(err, tracefile.ErrArchive) {
			// The file is not the size decided on, or no longer
			// decompresses: it changed (rule 7).
			r.kind, r.err, r.dur, r.mayHaveCreated = resChanged, err, time.Since(r.started), s.needResolve
			return r
		}
		if err != nil {
			if client.Classify(err) == client.ClassRepresign && represign < maxRepresign {
				continue
			}
			r = e.fail(r, "put", err)
			if r.class == client.ClassRepresign {
				r.class = client.ClassTransient
			}
			r.mayHaveCreated = s.needResolve
			return r
		}
		if store.Hash(sum) != s.hash {
			r.kind, r.dur, r.mayHaveCreated = resChanged, time.Since(r.started), s.needResolve
			r.err = fmt.Errorf("%s changed during its upload: the bytes sent hash to %s, not %s", s.path, store.Hash(sum), s.hash)
			return r
		}
		break
	}
	// Rule 9: before create, the intent says create may run.
	if !early {
		writeIntent()
	}
	if err := waitIntent(); err != nil {
		r.kind, r.stage, r.err, r.class = resFailed, "store", fmt.Errorf("record upload intent: %w", err), client.ClassTransient
		r.mayHaveCreated = s.needResolve
		return r
	}
	r.mayHaveCreated = true
	if err := e.wait(ctx); err != nil {
		return e.fail(r, "create", err)
	}
	ids, err := e.api.Create(ctx, s.filename)
	if err != nil {
		return e.fail(r, "create", err)
	}
	r.kind, r.ids, r.dur = resCreated, ids, time.Since(r.started)
	return r
}

// findTraces lists the project's traces for filename, newest first, and
// returns those whose filename is exactly filename, that were created at or
// after since (the zero time: whenever), and that the store does not
// already attribute to a content or a pending delete (rule 9), oldest
// first. Under a bare basename the window reaches back by the allowed
// clock skew, so it can hold the traces of an earlier upload of the same
// basename: only the store can tell them apart. Server-side filters narrow
// the list; the checks here decide.
func (e *Engine) findTraces(ctx context.Context, filename string, h store.Hash, since time.Time) ([]string, error) {
	if err := e.wait(ctx); err != nil {
		return nil, err
	}
	opts := client.ListOptions{Search: filename, Source: filename, SortBy: "created_at", SortOrder: "desc", PageSize: 500}
	var ids []string
	for t, err := range e.api.All(ctx, opts) {
		if err != nil {
			return nil, err
		}
		if t.CreatedAt.Before(since) {
			break // sorted newest first: the rest is older
		}
		if t.Filename != nil && *t.Filename == filename {
			ids = append(ids, t.ID)
		}
	}
	if len(ids) == 0 {
		return nil, nil
	}
	// A unique name is these bytes' alone, whose content the store does not
	// hold: only a pending delete (of these bytes, removed before) can
	// claim its traces, and that is a lookup per id, not a read of every
	// content.
	known, err := e.st.DeletesAmong(ids)
	if !nameIsUnique(filename, h) {
		known, err = e.st.TraceIDsNamed(filename)
	}
	if err != nil {
		return nil, fmt.Errorf("read the trace ids already recorded for %s: %w", filename, err)
	}
	ids = slices.DeleteFunc(ids, func(id string) bool { return known[id] })
	slices.Reverse(ids)
	return ids, nil
}

func (e *Engine) runDelete(it workItem) workResult {
	ctx := e.workCtx
	r := workResult{item: it, started: time.Now()}
	if err := e.wait(ctx); err != nil {
		return e.fail(r, "delete", err)
	}
	err := e.api.Delete(ctx, it.id)
	if err == nil || client.Classify(err) == client.ClassNotFound {
		r.kind, r.err, r.dur = resDeleted, err, time.Since(r.started)
		return r
	}
	return e.fail(r, "delete", err)
}
