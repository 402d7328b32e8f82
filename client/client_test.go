package client_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tracesync/tracesync/client"
	"github.com/tracesync/tracesync/client/stratixtest"
)

const threeLines = `{"trace_id":"a","n":1}
{"trace_id":"b","n":2}

{"trace_id":"c","n":3}
`

// fakeClock is a settable clock shared by a server and a client.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 4, 14, 23, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// start returns a server and a client of it. cfg's BaseURL and APIKey are
// filled in when empty.
func start(t *testing.T, opts stratixtest.Options, cfg client.Config) (*stratixtest.Server, *client.Client) {
	t.Helper()
	srv := stratixtest.NewServer(opts)
	t.Cleanup(srv.Close)
	if cfg.BaseURL == "" {
		cfg.BaseURL = srv.URL()
	}
	if cfg.APIKey == "" {
		cfg.APIKey = stratixtest.DefaultAPIKey
		if opts.APIKey != "" {
			cfg.APIKey = opts.APIKey
		}
	}
	c, err := client.New(cfg)
	if err != nil {
		t.Fatalf("client.New: %v", err)
	}
	return srv, c
}

func upload(t *testing.T, c *client.Client, name, content string) []string {
	t.Helper()
	ids, err := c.Upload(context.Background(), name, strings.NewReader(content), int64(len(content)))
	if err != nil {
		t.Fatalf("upload %s: %v", name, err)
	}
	return ids
}

func TestNewWithoutKeyFailsBeforeAnyRequest(t *testing.T) {
	srv := stratixtest.NewServer(stratixtest.Options{})
	defer srv.Close()
	_, err := client.New(client.Config{BaseURL: srv.URL(), APIKey: "  "})
	if !errors.Is(err, client.ErrNoAPIKey) {
		t.Fatalf("New without key: got %v, want ErrNoAPIKey", err)
	}
	for _, ep := range stratixtest.Endpoints() {
		if n := srv.Calls(ep); n != 0 {
			t.Fatalf("New without key made %d %s calls, want none", n, ep)
		}
	}
}

// TestContractEndpoints runs every endpoint in every answer form.
func TestContractEndpoints(t *testing.T) {
	forms := []struct {
		name string
		opts stratixtest.Options
	}{
		{"bare", stratixtest.Options{}},
		{"envelope", stratixtest.Options{Envelope: true}},
		{"envelope+ids-list", stratixtest.Options{Envelope: true, IDsAsList: true}},
		{"bare+ids-list", stratixtest.Options{IDsAsList: true}},
	}
	for _, form := range forms {
		t.Run(form.name, func(t *testing.T) {
			srv, c := start(t, form.opts, client.Config{})
			ctx := context.Background()

			target, err := c.Discover(ctx)
			if err != nil {
				t.Fatalf("discover: %v", err)
			}
			if target.OrganizationID != stratixtest.DefaultOrgID || target.ProjectID != stratixtest.DefaultProjectID || target.BaseURL != srv.URL() {
				t.Fatalf("discover: got %+v", target)
			}

			ids := upload(t, c, "/some/dir/three.jsonl", threeLines)
			if len(ids) != 3 {
				t.Fatalf("upload of 3 lines: got %d ids %v, want 3", len(ids), ids)
			}
			objIDs := upload(t, c, "one.json", `{"trace_id":"x","input":"hi"}`)
			arrIDs := upload(t, c, "two.json", `[{"a":1},{"b":2}]`)
			if len(objIDs) != 1 || len(arrIDs) != 2 {
				t.Fatalf("json uploads: object gave %d ids, array gave %d; want 1 and 2", len(objIDs), len(arrIDs))
			}

			tr, err := c.Get(ctx, ids[1])
			if err != nil {
				t.Fatalf("get %s: %v", ids[1], err)
			}
			if tr.ID != ids[1] || tr.Filename == nil || *tr.Filename != "three.jsonl" || tr.Data["trace_id"] != "b" ||
				tr.OrganizationID != stratixtest.DefaultOrgID || tr.ProjectID != stratixtest.DefaultProjectID || tr.CreatedAt.IsZero() {
				t.Fatalf("get %s: got %+v", ids[1], tr)
			}

			page, err := c.List(ctx, client.ListOptions{PageSize: 2, SortOrder: "asc"})
			if err != nil {
				t.Fatalf("list: %v", err)
			}
			if len(page.Traces) != 2 || page.Count != 2 || page.TotalCount != 6 || page.Traces[0].ID != ids[0] {
				t.Fatalf("list page 1 of 2 asc: got %d traces, count %d, total %d, first %q; want 2, 2, 6, %q",
					len(page.Traces), page.Count, page.TotalCount, page.Traces[0].ID, ids[0])
			}
			var all []string
			for tr, err := range c.All(ctx, client.ListOptions{PageSize: 4, SortOrder: "asc"}) {
				if err != nil {
					t.Fatalf("all: %v", err)
				}
				all = append(all, tr.ID)
			}
			want := append(append(append([]string{}, ids...), objIDs...), arrIDs...)
			if fmt.Sprint(all) != fmt.Sprint(want) {
				t.Fatalf("all (page size 4, asc): got %v, want %v", all, want)
			}

			src, err := c.Sources(ctx)
			if err != nil {
				t.Fatalf("sources: %v", err)
			}
			if fmt.Sprint(src) != "[one.json three.jsonl two.json]" {
				t.Fatalf("sources: got %v", src)
			}

			if err := c.Delete(ctx, ids[0]); err != nil {
				t.Fatalf("delete %s: %v", ids[0], err)
			}
			err = c.Delete(ctx, ids[0])
			if got := client.Classify(err); got != client.ClassNotFound {
				t.Fatalf("second delete of %s: got %v (class %v), want not-found", ids[0], err, got)
			}
			_, err = c.Get(ctx, ids[0])
			var ae *client.APIError
			if !errors.As(err, &ae) || ae.StatusCode != 404 || client.Classify(err) != client.ClassPermanent {
				t.Fatalf("get deleted %s: got %v, want a permanent 404", ids[0], err)
			}
			if d := srv.Deleted(); len(d) != 1 || d[0] != ids[0] {
				t.Fatalf("server deleted: got %v, want [%s]", d, ids[0])
			}
			if n := srv.Calls(stratixtest.EndpointOrganizations); n != 1 {
				t.Fatalf("discovery: %d GET /organizations, want 1 (cached)", n)
			}
		})
	}
}

