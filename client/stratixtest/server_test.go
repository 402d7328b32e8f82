package stratixtest_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tracesync/tracesync/client"
	"github.com/tracesync/tracesync/client/stratixtest"
)

// These tests speak raw HTTP, as any client written from stratix-api.md
// would, so the server's wire format is checked apart from package client.

type rawClient struct {
	t    *testing.T
	base string
	key  string
	hc   *http.Client
}

func newRaw(t *testing.T, srv *stratixtest.Server) *rawClient {
	return &rawClient{t: t, base: srv.URL(), key: stratixtest.DefaultAPIKey, hc: &http.Client{Timeout: 10 * time.Second}}
}

func (rc *rawClient) traces() string {
	return rc.base + "/organizations/" + stratixtest.DefaultOrgID + "/projects/" + stratixtest.DefaultProjectID + "/traces"
}

// call sends a request and returns the status and the decoded JSON object.
func (rc *rawClient) call(method, u string, body any) (int, map[string]any) {
	rc.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, u, rd)
	req.Header.Set("x-api-key", rc.key)
	resp, err := rc.hc.Do(req)
	if err != nil {
		rc.t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &out); err != nil {
		rc.t.Fatalf("%s %s: body is not a JSON object: %q", method, u, b)
	}
	return resp.StatusCode, out
}

// upload does presign, PUT and create; it returns create's status and body.
func (rc *rawClient) upload(name, contentType, content string) (int, map[string]any) {
	rc.t.Helper()
	st, p := rc.call("POST", rc.traces()+"/upload", map[string]any{"filename": name, "type": contentType, "size": len(content)})
	if st != 200 {
		rc.t.Fatalf("presign %s: %d %v", name, st, p)
	}
	if d, ok := p["data"].(map[string]any); ok && p["status"] != nil {
		p = d // the envelope
	}
	req, _ := http.NewRequest("PUT", p["url"].(string), strings.NewReader(content))
	req.Header.Set("Content-Type", contentType)
	resp, err := rc.hc.Do(req)
	if err != nil {
		rc.t.Fatalf("put %s: %v", name, err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		rc.t.Fatalf("put %s: %d", name, resp.StatusCode)
	}
	return rc.call("POST", rc.traces(), map[string]any{"filename": name})
}

func ids(t *testing.T, body map[string]any) []string {
	t.Helper()
	raw, ok := body["trace_ids"].([]any)
	if !ok {
		t.Fatalf("create answer has no trace_ids list: %v", body)
	}
	var out []string
	for _, v := range raw {
		out = append(out, v.(string))
	}
	return out
}

func TestFileToTraces(t *testing.T) {
	cases := []struct {
		name, ct, content string
		status, traces    int
	}{
		{"a.jsonl", "application/jsonl", "{\"a\":1}\n\n  \n{\"b\":2}\r\n{\"c\":3}", 200, 3},
		{"b.json", "application/json", `  {"a":[1,2,3]}  `, 200, 1},
		{"c.json", "application/json", `[{"a":1},{"b":2},{"c":3},{"d":4}]`, 200, 4},
		{"d.jsonl", "application/jsonl", "{\"a\":1}\nnot json\n", 422, 0},
		{"e.json", "application/json", `{"a":`, 422, 0},
		{"f.json", "application/json", `[{"a":1}, 2]`, 422, 0},
		{"g.json", "application/json", `"just a string"`, 422, 0},
		{"h.jsonl", "application/jsonl", "\n\n", 422, 0},
		{"i.jsonl", "application/jsonl", "[1,2]\n", 422, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := stratixtest.NewServer(stratixtest.Options{})
			defer srv.Close()
			st, body := newRaw(t, srv).upload(tc.name, tc.ct, tc.content)
			if st != tc.status {
				t.Fatalf("create %s: status %d %v, want %d", tc.name, st, body, tc.status)
			}
			if st != 200 {
				if msg, _ := body["error"].(string); !strings.Contains(msg, tc.name) {
					t.Fatalf("422 for %s: error %q does not name the file", tc.name, msg)
				}
			} else if got := len(ids(t, body)); got != tc.traces {
				t.Fatalf("%s: %d trace ids, want %d", tc.name, got, tc.traces)
			}
			if got := len(srv.Traces()); got != tc.traces {
				t.Fatalf("%s: server holds %d traces, want %d", tc.name, got, tc.traces)
			}
		})
	}
}

