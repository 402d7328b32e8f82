package stratixtest

import (
	"strconv"
	"testing"
)

// TestTraceIndex checks the index against a plain map through puts and
// deletes of ids of the server's own form, near-misses of it, and others.
func TestTraceIndex(t *testing.T) {
	const prefix = "tr_0011aabb_"
	x := newTraceIndex(prefix)
	ref := map[string]*trace{}
	ids := []string{"tr_other_1", "plain", prefix, prefix + "0", prefix + "00", prefix + "01", prefix + "Z", prefix + "-1", prefix + "zzzzzzzzzzzzzz"}
	for i := uint64(0); i < 300; i += 7 {
		ids = append(ids, prefix+strconv.FormatUint(i, 36))
	}
	for step, id := range ids {
		tr := &trace{id: id}
		x.put(tr)
		ref[id] = tr
		if step%3 == 2 {
			del := ids[step/2]
			x.del(del)
			delete(ref, del)
		}
		if x.len() != len(ref) {
			t.Fatalf("after %d steps: len %d, want %d", step+1, x.len(), len(ref))
		}
		for _, q := range ids {
			if got, want := x.get(q), ref[q]; got != want {
				t.Fatalf("after %d steps: get(%q) = %v, want %v", step+1, q, got, want)
			}
		}
	}
	// A second put of a live id replaces it without counting it twice.
	again := &trace{id: prefix + "7"}
	x.put(again)
	ref[again.id] = again
	if x.len() != len(ref) || x.get(again.id) != again {
		t.Fatalf("re-put: len %d want %d, get %v", x.len(), len(ref), x.get(again.id))
	}
}
