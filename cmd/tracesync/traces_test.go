package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tracesync/tracesync/client"
	"github.com/tracesync/tracesync/client/stratixtest"
)

// tracesRun runs the tracesync command line in-process with env as the
// whole environment, and returns the exit code, stdout and stderr.
func tracesRun(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := Main(context.Background(), args, strings.NewReader(""), &stdout, &stderr, func(k string) string { return env[k] })
	return code, stdout.String(), stderr.String()
}

func tracesServer(t *testing.T, opts stratixtest.Options) (*stratixtest.Server, map[string]string) {
	t.Helper()
	srv := stratixtest.NewServer(opts)
	t.Cleanup(srv.Close)
	key := opts.APIKey
	if key == "" {
		key = stratixtest.DefaultAPIKey
	}
	return srv, map[string]string{"LAYERLENS_STRATIX_BASE_URL": srv.URL(), "LAYERLENS_STRATIX_API_KEY": key, "HOME": t.TempDir()}
}

func tracesWrite(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTracesCommands(t *testing.T) {
	srv, env := tracesServer(t, stratixtest.Options{Envelope: true})
	dir := t.TempDir()
	a := tracesWrite(t, dir, "a.jsonl", "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n")
	b := tracesWrite(t, dir, "b.json", `{"question":"why"}`)

	code, out, errOut := tracesRun(t, env, "traces", "upload", a, b)
	if code != 0 {
		t.Fatalf("traces upload: exit %d, stderr %s", code, errOut)
	}
	traces := srv.Traces()
	if len(traces) != 4 {
		t.Fatalf("traces upload: server holds %d traces, want 4", len(traces))
	}
	if !strings.Contains(out, a+": 3 traces: "+traces[0].ID) || !strings.Contains(out, b+": 1 trace: "+traces[3].ID) {
		t.Fatalf("traces upload output does not give each file's trace ids:\n%s", out)
	}

	// list: a table, newest first, with a footer.
	code, out, errOut = tracesRun(t, env, "traces", "list", "--page-size", "3")
	if code != 0 {
		t.Fatalf("traces list: exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "ID") || !strings.HasPrefix(lines[1], traces[3].ID) || !strings.Contains(lines[1], "b.json") {
		t.Fatalf("traces list --page-size 3: want a header, 3 rows newest first and a footer; got:\n%s", out)
	}
	if !strings.Contains(lines[4], "3 of 4") || !strings.Contains(lines[4], "--page 2") {
		t.Fatalf("traces list footer: %q", lines[4])
	}

	// list --json: the page object; --all --json: every trace.
	code, out, _ = tracesRun(t, env, "traces", "list", "--json", "--source", "a.jsonl", "--sort-order", "asc")
	var page client.ListResult
	if code != 0 || json.Unmarshal([]byte(out), &page) != nil || page.TotalCount != 3 || page.Traces[0].ID != traces[0].ID {
		t.Fatalf("traces list --json --source a.jsonl: exit %d, %+v from %s", code, page, out)
	}
	code, out, _ = tracesRun(t, env, "traces", "list", "--all", "--json", "--page-size", "1", "--sort-order", "asc")
	var all []client.TraceWithEvaluations
	if code != 0 || json.Unmarshal([]byte(out), &all) != nil || len(all) != 4 || all[3].ID != traces[3].ID {
		t.Fatalf("traces list --all --json --page-size 1: exit %d, %d traces from %s", code, len(all), out)
	}

	// get: human and JSON.
	code, out, _ = tracesRun(t, env, "traces", "get", traces[3].ID)
	if code != 0 || !strings.Contains(out, "filename:      b.json") || !strings.Contains(out, `"question": "why"`) {
		t.Fatalf("traces get: exit %d:\n%s", code, out)
	}
	code, out, _ = tracesRun(t, env, "traces", "get", "--json", traces[0].ID)
	var tr client.Trace
	if code != 0 || json.Unmarshal([]byte(out), &tr) != nil || tr.ID != traces[0].ID || tr.Data["n"] != float64(1) {
		t.Fatalf("traces get --json: exit %d: %s", code, out)
	}
	if code, _, errOut = tracesRun(t, env, "traces", "get", "nope"); code != 1 || !strings.Contains(errOut, "trace nope not found") {
		t.Fatalf("traces get of an unknown id: exit %d, stderr %q; want 1 and a not-found message", code, errOut)
	}

	// sources.
	code, out, _ = tracesRun(t, env, "traces", "sources")
	if code != 0 || out != "a.jsonl\nb.json\n" {
		t.Fatalf("traces sources: exit %d, %q", code, out)
	}

	// delete: gone, and already gone, both succeed.
	code, out, errOut = tracesRun(t, env, "traces", "delete", traces[0].ID, traces[1].ID)
	if code != 0 || strings.Count(out, "deleted ") != 2 {
		t.Fatalf("traces delete: exit %d, %q %q", code, out, errOut)
	}
	code, out, _ = tracesRun(t, env, "traces", "delete", traces[0].ID)
	if code != 0 || !strings.Contains(out, "already gone") {
		t.Fatalf("traces delete of a deleted trace: exit %d, %q; want 0 and 'already gone'", code, out)
	}
	if n := len(srv.Traces()); n != 2 {
		t.Fatalf("after deleting 2 of 4: %d traces left", n)
	}
}

func TestTracesUploadJSON(t *testing.T) {
	srv, env := tracesServer(t, stratixtest.Options{IDsAsList: true, Envelope: true})
	dir := t.TempDir()
	good := tracesWrite(t, dir, "good.jsonl", "{\"n\":1}\n")
	broken := tracesWrite(t, dir, "broken.json", `{"n":`)
	code, out, _ := tracesRun(t, env, "traces", "upload", "--json", good, broken)
	var res []tracesUploadResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("traces upload --json: not JSON: %v\n%s", err, out)
	}
	if code != 1 {
		t.Fatalf("traces upload with a file the server rejects: exit %d, want 1", code)
	}
	if len(res) != 2 || len(res[0].TraceIDs) != 1 || res[0].Filename != "good.jsonl" || res[1].Error == "" || !strings.Contains(res[1].Error, "422") {
		t.Fatalf("traces upload --json results: %+v", res)
	}
	if n := len(srv.Traces()); n != 1 {
		t.Fatalf("server holds %d traces, want 1", n)
	}
}

func TestTracesUploadRefusesBeforeAnyRequest(t *testing.T) {
	srv, env := tracesServer(t, stratixtest.Options{})
	dir := t.TempDir()
	ok := tracesWrite(t, dir, "ok.jsonl", "{}\n")
	txt := tracesWrite(t, dir, "notes.txt", "{}\n")
	big := filepath.Join(dir, "big.jsonl")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(client.MaxFileSize + 1); err != nil { // sparse: no disk used
		t.Fatal(err)
	}
	f.Close()
	for _, args := range [][]string{{ok, txt}, {big}, {filepath.Join(dir, "missing.json")}} {
		code, _, errOut := tracesRun(t, env, append([]string{"traces", "upload"}, args...)...)
		if code != 2 {
			t.Fatalf("traces upload %v: exit %d, want 2 (usage); stderr %s", args, code, errOut)
		}
		if !strings.Contains(errOut, "nothing uploaded") {
			t.Fatalf("traces upload %v: stderr %q does not say nothing was uploaded", args, errOut)
		}
	}
	for _, ep := range stratixtest.Endpoints() {
		if n := srv.Calls(ep); n != 0 {
			t.Fatalf("refused uploads made %d %s calls, want none", n, ep)
		}
	}
}

func TestTracesRejectedKeySaysWhereItCameFrom(t *testing.T) {
	srv, env := tracesServer(t, stratixtest.Options{APIKey: "the-right-key"})
	env["LAYERLENS_STRATIX_API_KEY"] = "sk-wrong-key-4711"
	code, out, errOut := tracesRun(t, env, "traces", "sources")
	if code != exitUsage || out != "" {
		t.Fatalf("rejected key: exit %d stdout %q, want 2 (a configuration error) and nothing", code, out)
	}
	if !strings.Contains(errOut, "rejected") || !strings.Contains(errOut, "environment variable LAYERLENS_STRATIX_API_KEY") || !strings.Contains(errOut, "401") {
		t.Fatalf("rejected key: stderr %q should say the key was rejected and where it was read from", errOut)
	}
	if strings.Contains(errOut, "sk-wrong-key-4711") {
		t.Fatalf("the API key appears in the output: %s", errOut)
	}

	keyFile := tracesWrite(t, t.TempDir(), "api-key", "sk-wrong-key-4711\n")
	delete(env, "LAYERLENS_STRATIX_API_KEY")
	code, _, errOut = tracesRun(t, env, "--api-key-file", keyFile, "traces", "list")
	if code != exitUsage || !strings.Contains(errOut, "file "+keyFile) || strings.Contains(errOut, "sk-wrong-key-4711") {
		t.Fatalf("rejected key from a file: exit %d, stderr %q; want 2 naming the file, not the key", code, errOut)
	}

	srv.SetAPIKey("sk-wrong-key-4711")
	if code, _, errOut = tracesRun(t, env, "--api-key-file", keyFile, "traces", "list"); code != 0 {
		t.Fatalf("after the server accepts the key: exit %d: %s", code, errOut)
	}
}

func TestTracesExitCodes(t *testing.T) {
	srv, env := tracesServer(t, stratixtest.Options{})
	noKey := map[string]string{"LAYERLENS_STRATIX_BASE_URL": env["LAYERLENS_STRATIX_BASE_URL"], "HOME": env["HOME"]}
	cases := []struct {
		name string
		env  map[string]string
		args []string
		want int
	}{
		{"list ok", env, []string{"traces", "list"}, 0},
		{"bad page size", env, []string{"traces", "list", "--page-size", "0"}, 2},
		{"bad sort order", env, []string{"traces", "list", "--sort-order", "up"}, 2},
		{"get without id", env, []string{"traces", "get"}, 2},
		{"delete without id", env, []string{"traces", "delete"}, 2},
		{"unknown flag", env, []string{"traces", "list", "--nope"}, 2},
		{"no key", noKey, []string{"traces", "list"}, 2},
		{"unknown project name", env, []string{"--project", "nope", "traces", "list"}, 2},
	}
	for _, tc := range cases {
		if code, _, errOut := tracesRun(t, tc.env, tc.args...); code != tc.want {
			t.Errorf("%s (%v): exit %d, want %d; stderr %s", tc.name, tc.args, code, tc.want, errOut)
		}
	}
	srv.FailNext(stratixtest.EndpointList, 1, 500)
	if code, _, errOut := tracesRun(t, env, "traces", "list"); code != 1 || !strings.Contains(errOut, "500") {
		t.Fatalf("list during a 500: exit %d, stderr %q; want 1 with the status", code, errOut)
	}
	srv.Close()
	if code, _, errOut := tracesRun(t, env, "traces", "sources"); code != 1 || !strings.Contains(errOut, "cannot reach the Stratix API") {
		t.Fatalf("API down: exit %d, stderr %q; want 1 and 'cannot reach'", code, errOut)
	}
}

func TestTracesUploadSampleFile(t *testing.T) {
	sample, _ := filepath.Abs("../../../shared/testdata/traces/batch_traces.jsonl")
	if _, err := os.Stat(sample); err != nil {
		t.Skipf("sample traces not beside the checkout: %v", err)
	}
	srv, env := tracesServer(t, stratixtest.Options{Envelope: true})
	code, out, errOut := tracesRun(t, env, "traces", "upload", sample)
	if code != 0 || !strings.Contains(out, "batch_traces.jsonl: 50 traces") {
		t.Fatalf("upload batch_traces.jsonl: exit %d, %q %q", code, out, errOut)
	}
	if n := srv.CreatesByFilename()["batch_traces.jsonl"]; n != 1 {
		t.Fatalf("creates of batch_traces.jsonl: %d, want 1", n)
	}
}