func TestDiscovery(t *testing.T) {
	ctx := context.Background()
	projects := []client.Project{{ID: "p1", Name: "first"}, {ID: "p2", Name: "second"}}
	t.Run("first project", func(t *testing.T) {
		_, c := start(t, stratixtest.Options{OrgID: "o1", Projects: projects}, client.Config{})
		tg, err := c.Discover(ctx)
		if err != nil || tg.OrganizationID != "o1" || tg.ProjectID != "p1" {
			t.Fatalf("discover: got %+v, %v; want o1/p1", tg, err)
		}
		if c.Target() != tg {
			t.Fatalf("Target after discover: got %+v, want %+v", c.Target(), tg)
		}
	})
	t.Run("project by name", func(t *testing.T) {
		_, c := start(t, stratixtest.Options{OrgID: "o1", Projects: projects}, client.Config{ProjectName: "second"})
		tg, err := c.Discover(ctx)
		if err != nil || tg.ProjectID != "p2" {
			t.Fatalf("discover by name: got %+v, %v; want p2", tg, err)
		}
	})
	t.Run("unknown project name", func(t *testing.T) {
		_, c := start(t, stratixtest.Options{OrgID: "o1", Projects: projects}, client.Config{ProjectName: "third"})
		_, err := c.Discover(ctx)
		if !errors.Is(err, client.ErrMissingProject) || !strings.Contains(err.Error(), "first, second") {
			t.Fatalf("discover unknown name: got %v, want ErrMissingProject naming the projects", err)
		}
	})
	t.Run("no project", func(t *testing.T) {
		_, c := start(t, stratixtest.Options{Projects: []client.Project{}}, client.Config{})
		_, err := c.Discover(ctx)
		if !errors.Is(err, client.ErrMissingProject) || !strings.Contains(err.Error(), "organization is missing project") {
			t.Fatalf("discover without projects: got %v, want ErrMissingProject", err)
		}
		if client.Classify(err) != client.ClassPermanent {
			t.Fatalf("missing project: class %v, want permanent", client.Classify(err))
		}
	})
	t.Run("pinned ids make no request", func(t *testing.T) {
		srv, c := start(t, stratixtest.Options{}, client.Config{OrganizationID: stratixtest.DefaultOrgID, ProjectID: stratixtest.DefaultProjectID})
		upload(t, c, "a.jsonl", threeLines)
		if n := srv.Calls(stratixtest.EndpointOrganizations); n != 0 {
			t.Fatalf("pinned ids: %d GET /organizations, want 0", n)
		}
	})
	t.Run("pinned project, discovered org", func(t *testing.T) {
		_, c := start(t, stratixtest.Options{OrgID: "o1", Projects: projects}, client.Config{ProjectID: "p2"})
		tg, err := c.Discover(ctx)
		if err != nil || tg.OrganizationID != "o1" || tg.ProjectID != "p2" {
			t.Fatalf("discover with pinned project: got %+v, %v", tg, err)
		}
	})
	t.Run("wrong pinned org", func(t *testing.T) {
		_, c := start(t, stratixtest.Options{OrgID: "o1"}, client.Config{OrganizationID: "o2"})
		if _, err := c.Discover(ctx); err == nil || !strings.Contains(err.Error(), "o1") {
			t.Fatalf("discover with another org pinned: got %v, want an error naming the key's org", err)
		}
	})
	t.Run("error not cached", func(t *testing.T) {
		srv, c := start(t, stratixtest.Options{}, client.Config{})
		srv.FailNext(stratixtest.EndpointOrganizations, 1, 503)
		if _, err := c.Discover(ctx); client.Classify(err) != client.ClassTransient {
			t.Fatalf("discover during 503: got %v, want transient", err)
		}
		if _, err := c.Discover(ctx); err != nil {
			t.Fatalf("discover after 503: %v", err)
		}
	})
}

