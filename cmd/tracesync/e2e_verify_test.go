package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tracesync/tracesync/client"
	"github.com/tracesync/tracesync/client/stratixtest"
	"github.com/tracesync/tracesync/internal/control"
)

// uploadName is the unique name tracesync uploads a file's bytes under.
func uploadName(path, hash string) string {
	base := filepath.Base(path)
	ext := filepath.Ext(base)
	return strings.TrimSuffix(base, ext) + "." + hash[:16] + ext
}

// liveIDsNamed returns the ids of the live traces on srv uploaded as name.
func liveIDsNamed(srv *stratixtest.Server, name string) []string {
	var ids []string
	for _, t := range srv.Traces() {
		if t.Filename != nil && *t.Filename == name {
			ids = append(ids, t.ID)
		}
	}
	return ids
}

// verify finds the traces deleted on the server behind tracesync's back,
// names their files and exits 1; --repair alone changes nothing; with
// --confirm it forgets them, and the next backfill uploads exactly those
// files again (a partly deleted file whole, its surviving traces deleted),
// after which verify exits 0. A trace the state does not record is
// reported as unknown without failing.
func TestE2EVerifyRepairAfterServerDeletes(t *testing.T) {
	t.Parallel()
	e := newE2E(t, stratixtest.Options{})
	root := t.TempDir()
	hashes := map[string]string{} // local path -> content hash
	for i := range 6 {
		name := fmt.Sprintf("a%02d.json", i)
		hashes[filepath.Join(root, name)] = writeFile(t, root, name, traceJSON(fmt.Sprintf("verify-%d", i)))
	}
	for _, name := range []string{"b.jsonl", "c.jsonl"} {
		hashes[filepath.Join(root, name)] = writeFile(t, root, name, traceJSONL("verify-"+name, 3))
	}
	if r := e.run("backfill", "--settle", "50ms", root); r.code != 0 {
		t.Fatalf("backfill: exit %d\n%s\n%s", r.code, r.stdout, tail(r.stderr, 4000))
	}
	gets := e.srv.Calls(stratixtest.EndpointGet)
	if r := e.run("verify"); r.code != 0 || !strings.Contains(r.stdout, "missing: none") {
		t.Fatalf("verify after a clean backfill: exit %d, want 0 and no missing trace\n%s\n%s", r.code, r.stdout, tail(r.stderr, 4000))
	}

	// Behind tracesync's back: a01 and a04 lose their trace, c.jsonl one of three.
	api, err := client.New(client.Config{BaseURL: e.srv.URL(), APIKey: stratixtest.DefaultAPIKey})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	lost := []string{filepath.Join(root, "a01.json"), filepath.Join(root, "a04.json"), filepath.Join(root, "c.jsonl")}
	var survivors []string
	for _, p := range lost {
		ids := liveIDsNamed(e.srv, uploadName(p, hashes[p]))
		if len(ids) == 0 {
			t.Fatalf("no trace on the server named %s", uploadName(p, hashes[p]))
		}
		del := ids
		if filepath.Base(p) == "c.jsonl" {
			del, survivors = ids[:1], ids[1:]
		}
		for _, id := range del {
			if err := api.Delete(ctx, id); err != nil {
				t.Fatalf("delete %s on the server: %v", id, err)
			}
		}
	}
	if _, err := api.Upload(ctx, "stray.json", bytes.NewReader(traceJSON("stray")), int64(len(traceJSON("stray")))); err != nil {
		t.Fatal(err)
	}

	r := e.run("verify")
	t.Logf("verify:\n%s", r.stdout)
	if r.code != 1 {
		t.Fatalf("verify after server deletes: exit %d, want 1\n%s\n%s", r.code, r.stdout, tail(r.stderr, 4000))
	}
	for _, p := range lost {
		if !strings.Contains(r.stdout, p) {
			t.Errorf("verify does not name %s:\n%s", p, r.stdout)
		}
	}
	if strings.Contains(r.stdout, filepath.Join(root, "a00.json")) || !strings.Contains(r.stdout, "unknown: 1 trace") {
		t.Errorf("verify names an intact file, or does not count the stray trace as unknown:\n%s", r.stdout)
	}
	if strings.Contains(r.stdout+r.stderr, stratixtest.DefaultAPIKey) {
		t.Errorf("verify printed the API key")
	}
	var rep verifyReport
	r = e.run("verify", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || r.code != 1 {
		t.Fatalf("verify --json: exit %d, %v\n%s", r.code, err, r.stdout)
	}
	if len(rep.Missing) != 3 || rep.MissingTraces != 3 || rep.Unknown != 1 || rep.Contents != 8 {
		t.Errorf("verify --json: %d contents missing %d traces, %d unknown, %d contents; want 3, 3, 1, 8\n%s", len(rep.Missing), rep.MissingTraces, rep.Unknown, rep.Contents, r.stdout)
	}
	if n := e.srv.Calls(stratixtest.EndpointGet); n != gets {
		t.Errorf("verify made %d GETs of single traces, want none (it lists)", n-gets)
	}

	// --repair without --confirm: says what it would forget, changes nothing.
	before := e.run("files", "--json").stdout
	r = e.run("verify", "--repair")
	t.Logf("verify --repair:\n%s", r.stdout)
	if r.code != 1 || !strings.Contains(r.stdout, "would forget 3 contents and 3 files") || !strings.Contains(r.stdout, "nothing changed") {
		t.Errorf("verify --repair: exit %d, want 1 saying what it would forget\n%s\n%s", r.code, r.stdout, tail(r.stderr, 4000))
	}
	if after := e.run("files", "--json").stdout; after != before {
		t.Errorf("verify --repair without --confirm changed the state:\nbefore %s\nafter %s", before, after)
	}
	if r := e.run("verify", "--confirm"); r.code != 2 {
		t.Errorf("verify --confirm without --repair: exit %d, want 2", r.code)
	}

	// A running daemon holds the state: verify says to stop it.
	d := e.start("run", "--settle", "50ms", root)
	d.waitFor("the control socket", time.Minute, func() bool {
		h, err := control.Dial(control.SocketPath(e.state))
		if err != nil {
			return false
		}
		_, err = h.Status(ctx)
		return err == nil
	})
	if r := e.run("verify", "--repair", "--confirm"); r.code != 1 || !strings.Contains(r.stderr, "stop the daemon") {
		t.Errorf("verify beside a running daemon: exit %d, want 1 saying to stop it\n%s", r.code, tail(r.stderr, 2000))
	}
	d.terminate(time.Minute)
	if after := e.run("files", "--json").stdout; after != before {
		t.Errorf("the state changed while verify was refused beside a daemon")
	}

	r = e.run("verify", "--repair", "--confirm")
	t.Logf("verify --repair --confirm:\n%s", r.stdout)
	if r.code != 0 || !strings.Contains(r.stdout, "forgot 3 contents and 3 files") || !strings.Contains(r.stdout, "queued the delete of 2 traces") {
		t.Fatalf("verify --repair --confirm: exit %d, want 0 having forgotten 3 files and queued 2 deletes\n%s\n%s", r.code, r.stdout, tail(r.stderr, 4000))
	}

	createsBefore := e.srv.CreatesByHash()
	if r := e.run("backfill", "--settle", "50ms", root); r.code != 0 {
		t.Fatalf("backfill after repair: exit %d\n%s\n%s", r.code, r.stdout, tail(r.stderr, 4000))
	}
	createsAfter := e.srv.CreatesByHash()
	for p, h := range hashes {
		want := 0
		if slices.Contains(lost, p) {
			want = 1
		}
		if got := createsAfter[h] - createsBefore[h]; got != want {
			t.Errorf("%s: uploaded %d times by the backfill after repair, want %d", p, got, want)
		}
	}
	c := filepath.Join(root, "c.jsonl")
	if ids := liveIDsNamed(e.srv, uploadName(c, hashes[c])); len(ids) != 3 || slices.ContainsFunc(survivors, func(id string) bool { return slices.Contains(ids, id) }) {
		t.Errorf("c.jsonl's traces on the server after the re-upload: %v, want 3 new ones (survivors %v deleted)", ids, survivors)
	}
	if r := e.run("verify"); r.code != 0 || !strings.Contains(r.stdout, "missing: none") {
		t.Fatalf("verify after the re-upload: exit %d, want 0\n%s\n%s", r.code, r.stdout, tail(r.stderr, 4000))
	}
}

// verify with no state file, or a state that never synced to this target,
// is a configuration error (exit 2), not "nothing missing".
func TestE2EVerifyWithoutStateIsAConfigurationError(t *testing.T) {
	t.Parallel()
	e := newE2E(t, stratixtest.Options{Projects: []client.Project{{ID: "proj-main", Name: "main"}, {ID: "proj-other", Name: "other"}}})
	if r := e.run("verify"); r.code != 2 || !strings.Contains(r.stderr, "nothing to verify") {
		t.Errorf("verify without a state file: exit %d, want 2\n%s", r.code, r.stderr)
	}
	root := t.TempDir()
	writeFile(t, root, "a.json", traceJSON("verify-target"))
	if r := e.run("backfill", "--settle", "50ms", root); r.code != 0 {
		t.Fatalf("backfill: exit %d\n%s", r.code, tail(r.stderr, 4000))
	}
	if r := e.run("verify", "--project-id", "proj-other"); r.code != 2 || !strings.Contains(r.stderr, "records nothing for") {
		t.Errorf("verify against a project this state never synced to: exit %d, want 2\n%s", r.code, r.stderr)
	}
}