func TestEnvelopeAndCreateForms(t *testing.T) {
	for _, tc := range []struct {
		name       string
		opts       stratixtest.Options
		wrapped    bool
		idsAsList  bool
		createWrap bool
	}{
		{"bare", stratixtest.Options{}, false, false, false},
		{"envelope", stratixtest.Options{Envelope: true}, true, false, true},
		{"envelope+ids-list", stratixtest.Options{Envelope: true, IDsAsList: true}, true, true, true},
		{"ids-list", stratixtest.Options{IDsAsList: true}, false, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := stratixtest.NewServer(tc.opts)
			defer srv.Close()
			rc := newRaw(t, srv)
			st, org := rc.call("GET", rc.base+"/organizations", nil)
			data, _ := org["data"].(map[string]any)
			if st != 200 || org["status"] != "success" || data["id"] != stratixtest.DefaultOrgID {
				t.Fatalf("organizations is always wrapped: got %d %v", st, org)
			}
			_, created := rc.upload("x.jsonl", "application/jsonl", "{}\n{}\n")
			switch {
			case tc.idsAsList:
				list, ok := created["data"].([]any)
				if !ok || created["status"] != "success" || len(list) != 2 {
					t.Fatalf("ids as list: got %v", created)
				}
			case tc.createWrap:
				inner, _ := created["data"].(map[string]any)
				if created["status"] != "success" || len(ids(t, inner)) != 2 {
					t.Fatalf("wrapped create: got %v", created)
				}
			default:
				if _, has := created["status"]; has || len(ids(t, created)) != 2 {
					t.Fatalf("bare create: got %v", created)
				}
			}
			_, sources := rc.call("GET", rc.traces()+"/sources", nil)
			if _, has := sources["data"]; has != tc.wrapped {
				t.Fatalf("sources wrapped=%v, want %v: %v", has, tc.wrapped, sources)
			}
			st, e := rc.call("GET", rc.traces()+"/nope", nil)
			if st != 404 || e["error"] == nil {
				t.Fatalf("unknown trace: got %d %v, want 404 with error", st, e)
			}
		})
	}
}

func TestAuthAndPaths(t *testing.T) {
	srv := stratixtest.NewServer(stratixtest.Options{APIKey: "right"})
	defer srv.Close()
	rc := newRaw(t, srv)
	rc.key = "wrong"
	if st, _ := rc.call("GET", rc.base+"/organizations", nil); st != 401 {
		t.Fatalf("wrong key: %d, want 401", st)
	}
	srv.SetAPIKey("wrong")
	if st, _ := rc.call("GET", rc.base+"/organizations", nil); st != 200 {
		t.Fatalf("after SetAPIKey: %d, want 200", st)
	}
	if st, _ := rc.call("GET", rc.base+"/organizations/other/projects/"+stratixtest.DefaultProjectID+"/traces", nil); st != 403 {
		t.Fatalf("another organization: %d, want 403", st)
	}
	if st, _ := rc.call("GET", rc.base+"/organizations/"+stratixtest.DefaultOrgID+"/projects/other/traces", nil); st != 404 {
		t.Fatalf("unknown project: %d, want 404", st)
	}
	st, body := rc.call("POST", rc.traces()+"/upload", map[string]any{"filename": "a.txt", "type": "text/plain", "size": 1})
	if st != 400 || body["error"] == nil {
		t.Fatalf("presign text/plain: %d %v, want 400", st, body)
	}
	st, _ = rc.call("POST", rc.traces()+"/upload", map[string]any{"filename": "a.json", "type": "application/json", "size": 50<<20 + 1})
	if st != 413 {
		t.Fatalf("presign over 50 MiB: %d, want 413", st)
	}
	st, _ = rc.call("POST", rc.traces(), map[string]any{"filename": "never.json"})
	if st != 400 {
		t.Fatalf("create without upload: %d, want 400", st)
	}
}