// op runs one client call of an endpoint against srv, preparing what it
// needs (an upload for create and delete/get, a presigned URL for put).
type opFunc func(t *testing.T, ctx context.Context, srv *stratixtest.Server, c *client.Client) error

var ops = map[stratixtest.Endpoint]opFunc{
	stratixtest.EndpointOrganizations: func(t *testing.T, ctx context.Context, _ *stratixtest.Server, c *client.Client) error {
		_, err := c.Discover(ctx)
		return err
	},
	stratixtest.EndpointPresign: func(t *testing.T, ctx context.Context, _ *stratixtest.Server, c *client.Client) error {
		_, err := c.Presign(ctx, "x.jsonl", "application/jsonl", 10)
		return err
	},
	stratixtest.EndpointPut: func(t *testing.T, ctx context.Context, _ *stratixtest.Server, c *client.Client) error {
		p, err := c.Presign(ctx, "x.jsonl", "application/jsonl", int64(len(threeLines)))
		if err != nil {
			t.Fatalf("presign before put: %v", err)
		}
		_, err = c.Put(ctx, p.URL, "application/jsonl", strings.NewReader(threeLines), int64(len(threeLines)))
		return err
	},
	stratixtest.EndpointCreate: func(t *testing.T, ctx context.Context, _ *stratixtest.Server, c *client.Client) error {
		p, err := c.Presign(ctx, "x.jsonl", "application/jsonl", int64(len(threeLines)))
		if err != nil {
			t.Fatalf("presign before create: %v", err)
		}
		if _, err := c.Put(ctx, p.URL, "application/jsonl", strings.NewReader(threeLines), int64(len(threeLines))); err != nil {
			t.Fatalf("put before create: %v", err)
		}
		_, err = c.Create(ctx, "x.jsonl")
		return err
	},
	stratixtest.EndpointGet: func(t *testing.T, ctx context.Context, srv *stratixtest.Server, c *client.Client) error {
		_, err := c.Get(ctx, "whatever")
		return err
	},
	stratixtest.EndpointList: func(t *testing.T, ctx context.Context, _ *stratixtest.Server, c *client.Client) error {
		_, err := c.List(ctx, client.ListOptions{})
		return err
	},
	stratixtest.EndpointDelete: func(t *testing.T, ctx context.Context, _ *stratixtest.Server, c *client.Client) error {
		return c.Delete(ctx, "whatever")
	},
	stratixtest.EndpointSources: func(t *testing.T, ctx context.Context, _ *stratixtest.Server, c *client.Client) error {
		_, err := c.Sources(ctx)
		return err
	},
}

// TestErrorStatuses checks every status of stratix-api.md's error table on
// every endpoint: the Class, the Op, the message from the body, in both
// answer forms.
func TestErrorStatuses(t *testing.T) {
	// wantClass is the table of stratix-api.md, "Errors".
	wantClass := func(ep stratixtest.Endpoint, status int) client.Class {
		switch status {
		case 401:
			return client.ClassAuth
		case 403:
			if ep == stratixtest.EndpointPut {
				return client.ClassRepresign
			}
			return client.ClassAuth
		case 404:
			if ep == stratixtest.EndpointDelete {
				return client.ClassNotFound
			}
			return client.ClassPermanent
		case 400, 409, 413, 422:
			return client.ClassPermanent
		case 408, 429, 500, 502, 503, 504:
			return client.ClassTransient
		}
		t.Fatalf("status %d is not in the table", status)
		return 0
	}
	statuses := []int{400, 401, 403, 404, 408, 409, 413, 422, 429, 500, 502, 503, 504}
	for _, envelope := range []bool{false, true} {
		for _, ep := range stratixtest.Endpoints() {
			for _, status := range statuses {
				t.Run(fmt.Sprintf("envelope=%v/%s/%d", envelope, ep, status), func(t *testing.T) {
					cfg := client.Config{}
					if ep != stratixtest.EndpointOrganizations {
						cfg.OrganizationID, cfg.ProjectID = stratixtest.DefaultOrgID, stratixtest.DefaultProjectID
					}
					srv, c := start(t, stratixtest.Options{Envelope: envelope}, cfg)
					srv.FailNext(ep, 1, status)
					err := ops[ep](t, context.Background(), srv, c)
					var ae *client.APIError
					if !errors.As(err, &ae) {
						t.Fatalf("%s with injected %d: got %v, want *APIError", ep, status, err)
					}
					if ae.StatusCode != status || ae.Op != string(ep) {
						t.Fatalf("%s with injected %d: got op %q status %d", ep, status, ae.Op, ae.StatusCode)
					}
					if got, want := client.Classify(err), wantClass(ep, status); got != want || ae.Class() != want {
						t.Fatalf("%s %d: class %v, want %v", ep, status, got, want)
					}
					if status != 429 && !strings.Contains(ae.Message, "injected failure") {
						t.Fatalf("%s %d: message %q does not carry the server's message", ep, status, ae.Message)
					}
					if ep == stratixtest.EndpointPut && ae.Code == "" {
						t.Fatalf("put %d: S3 XML code not parsed: %+v", status, ae)
					}
				})
			}
		}
	}
}

