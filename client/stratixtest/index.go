// The index of live traces by id.

package stratixtest

import (
	"strconv"
	"strings"
)

// traceIndex finds live traces by id. The ids this server makes are its
// prefix and a sequence number in base 36, so those are kept in a slice
// indexed by that number: a 50 MiB JSONL upload makes ~200,000 traces at
// once, and inserting them into a map cost the benchmark's large-file run
// more CPU than receiving the bytes. Any other id (a data log written with
// another prefix) goes to a map.
type traceIndex struct {
	prefix string
	bySeq  []*trace
	other  map[string]*trace
	live   int
}

func newTraceIndex(prefix string) traceIndex {
	return traceIndex{prefix: prefix, other: map[string]*trace{}}
}

// seqOf returns the sequence number of an id of this server's own form.
func (x *traceIndex) seqOf(id string) (uint64, bool) {
	rest, ok := strings.CutPrefix(id, x.prefix)
	if !ok || rest == "" || (len(rest) > 1 && rest[0] == '0') {
		return 0, false // "0"-padded forms are not ones this server wrote
	}
	n, err := strconv.ParseUint(rest, 36, 64)
	if err != nil || strconv.FormatUint(n, 36) != rest || n > 1<<31 {
		return 0, false
	}
	return n, true
}

func (x *traceIndex) get(id string) *trace {
	if n, ok := x.seqOf(id); ok {
		if n < uint64(len(x.bySeq)) {
			return x.bySeq[n]
		}
		return nil
	}
	return x.other[id]
}

func (x *traceIndex) put(t *trace) {
	if x.get(t.id) == nil {
		x.live++
	}
	if n, ok := x.seqOf(t.id); ok {
		if n >= uint64(len(x.bySeq)) {
			x.bySeq = growDoubling(x.bySeq, int(n)+1-len(x.bySeq))
			x.bySeq = x.bySeq[:n+1]
		}
		x.bySeq[n] = t
		return
	}
	x.other[t.id] = t
}

func (x *traceIndex) del(id string) {
	if x.get(id) == nil {
		return
	}
	x.live--
	if n, ok := x.seqOf(id); ok {
		x.bySeq[n] = nil
		return
	}
	delete(x.other, id)
}

// len is the number of live traces.
func (x *traceIndex) len() int { return x.live }
