package uploader_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/tracesync/tracesync/client/stratixtest"
	"github.com/tracesync/tracesync/store"
)

// The create-phase intent is written while presign and the PUT run, but it
// must not outlive an attempt that failed before create: after such a
// failure the basename lock is released, and a create-phase intent left
// behind would let a crash recovery adopt the traces of another upload of
// the same basename (rule 9 with rule 8). Each failure before create leaves
// the intent in the presign phase.
func TestFailureBeforeCreateLeavesPresignIntent(t *testing.T) {
	for _, ep := range []stratixtest.Endpoint{stratixtest.EndpointPresign, stratixtest.EndpointPut} {
		t.Run(string(ep), func(t *testing.T) {
			cfg := fastConfig()
			cfg.InitialBackoff, cfg.MaxBackoff = time.Hour, time.Hour // no retry during the test
			h := newHarness(t, cfg, stratixtest.Options{})
			h.srv.FailNext(ep, 1, http.StatusServiceUnavailable)
			p := h.write("fails.json", traceA)
			h.ready(p)
			h.waitState(p, store.StateRetrying)
			in, err := h.db.Intents()
			if err != nil {
				t.Fatal(err)
			}
			if len(in) != 1 || in[0].Phase != store.PhasePresign {
				t.Fatalf("after a 503 from %s: intents %+v, want one in the presign phase", ep, in)
			}
			if n := h.srv.Calls(stratixtest.EndpointCreate); n != 0 {
				t.Fatalf("after a 503 from %s: %d creates, want 0", ep, n)
			}
		})
	}
}