func TestRetryAfter(t *testing.T) {
	clock := newFakeClock()
	srv, c := start(t, stratixtest.Options{Now: clock.Now}, client.Config{Now: clock.Now})
	ctx := context.Background()
	cases := []struct {
		header string
		want   time.Duration
	}{
		{"2", 2 * time.Second},
		{"120", 2 * time.Minute},
		{clock.Now().Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{clock.Now().Add(-time.Hour).Format(http.TimeFormat), 0},
		{"", 0},
		{"soon", 0},
	}
	for _, tc := range cases {
		srv.RateLimitNext(stratixtest.EndpointList, 1, tc.header)
		_, err := c.List(ctx, client.ListOptions{})
		if client.Classify(err) != client.ClassTransient {
			t.Fatalf("429 with Retry-After %q: class %v, want transient", tc.header, client.Classify(err))
		}
		if got := client.RetryAfter(err); got != tc.want {
			t.Fatalf("Retry-After %q: got %v, want %v", tc.header, got, tc.want)
		}
		var ae *client.APIError
		if !errors.As(err, &ae) || ae.StatusCode != 429 || ae.Message != "rate limit exceeded" {
			t.Fatalf("429: got %v", err)
		}
	}
	if got := client.RetryAfter(errors.New("x")); got != 0 {
		t.Fatalf("RetryAfter of a plain error: %v, want 0", got)
	}
}

// TestS3Failures drives the presigned PUT's S3 behaviour.
func TestS3Failures(t *testing.T) {
	ctx := context.Background()
	body := threeLines
	size := int64(len(body))

	t.Run("wrong content type", func(t *testing.T) {
		_, c := start(t, stratixtest.Options{}, client.Config{})
		p, err := c.Presign(ctx, "a.jsonl", "application/jsonl", size)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Put(ctx, p.URL, "application/json", strings.NewReader(body), size)
		var ae *client.APIError
		if !errors.As(err, &ae) || ae.StatusCode != 403 || ae.Code != "SignatureDoesNotMatch" || client.Classify(err) != client.ClassRepresign {
			t.Fatalf("put with another content type: got %v, want 403 SignatureDoesNotMatch (represign)", err)
		}
	})
	t.Run("expired by TTL", func(t *testing.T) {
		clock := newFakeClock()
		_, c := start(t, stratixtest.Options{Now: clock.Now, URLTTL: time.Minute}, client.Config{})
		p, err := c.Presign(ctx, "a.jsonl", "application/jsonl", size)
		if err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Minute + time.Second)
		_, err = c.Put(ctx, p.URL, "application/jsonl", strings.NewReader(body), size)
		var ae *client.APIError
		if !errors.As(err, &ae) || ae.StatusCode != 403 || ae.Code != "AccessDenied" || ae.Message != "Request has expired" || client.Classify(err) != client.ClassRepresign {
			t.Fatalf("put after TTL: got %v, want 403 AccessDenied Request has expired (represign)", err)
		}
		// A new presign is the fix.
		p, err = c.Presign(ctx, "a.jsonl", "application/jsonl", size)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Put(ctx, p.URL, "application/jsonl", strings.NewReader(body), size); err != nil {
			t.Fatalf("put after a new presign: %v", err)
		}
	})
	t.Run("ExpireURLs", func(t *testing.T) {
		srv, c := start(t, stratixtest.Options{}, client.Config{})
		p, err := c.Presign(ctx, "a.jsonl", "application/jsonl", size)
		if err != nil {
			t.Fatal(err)
		}
		srv.ExpireURLs()
		_, err = c.Put(ctx, p.URL, "application/jsonl", strings.NewReader(body), size)
		if client.Classify(err) != client.ClassRepresign || !strings.Contains(err.Error(), "Request has expired") {
			t.Fatalf("put after ExpireURLs: got %v", err)
		}
	})
	t.Run("chunked gets 501", func(t *testing.T) {
		_, c := start(t, stratixtest.Options{}, client.Config{})
		p, err := c.Presign(ctx, "a.jsonl", "application/jsonl", size)
		if err != nil {
			t.Fatal(err)
		}
		// What a naive client does: a streamed body of unknown length.
		req, _ := http.NewRequest(http.MethodPut, p.URL, io.MultiReader(strings.NewReader(body)))
		req.Header.Set("Content-Type", "application/jsonl")
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 501 || !bytes.Contains(b, []byte("<Code>NotImplemented</Code>")) {
			t.Fatalf("chunked put: got %d %s, want 501 NotImplemented XML", resp.StatusCode, b)
		}
	})
	t.Run("no content length gets 411", func(t *testing.T) {
		srv, c := start(t, stratixtest.Options{}, client.Config{})
		p, err := c.Presign(ctx, "a.jsonl", "application/jsonl", size)
		if err != nil {
			t.Fatal(err)
		}
		host := strings.TrimPrefix(strings.TrimSuffix(srv.URL(), "/api/v1"), "http://")
		path := strings.TrimPrefix(p.URL, "http://"+host)
		conn, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "PUT %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/jsonl\r\nConnection: close\r\n\r\n", path, host)
		b, _ := io.ReadAll(conn)
		if !bytes.HasPrefix(b, []byte("HTTP/1.1 411")) || !bytes.Contains(b, []byte("<Code>MissingContentLength</Code>")) {
			t.Fatalf("put without Content-Length: got %q, want 411 MissingContentLength", b)
		}
	})
	t.Run("tampered signature", func(t *testing.T) {
		_, c := start(t, stratixtest.Options{}, client.Config{})
		p, err := c.Presign(ctx, "a.jsonl", "application/jsonl", size)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Put(ctx, p.URL[:strings.Index(p.URL, "?")], "application/jsonl", strings.NewReader(body), size)
		var ae *client.APIError
		if !errors.As(err, &ae) || ae.Code != "SignatureDoesNotMatch" {
			t.Fatalf("put without the signature: got %v", err)
		}
		if strings.Contains(err.Error(), "X-Amz-Signature") {
			t.Fatalf("error shows the presigned query: %v", err)
		}
	})
}