func TestListPagingAndFilters(t *testing.T) {
	clock := struct {
		sync.Mutex
		t time.Time
	}{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	now := func() time.Time { clock.Lock(); defer clock.Unlock(); return clock.t }
	srv := stratixtest.NewServer(stratixtest.Options{Now: now})
	defer srv.Close()
	rc := newRaw(t, srv)

	// Old traces (40 days ago), then recent ones, all in the same instant.
	_, old := rc.upload("old.jsonl", "application/jsonl", "{\"k\":\"alpha\"}\n{\"k\":\"beta\"}\n")
	clock.Lock()
	clock.t = clock.t.AddDate(0, 0, 40)
	clock.Unlock()
	var recent []string
	for i := range 7 {
		_, b := rc.upload(fmt.Sprintf("r%d.json", i%2), "application/json", fmt.Sprintf(`{"k":"gamma-%d"}`, i))
		recent = append(recent, ids(t, b)...)
	}
	all := append(ids(t, old), recent...)

	// created_at: distinct and increasing even though the clock stood still.
	trs := srv.Traces()
	for i := 1; i < len(trs); i++ {
		if !trs[i].CreatedAt.After(trs[i-1].CreatedAt) {
			t.Fatalf("created_at not strictly increasing: %v then %v", trs[i-1].CreatedAt, trs[i].CreatedAt)
		}
	}

	list := func(q string) (int, []string, float64) {
		t.Helper()
		st, body := rc.call("GET", rc.traces()+"?"+q, nil)
		var got []string
		if st == 200 {
			for _, tr := range body["traces"].([]any) {
				m := tr.(map[string]any)
				got = append(got, m["id"].(string))
				if _, ok := m["evaluations_count"]; !ok {
					t.Fatalf("list item without evaluations_count: %v", m)
				}
			}
			if int(body["count"].(float64)) != len(got) {
				t.Fatalf("count %v != %d items", body["count"], len(got))
			}
			return st, got, body["total_count"].(float64)
		}
		return st, nil, 0
	}
	rev := func(s []string) []string {
		out := make([]string, len(s))
		for i, v := range s {
			out[len(s)-1-i] = v
		}
		return out
	}
	cases := []struct {
		q     string
		want  []string
		total int
	}{
		{"page=1&page_size=3&sort_by=created_at&sort_order=asc", all[:3], 9},
		{"page=3&page_size=3&sort_order=asc", all[6:9], 9},
		{"page=4&page_size=3&sort_order=asc", nil, 9},
		{"page=1&page_size=4", rev(all)[:4], 9}, // default: newest first
		{"page=0&page_size=0&sort_order=asc", all[:1], 9},
		{"page_size=100000&sort_order=asc", all, 9},
		{"source=old.jsonl&sort_order=asc", all[:2], 2},
		{"source=upload&sort_order=asc", all, 9},
		{"source=r1.json&sort_order=asc", []string{recent[1], recent[3], recent[5]}, 3},
		{"search=GAMMA-4", []string{recent[4]}, 1},
		{"search=r0.json&sort_order=asc", []string{recent[0], recent[2], recent[4], recent[6]}, 4},
		{"time_range=7d&sort_order=asc", recent, 7},
		{"time_range=30d&source=old.jsonl", nil, 0},
		{"time_range=90d&source=old.jsonl&sort_order=asc", all[:2], 2},
	}
	for _, tc := range cases {
		st, got, total := list(tc.q)
		if st != 200 || fmt.Sprint(got) != fmt.Sprint(tc.want) || int(total) != tc.total {
			t.Errorf("list %s: got %d %v total %v, want %v total %d", tc.q, st, got, total, tc.want, tc.total)
		}
	}
	for _, q := range []string{"sort_by=name", "sort_order=up", "time_range=soon", "page=x"} {
		if st, _, _ := list(q); st != 400 {
			t.Errorf("list %s: status %d, want 400", q, st)
		}
	}

	// judge_id and status filter on evaluations.
	if err := srv.AddEvaluation(recent[0], client.Evaluation{JudgeID: "j1", Passed: true}); err != nil {
		t.Fatal(err)
	}
	if err := srv.AddEvaluation(recent[1], client.Evaluation{JudgeID: "j2", Passed: false}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		q    string
		want []string
	}{
		{"judge_id=j1", []string{recent[0]}},
		{"status=pass", []string{recent[0]}},
		{"status=fail", []string{recent[1]}},
		{"judge_id=j3", nil},
	} {
		if _, got, _ := list(tc.q); fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("list %s: got %v, want %v", tc.q, got, tc.want)
		}
	}

	// Deleted traces leave list, get and sources.
	for _, id := range ids(t, old) {
		if st, _ := rc.call("DELETE", rc.traces()+"/"+url.PathEscape(id), nil); st != 200 {
			t.Fatalf("delete %s: %d", id, st)
		}
	}
	if _, got, _ := list("source=old.jsonl"); got != nil {
		t.Fatalf("deleted traces still listed: %v", got)
	}
	_, src := rc.call("GET", rc.traces()+"/sources", nil)
	if fmt.Sprint(src["sources"]) != "[r0.json r1.json]" {
		t.Fatalf("sources after deleting old.jsonl's traces: %v", src["sources"])
	}
}