// TestPutHashAndSize checks the hash Put returns and its refusal of a body
// of another size than declared (nothing stored).
func TestPutHashAndSize(t *testing.T) {
	ctx := context.Background()
	srv, c := start(t, stratixtest.Options{}, client.Config{})
	presign := func(size int64) string {
		p, err := c.Presign(ctx, "s.jsonl", "application/jsonl", size)
		if err != nil {
			t.Fatal(err)
		}
		return p.URL
	}
	sum, err := c.Put(ctx, presign(int64(len(threeLines))), "application/jsonl", strings.NewReader(threeLines), int64(len(threeLines)))
	if err != nil {
		t.Fatal(err)
	}
	if want := sha256.Sum256([]byte(threeLines)); sum != want {
		t.Fatalf("put hash: got %x, want %x", sum, want)
	}
	if _, err := c.Create(ctx, "s.jsonl"); err != nil {
		t.Fatal(err)
	}
	if n := srv.CreatesByHash()[fmt.Sprintf("%x", sum)]; n != 1 {
		t.Fatalf("server saw %d creates of the hash Put returned, want 1", n)
	}

	// An empty body is sent with Content-Length: 0, not chunked.
	sum, err = c.Put(ctx, presign(0), "application/jsonl", strings.NewReader(""), 0)
	if err != nil || sum != sha256.Sum256(nil) {
		t.Fatalf("put of an empty body: %x, %v", sum, err)
	}
	if _, err := c.Create(ctx, "s.jsonl"); client.Classify(err) != client.ClassPermanent || !strings.Contains(err.Error(), "no traces") {
		t.Fatalf("create of an empty file: got %v, want a permanent 422 'no traces'", err)
	}

	for _, tc := range []struct {
		name string
		body string
		size int64
	}{
		{"short", "{}\n", 10},
		{"long", "{\"a\":1}\n{\"b\":2}\n", 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, c := start(t, stratixtest.Options{}, client.Config{})
			p, err := c.Presign(ctx, "z.jsonl", "application/jsonl", tc.size)
			if err != nil {
				t.Fatal(err)
			}
			sum, err := c.Put(ctx, p.URL, "application/jsonl", strings.NewReader(tc.body), tc.size)
			if !errors.Is(err, client.ErrBodySize) || sum != [32]byte{} {
				t.Fatalf("put %s body (%d bytes declared %d): got %x, %v; want ErrBodySize", tc.name, len(tc.body), tc.size, sum, err)
			}
			if _, err := c.Create(ctx, "z.jsonl"); err == nil {
				t.Fatalf("create after a refused %s put succeeded: the server stored a wrong body", tc.name)
			}
			if n := len(srv.Traces()); n != 0 {
				t.Fatalf("%d traces after a refused put", n)
			}
		})
	}
}

// patternReader yields n deterministic bytes without holding them.
type patternReader struct{ left, i int64 }

func (r *patternReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	for k := range p {
		p[k] = byte((r.i + int64(k)) % 251)
	}
	r.i += int64(len(p))
	r.left -= int64(len(p))
	return len(p), nil
}