func TestInflightPerBasename(t *testing.T) {
	srv := stratixtest.NewServer(stratixtest.Options{})
	defer srv.Close()
	rc := newRaw(t, srv)
	presign := func(name string) {
		if st, _ := rc.call("POST", rc.traces()+"/upload", map[string]any{"filename": name, "type": "application/json", "size": 2}); st != 200 {
			t.Fatalf("presign %s: %d", name, st)
		}
	}
	// Sequential uploads of one name, and overlapping uploads of different names: 1.
	rc.upload("same.json", "application/json", "{}")
	rc.upload("same.json", "application/json", "{}")
	presign("a.json")
	presign("b.json")
	if got := srv.MaxInflightPerBasename(); got != 1 {
		t.Fatalf("no overlap of one basename: MaxInflightPerBasename %d, want 1", got)
	}
	// A failed create closes the upload: presigning again is not an overlap.
	srv.FailNext(stratixtest.EndpointCreate, 1, 503)
	rc.call("POST", rc.traces(), map[string]any{"filename": "a.json"})
	presign("a.json")
	if got := srv.MaxInflightPerBasename(); got != 1 {
		t.Fatalf("presign after a failed create: MaxInflightPerBasename %d, want 1", got)
	}
	// Two presigns of one name before a create: the crossing rule 8 forbids.
	presign("b.json")
	if got := srv.MaxInflightPerBasename(); got != 2 {
		t.Fatalf("two uploads of b.json in flight: MaxInflightPerBasename %d, want 2", got)
	}
}

// A client that dies (its connections close) between presign and create
// has abandoned its upload: its restart presigning the same name is not
// two uploads in flight. A live client's second presign is.
func TestInflightEndsWhenTheClientIsGone(t *testing.T) {
	srv := stratixtest.NewServer(stratixtest.Options{})
	defer srv.Close()
	presign := func(rc *rawClient) {
		t.Helper()
		if st, _ := rc.call("POST", rc.traces()+"/upload", map[string]any{"filename": "k.json", "type": "application/json", "size": 2}); st != 200 {
			t.Fatalf("presign: %d", st)
		}
	}
	killed := newRaw(t, srv)
	killed.hc = &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	presign(killed)
	killed.hc.CloseIdleConnections() // what the kernel does for a killed process
	deadline := time.Now().Add(10 * time.Second)
	for srv.Conns() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("server still counts %d open connections after the client closed its only one", srv.Conns())
		}
		time.Sleep(time.Millisecond)
	}
	restarted := newRaw(t, srv)
	restarted.hc = &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	presign(restarted)
	if got := srv.MaxInflightPerBasename(); got != 1 {
		t.Fatalf("presign after the first client died: MaxInflightPerBasename %d, want 1", got)
	}
	presign(restarted) // the same live client, no create in between
	if got := srv.MaxInflightPerBasename(); got != 2 {
		t.Fatalf("second presign by a live client: MaxInflightPerBasename %d, want 2", got)
	}
}