// TestPutStreams checks that Put does not hold the body in memory: 32 MiB
// go through with far less allocated, and the hash matches.
func TestPutStreams(t *testing.T) {
	const size = 32 << 20
	var serverSum [32]byte
	var serverLen int64
	var serverTE []string
	discard := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		serverLen, _ = io.Copy(h, r.Body)
		copy(serverSum[:], h.Sum(nil))
		serverTE = r.TransferEncoding
	}))
	defer discard.Close()
	c, err := client.New(client.Config{BaseURL: discard.URL, APIKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	sum, err := c.Put(context.Background(), discard.URL+"/obj", "application/jsonl", &patternReader{left: size}, size)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	io.Copy(h, &patternReader{left: size})
	var want [32]byte
	copy(want[:], h.Sum(nil))
	if sum != want || serverSum != want || serverLen != size {
		t.Fatalf("put 32 MiB: client hash %x, server hash %x (%d bytes), want %x", sum, serverSum, serverLen, want)
	}
	if len(serverTE) != 0 {
		t.Fatalf("put was sent with Transfer-Encoding %v, want Content-Length", serverTE)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8<<20 {
		t.Fatalf("put of 32 MiB allocated %d bytes: the body is not streamed", alloc)
	}
}

// TestTransportFailures: dropped, hung, refused and cancelled calls.
func TestTransportFailures(t *testing.T) {
	ctx := context.Background()
	pinned := client.Config{OrganizationID: stratixtest.DefaultOrgID, ProjectID: stratixtest.DefaultProjectID}
	for _, ep := range []stratixtest.Endpoint{stratixtest.EndpointPut, stratixtest.EndpointCreate, stratixtest.EndpointPresign, stratixtest.EndpointDelete, stratixtest.EndpointList} {
		t.Run("drop/"+string(ep), func(t *testing.T) {
			srv, c := start(t, stratixtest.Options{}, pinned)
			srv.DropNext(ep, 2) // 2: net/http replays a GET dropped on a reused connection once
			err := ops[ep](t, ctx, srv, c)
			var te *client.TransportError
			if !errors.As(err, &te) || client.Classify(err) != client.ClassTransient || te.Op != string(ep) {
				t.Fatalf("dropped %s: got %v (class %v), want a transient TransportError", ep, err, client.Classify(err))
			}
			if ep == stratixtest.EndpointCreate && len(srv.Traces()) != 0 {
				t.Fatalf("dropped create made traces")
			}
		})
		t.Run("hang/"+string(ep), func(t *testing.T) {
			srv, c := start(t, stratixtest.Options{}, pinned)
			srv.HangNext(ep, 1)
			cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			defer cancel()
			err := ops[ep](t, cctx, srv, c)
			if !errors.Is(err, context.DeadlineExceeded) || client.Classify(err) != client.ClassTransient {
				t.Fatalf("hung %s: got %v, want a transient deadline error", ep, err)
			}
		})
	}
	t.Run("Config.Timeout without a context deadline", func(t *testing.T) {
		cfg := pinned
		cfg.Timeout = 100 * time.Millisecond
		srv, c := start(t, stratixtest.Options{}, cfg)
		srv.HangNext(stratixtest.EndpointGet, 1)
		_, err := c.Get(ctx, "x")
		if !errors.Is(err, context.DeadlineExceeded) || client.Classify(err) != client.ClassTransient {
			t.Fatalf("hung get with Timeout 100ms: got %v, want a transient deadline error", err)
		}
	})
	t.Run("canceled", func(t *testing.T) {
		srv, c := start(t, stratixtest.Options{}, pinned)
		srv.HangNext(stratixtest.EndpointList, 1)
		cctx, cancel := context.WithCancel(ctx)
		go func() {
			defer cancel()
			deadline := time.Now().Add(30 * time.Second) // a hang guard, not a speed assertion
			for srv.Calls(stratixtest.EndpointList) == 0 {
				if time.Now().After(deadline) {
					t.Errorf("the list did not reach the server within 30s")
					return
				}
				time.Sleep(time.Millisecond)
			}
		}()
		_, err := c.List(cctx, client.ListOptions{})
		if client.Classify(err) != client.ClassCanceled {
			t.Fatalf("canceled list: got %v (class %v), want canceled", err, client.Classify(err))
		}
	})
	t.Run("refused", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		c, _ := client.New(client.Config{BaseURL: "http://" + addr + "/api/v1", APIKey: "k"})
		_, err = c.Discover(ctx)
		if client.Classify(err) != client.ClassTransient {
			t.Fatalf("connection refused: got %v (class %v), want transient", err, client.Classify(err))
		}
	})
	t.Run("lost create response", func(t *testing.T) {
		srv, c := start(t, stratixtest.Options{}, pinned)
		srv.LoseCreateResponseNext(1)
		_, err := c.Upload(ctx, "lost.jsonl", strings.NewReader(threeLines), int64(len(threeLines)))
		if client.Classify(err) != client.ClassTransient {
			t.Fatalf("lost create answer: got %v, want transient", err)
		}
		if n := srv.CreatesByFilename()["lost.jsonl"]; n != 1 || len(srv.Traces()) != 3 {
			t.Fatalf("lost create answer: server made %d creates, %d traces; want 1 and 3 (the crash window)", n, len(srv.Traces()))
		}
	})
}

func TestClassifyLocalErrors(t *testing.T) {
	cases := []struct {
		err  error
		want client.Class
	}{
		{nil, 0},
		{context.Canceled, client.ClassCanceled},
		{fmt.Errorf("x: %w", context.DeadlineExceeded), client.ClassTransient},
		{io.ErrUnexpectedEOF, client.ClassTransient},
		{&net.DNSError{Err: "no such host", Name: "api.example"}, client.ClassTransient},
		{&net.OpError{Op: "dial", Err: errors.New("connection refused")}, client.ClassTransient},
		{fmt.Errorf("a.txt: %w", client.ErrUnsupportedType), client.ClassPermanent},
		{fmt.Errorf("big: %w", client.ErrTooLarge), client.ClassPermanent},
		{fmt.Errorf("put: %w", client.ErrBodySize), client.ClassPermanent},
		{&client.APIError{Op: "put", StatusCode: 501, Code: "NotImplemented"}, client.ClassPermanent},
		{&client.APIError{Op: "put", StatusCode: 400, Code: "RequestTimeout"}, client.ClassTransient},
		{fmt.Errorf("wrapped: %w", &client.APIError{Op: "create", StatusCode: 503}), client.ClassTransient},
	}
	for _, tc := range cases {
		if got := client.Classify(tc.err); got != tc.want {
			t.Errorf("Classify(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestUploadRefusesBeforeAnyRequest(t *testing.T) {
	srv, c := start(t, stratixtest.Options{}, client.Config{})
	ctx := context.Background()
	if _, err := c.Upload(ctx, "notes.txt", strings.NewReader("{}"), 2); !errors.Is(err, client.ErrUnsupportedType) {
		t.Fatalf("upload .txt: got %v, want ErrUnsupportedType", err)
	}
	if _, err := c.Upload(ctx, "big.jsonl", strings.NewReader(""), client.MaxFileSize+1); !errors.Is(err, client.ErrTooLarge) || client.Classify(err) != client.ClassPermanent {
		t.Fatalf("upload over 50 MiB: got %v, want permanent ErrTooLarge", err)
	}
	for _, ep := range stratixtest.Endpoints() {
		if n := srv.Calls(ep); n != 0 {
			t.Fatalf("refused uploads made %d %s calls", n, ep)
		}
	}
}

// TestUnknownFieldsAndLooseForms serves hand-written answers: extra fields,
// timestamps without a zone, counts left out, and error bodies in the
// forms a Python API uses.
func TestUnknownFieldsAndLooseForms(t *testing.T) {
	answers := map[string]string{
		"GET /api/v1/organizations": `{"status":"success","data":{"id":"o","name":"n","owner_id":"u","plan":"pro",
			"projects":[{"id":"p","name":"x","extra":{"a":1}}]},"request_id":"r"}`,
		"GET /api/v1/organizations/o/projects/p/traces/t1": `{"id":"t1","organization_id":"o","project_id":"p",
			"created_at":"2026-04-14T23:00:00.123456","filename":null,"data":{"k":"v"},"input":"in","integration_id":null,"score":0.5}`,
		"GET /api/v1/organizations/o/projects/p/traces": `{"status":"ok","data":{"traces":[{"id":"t1","created_at":"2026-04-14 23:00:00+00:00",
			"data":{},"evaluations_count":1,"last_evaluations":[{"judge_id":"j","judge_name":"J","judge_version":3,"created_at":"2026-04-15T00:00:00Z","passed":true,"why":"x"}]}],"next":null}}`,
		"GET /api/v1/organizations/o/projects/p/traces/sources": `{"sources":["a.json"],"more":true}`,
		"POST /api/v1/organizations/o/projects/p/traces":        `{"trace_ids":["t9"],"took_ms":3}`,
		"DELETE /api/v1/organizations/o/projects/p/traces/bad":  `{"detail":[{"loc":["path","id"],"msg":"bad id"}]}`,
		"GET /api/v1/organizations/o/projects/p/traces/gone":    `{"status":"error","data":{"message":"trace gone"}}`,
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Method + " " + r.URL.Path
		body, ok := answers[key]
		switch {
		case !ok:
			w.WriteHeader(500)
		case strings.HasSuffix(key, "/bad"):
			w.WriteHeader(422)
		case strings.HasSuffix(key, "/gone"):
			w.WriteHeader(404)
		}
		io.WriteString(w, body)
	}))
	defer srv.Close()
	ctx := context.Background()
	c, _ := client.New(client.Config{BaseURL: srv.URL + "/api/v1", APIKey: "k"})
	if tg, err := c.Discover(ctx); err != nil || tg.ProjectID != "p" {
		t.Fatalf("discover with extra fields: %+v, %v", tg, err)
	}
	tr, err := c.Get(ctx, "t1")
	if err != nil {
		t.Fatalf("get with extra fields and a zoneless time: %v", err)
	}
	if want := time.Date(2026, 4, 14, 23, 0, 0, 123456000, time.UTC); !tr.CreatedAt.Equal(want) || tr.Filename != nil || *tr.Input != "in" {
		t.Fatalf("get: got %+v", tr)
	}
	res, err := c.List(ctx, client.ListOptions{})
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	if res.Count != 1 || res.TotalCount != 1 || res.Traces[0].EvaluationsCount != 1 || !res.Traces[0].LastEvaluations[0].Passed {
		t.Fatalf("list without counts: got %+v", res)
	}
	if src, err := c.Sources(ctx); err != nil || len(src) != 1 {
		t.Fatalf("sources: %v, %v", src, err)
	}
	if ids, err := c.Create(ctx, "a.json"); err != nil || len(ids) != 1 {
		t.Fatalf("create: %v, %v", ids, err)
	}
	err = c.Delete(ctx, "bad")
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Message != "bad id" || ae.StatusCode != 422 {
		t.Fatalf("422 with FastAPI detail: got %v", err)
	}
	_, err = c.Get(ctx, "gone")
	if !errors.As(err, &ae) || ae.Message != "trace gone" {
		t.Fatalf("404 with enveloped message: got %v", err)
	}
}

// TestKeyNeverInErrors makes every operation fail against a server that
// echoes the key back, and over a refused connection.
func TestKeyNeverInErrors(t *testing.T) {
	const key = "sk-very-secret-key-123"
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.Method == http.MethodPut {
			w.WriteHeader(403)
			fmt.Fprintf(w, "<Error><Code>%s</Code><Message>bad key %s</Message></Error>", key, key)
			return
		}
		w.WriteHeader(401)
		fmt.Fprintf(w, `{"error":"invalid API key %s"}`, r.Header.Get("x-api-key"))
	}))
	defer echo.Close()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	refused := "http://" + ln.Addr().String() + "/api/v1"
	ln.Close()
	ctx := context.Background()
	for _, base := range []string{echo.URL + "/api/v1", refused} {
		for _, pinned := range []bool{false, true} {
			cfg := client.Config{BaseURL: base, APIKey: key}
			if pinned {
				cfg.OrganizationID, cfg.ProjectID = "o", "p"
			}
			c, err := client.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			var errs []error
			if !pinned { // pinned IDs: Discover makes no request
				_, err = c.Discover(ctx)
				errs = append(errs, err)
			}
			_, err = c.Presign(ctx, "a.json", "application/json", 2)
			errs = append(errs, err)
			_, err = c.Put(ctx, strings.TrimSuffix(base, "/api/v1")+"/s3/x?sig="+key, "application/json", strings.NewReader("{}"), 2)
			errs = append(errs, err)
			_, err = c.Create(ctx, "a.json")
			errs = append(errs, err)
			_, err = c.Upload(ctx, "a.json", strings.NewReader("{}"), 2)
			errs = append(errs, err)
			_, err = c.Get(ctx, "t")
			errs = append(errs, err)
			_, err = c.List(ctx, client.ListOptions{})
			errs = append(errs, err)
			errs = append(errs, c.Delete(ctx, "t"))
			_, err = c.Sources(ctx)
			errs = append(errs, err)
			for i, err := range errs {
				if err == nil {
					t.Fatalf("call %d against %s succeeded", i, base)
				}
				for _, s := range []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err)} {
					if strings.Contains(s, key) {
						t.Fatalf("call %d: the API key appears in the error: %s", i, s)
					}
				}
			}
		}
	}
}

func TestListQuery(t *testing.T) {
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.URL.RawQuery)
		io.WriteString(w, `{"traces":[]}`)
	}))
	defer srv.Close()
	c, _ := client.New(client.Config{BaseURL: srv.URL, APIKey: "k", OrganizationID: "o", ProjectID: "p"})
	ctx := context.Background()
	for _, o := range []client.ListOptions{
		{},
		{Page: 3, PageSize: 900, Source: "upload", JudgeID: "j", Status: "pass", TimeRange: "7d", Search: "a b", SortBy: "created_at", SortOrder: "desc"},
		{PageSize: -4},
	} {
		if _, err := c.List(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{
		"page=1&page_size=100",
		"judge_id=j&page=3&page_size=500&search=a+b&sort_by=created_at&sort_order=desc&source=upload&status=pass&time_range=7d",
		"page=1&page_size=1",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("list queries:\n got %v\nwant %v", got, want)
	}
}

// countingConn counts the writes made on a connection.
type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// A small file's PUT leaves in one write, headers and body together (the
// server then reads it at once); a large one still streams, and both send
// the declared bytes.
func TestPutSmallBodyOneWrite(t *testing.T) {
	var writes atomic.Int64
	tr := client.NewPutTransport()
	dial := tr.DialContext
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return countingConn{Conn: conn, writes: &writes}, nil
	}
	srv, c := start(t, stratixtest.Options{}, client.Config{HTTPClient: &http.Client{Transport: tr}})
	ctx := context.Background()
	for _, size := range []int{1, 4 << 10, 7 << 10, 16 << 10, 16<<10 + 1, 1 << 20} {
		body := strings.Repeat("x", size-1) + "\n"
		body = "{" + body[1:]
		p, err := c.Presign(ctx, "w.jsonl", "application/jsonl", int64(size))
		if err != nil {
			t.Fatal(err)
		}
		before := writes.Load()
		sum, err := c.Put(ctx, p.URL, "application/jsonl", strings.NewReader(body), int64(size))
		if err != nil {
			t.Fatalf("put of %d bytes: %v", size, err)
		}
		if sum != sha256.Sum256([]byte(body)) {
			t.Fatalf("put of %d bytes: hash %x", size, sum)
		}
		n := writes.Load() - before
		if size <= 7<<10 && n != 1 {
			t.Errorf("put of %d bytes took %d writes, want 1", size, n)
		}
		if size > 7<<10 && size <= 16<<10 && n != 2 {
			t.Errorf("put of %d bytes took %d writes, want 2 (headers with the body's first 8 KiB, then the rest)", size, n)
		}
		if size > 16<<10 && n < 2 {
			t.Errorf("put of %d bytes took %d write: not streamed", size, n)
		}
	}
	if got := srv.Calls(stratixtest.EndpointPut); got != 6 {
		t.Fatalf("server saw %d PUTs, want 6", got)
	}
}