func TestCreatesByHashAndNonIdempotentCreate(t *testing.T) {
	srv := stratixtest.NewServer(stratixtest.Options{})
	defer srv.Close()
	rc := newRaw(t, srv)
	content := "{\"x\":1}\n"
	rc.upload("a.jsonl", "application/jsonl", content)
	// create again without a new upload: a second set of traces.
	st, _ := rc.call("POST", rc.traces(), map[string]any{"filename": "a.jsonl"})
	if st != 200 {
		t.Fatalf("second create: %d", st)
	}
	sum := sha256.Sum256([]byte(content))
	if n := srv.CreatesByHash()[hex.EncodeToString(sum[:])]; n != 2 {
		t.Fatalf("CreatesByHash: %d, want 2", n)
	}
	// A new upload of the name with other bytes counts under its own hash;
	// the hashes already taken are not taken again wrong.
	other := "{\"x\":2}\n"
	rc.upload("a.jsonl", "application/jsonl", other)
	osum := sha256.Sum256([]byte(other))
	for range 2 {
		got := srv.CreatesByHash()
		if got[hex.EncodeToString(sum[:])] != 2 || got[hex.EncodeToString(osum[:])] != 1 || len(got) != 2 {
			t.Fatalf("CreatesByHash after another upload: %v, want 2 and 1", got)
		}
	}
	if n := srv.CreatesByFilename()["a.jsonl"]; n != 3 || len(srv.Traces()) != 3 {
		t.Fatalf("CreatesByFilename %d, traces %d; want 3 and 3", n, len(srv.Traces()))
	}
	if srv.Calls(stratixtest.EndpointCreate) != 3 || srv.Calls(stratixtest.EndpointPut) != 2 || srv.Calls(stratixtest.EndpointPresign) != 2 {
		t.Fatalf("calls: create %d put %d presign %d", srv.Calls(stratixtest.EndpointCreate), srv.Calls(stratixtest.EndpointPut), srv.Calls(stratixtest.EndpointPresign))
	}
}

// The PUT answers with an ETag, as S3 does: quoted, the same for the same
// bytes and different for others.
func TestPutETag(t *testing.T) {
	srv := stratixtest.NewServer(stratixtest.Options{})
	defer srv.Close()
	rc := newRaw(t, srv)
	put := func(content string) string {
		st, p := rc.call("POST", rc.traces()+"/upload", map[string]any{"filename": "e.jsonl", "type": "application/jsonl", "size": len(content)})
		if st != 200 {
			t.Fatalf("presign: %d %v", st, p)
		}
		req, _ := http.NewRequest("PUT", p["url"].(string), strings.NewReader(content))
		req.Header.Set("Content-Type", "application/jsonl")
		resp, err := rc.hc.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("put: %v %v", resp, err)
		}
		resp.Body.Close()
		return resp.Header.Get("ETag")
	}
	a, b, c := put("{\"x\":1}\n"), put("{\"x\":1}\n"), put("{\"x\":2}\n")
	if len(a) < 3 || a[0] != '"' || a[len(a)-1] != '"' {
		t.Fatalf("ETag %q is not a quoted tag", a)
	}
	if a != b || a == c {
		t.Fatalf("ETags %q, %q (same bytes), %q (other bytes)", a, b, c)
	}
}

func TestDataDirSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	srv, err := stratixtest.Listen("127.0.0.1:0", stratixtest.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	rc := newRaw(t, srv)
	_, b := rc.upload("keep.jsonl", "application/jsonl", "{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n")
	created := ids(t, b)
	rc.call("DELETE", rc.traces()+"/"+created[1], nil)
	before := srv.Traces()
	srv.Close()

	srv2, err := stratixtest.Listen("127.0.0.1:0", stratixtest.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer srv2.Close()
	after := srv2.Traces()
	if len(after) != 2 || len(before) != 2 {
		t.Fatalf("after restart: %d traces (before %d), want 2", len(after), len(before))
	}
	for i := range after {
		if after[i].ID != before[i].ID || !after[i].CreatedAt.Equal(before[i].CreatedAt) || fmt.Sprint(after[i].Data) != fmt.Sprint(before[i].Data) {
			t.Fatalf("trace %d changed across restart: %+v, was %+v", i, after[i], before[i])
		}
	}
	rc2 := newRaw(t, srv2)
	_, b2 := rc2.upload("keep.jsonl", "application/jsonl", "{\"d\":4}\n")
	newID := ids(t, b2)[0]
	all := srv2.Traces()
	if all[len(all)-1].ID != newID || !all[len(all)-1].CreatedAt.After(after[1].CreatedAt) {
		t.Fatalf("new trace after restart is not the newest: %+v", all)
	}
}

func TestHangReleasedByClose(t *testing.T) {
	srv := stratixtest.NewServer(stratixtest.Options{})
	rc := newRaw(t, srv)
	srv.HangNext(stratixtest.EndpointSources, 1)
	errc := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(context.Background(), "GET", rc.traces()+"/sources", nil)
		req.Header.Set("x-api-key", rc.key)
		resp, err := rc.hc.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	deadline := time.Now().Add(30 * time.Second) // a hang guard, not a speed assertion
	for srv.Calls(stratixtest.EndpointSources) == 0 {
		select {
		case err := <-errc:
			t.Fatalf("the request ended before it reached the server: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the request did not reach the server within 30s")
		}
		time.Sleep(time.Millisecond)
	}
	srv.Close() // must not wait for the hanging request's client
	if err := <-errc; err == nil {
		t.Fatalf("hung request got an answer")
	}
}

func TestConcurrentUploadsRaceClean(t *testing.T) {
	srv := stratixtest.NewServer(stratixtest.Options{})
	defer srv.Close()
	c, err := client.New(client.Config{BaseURL: srv.URL(), APIKey: stratixtest.DefaultAPIKey})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				body := fmt.Sprintf("{\"w\":%d,\"i\":%d}\n", w, i)
				if _, err := c.Upload(context.Background(), fmt.Sprintf("w%d-%d.jsonl", w, i), strings.NewReader(body), int64(len(body))); err != nil {
					t.Errorf("upload: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	if n := len(srv.Traces()); n != 80 {
		t.Fatalf("%d traces after 80 concurrent uploads", n)
	}
	if n := srv.MaxInflightPerBasename(); n != 1 {
		t.Fatalf("distinct names: MaxInflightPerBasename %d, want 1", n)
	}
}

// A server given another's seed draws the same fault rates for the same
// calls, so a failed run can be repeated.
func TestFaultSeedRepeatsTheDraws(t *testing.T) {
	outcomes := func(seed uint64) (uint64, string) {
		srv := stratixtest.NewServer(stratixtest.Options{Seed: seed})
		t.Cleanup(srv.Close)
		srv.FailRate(stratixtest.EndpointSources, 0.3, http.StatusServiceUnavailable)
		srv.RateLimitRate(stratixtest.EndpointSources, 0.3, "")
		rc := newRaw(t, srv)
		var got strings.Builder
		for range 64 {
			st, _ := rc.call("GET", rc.traces()+"/sources", nil)
			fmt.Fprintf(&got, "%d ", st)
		}
		return srv.Seed(), got.String()
	}
	seed, first := outcomes(0)
	if seed == 0 {
		t.Fatalf("Options.Seed 0: Seed() is 0, want the seed taken from the clock")
	}
	if !strings.Contains(first, "200") || !strings.Contains(first, "503") || !strings.Contains(first, "429") {
		t.Fatalf("seed %d: 64 calls at fail rate 0.3 and rate limit 0.3 answered %s, want some of each of 200, 503 and 429", seed, first)
	}
	again, second := outcomes(seed)
	if again != seed {
		t.Fatalf("Options.Seed %d: Seed() is %d", seed, again)
	}
	if second != first {
		t.Fatalf("seed %d drew other faults the second time:\nfirst  %s\nsecond %s", seed, first, second)
	}
}

// list's source filter walks only that name's traces: a deleted one is
// gone from it, and other names never show.
func TestListBySourceSkipsDeleted(t *testing.T) {
	srv := stratixtest.NewServer(stratixtest.Options{})
	defer srv.Close()
	rc := newRaw(t, srv)
	var got []string
	for i := range 3 {
		_, b := rc.upload("same.json", "application/json", fmt.Sprintf(`{"i":%d}`, i))
		got = append(got, ids(t, b)...)
		rc.upload("other.json", "application/json", fmt.Sprintf(`{"o":%d}`, i))
	}
	if st, _ := rc.call("DELETE", rc.traces()+"/"+got[1], nil); st != 200 && st != 204 {
		t.Fatalf("delete: HTTP %d", st)
	}
	st, body := rc.call("GET", rc.traces()+"?source=same.json&sort_order=asc", nil)
	if st != 200 {
		t.Fatalf("list: HTTP %d", st)
	}
	var listed []string
	for _, tr := range body["traces"].([]any) {
		listed = append(listed, tr.(map[string]any)["id"].(string))
	}
	if want := []string{got[0], got[2]}; !slices.Equal(listed, want) {
		t.Fatalf("source=same.json after deleting %s: %v, want %v", got[1], listed, want)
	}
}
