// Package stratixtest is a faithful in-process Stratix traces API, the way
// net/http/httptest is a web server for tests: every endpoint of
// shared/stratix-api.md on a real HTTP listener, the S3 behaviour of the
// presigned PUT (501 for chunked bodies, 411 without Content-Length, 403
// SignatureDoesNotMatch for another Content-Type, 403 AccessDenied "Request
// has expired" after the URL's TTL, XML error bodies), fault injection a test
// can drive, and inspection of what was created.
//
// It implements the wire protocol itself and does not reuse the client's
// decoding, so the client cannot hide its own mistakes behind it; only the
// plain types of package client appear in its inspection API. It is safe for
// concurrent use. cmd/stratix-fake serves it on a real port.
package stratixtest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	mathrand "math/rand/v2"
	"net"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/tracesync/tracesync/client"
)

// Defaults of Options.
const (
	DefaultAPIKey    = "test-key"
	DefaultOrgID     = "org-test"
	DefaultProjectID = "proj-test"
	DefaultURLTTL    = 15 * time.Minute
)

// Endpoint names one call of the API, for fault injection and counters. The
// names are the Op names of client.APIError.
type Endpoint string

// The endpoints of stratix-api.md.
const (
	EndpointOrganizations Endpoint = "organizations"
	EndpointPresign       Endpoint = "presign"
	EndpointPut           Endpoint = "put"
	EndpointCreate        Endpoint = "create"
	EndpointGet           Endpoint = "get"
	EndpointList          Endpoint = "list"
	EndpointDelete        Endpoint = "delete"
	EndpointSources       Endpoint = "sources"
)

var endpoints = [...]Endpoint{EndpointOrganizations, EndpointPresign, EndpointPut, EndpointCreate, EndpointGet, EndpointList, EndpointDelete, EndpointSources}

const numEndpoints = len(endpoints)

// Endpoints returns every endpoint, e.g. to inject a fault rate into all.
func Endpoints() []Endpoint { return append([]Endpoint(nil), endpoints[:]...) }

func (ep Endpoint) index() int {
	for i, e := range endpoints {
		if e == ep {
			return i
		}
	}
	panic(fmt.Sprintf("stratixtest: unknown endpoint %q", string(ep)))
}

// Options configure a Server. Every zero value is usable.
type Options struct {
	// APIKey is the key every API call must send in x-api-key. "": DefaultAPIKey.
	APIKey string
	// Envelope wraps every answer as {"status": "success", "data": ...}.
	// False: bare objects (GET /organizations is always wrapped, as the SDK requires).
	Envelope bool
	// IDsAsList makes create answer {"status": "success", "data": [ids...]},
	// the SDK's list form, which exists only inside the envelope: it wraps
	// create answers even when Envelope is false. False: {"trace_ids": [...]}.
	IDsAsList bool
	// URLTTL is how long a presigned URL is good for. 0: DefaultURLTTL.
	URLTTL time.Duration
	// Now is the server's clock (created_at, URL expiry, time_range). Nil: time.Now.
	Now func() time.Time
	// OrgID and ProjectID name the organization and its first project.
	// "": DefaultOrgID, DefaultProjectID.
	OrgID, ProjectID string
	// OrgName names the organization. "": "Test organization".
	OrgName string
	// Projects, when non-nil, replaces the organization's project list
	// (ProjectID is then ignored unless listed). An empty non-nil list
	// gives an organization without projects (discovery must fail).
	Projects []client.Project
	// DataDir, when set, keeps the traces in DataDir/traces.jsonl (an
	// append-only log, flushed at least every 200 ms and on Close) so they
	// survive a restart. Uploaded objects not yet created are not kept.
	DataDir string
	// Logger, when set, gets one debug line per request and info lines for
	// start and stop. Nil: no logs.
	Logger *zerolog.Logger
	// Seed seeds the draws of FailRate and RateLimitRate: a server given
	// the seed another used draws the same faults for the same sequence
	// of calls. 0: a seed from the clock (Server.Seed tells which).
	Seed uint64
}

// Server is a running (or, from New, not yet listening) fake API.
type Server struct {
	opts     Options
	now      func() time.Time
	ttl      time.Duration
	org      orgInfo
	apiKey   atomic.Pointer[string]
	log      zerolog.Logger
	debugLog bool
	handler  http.Handler
	idPrefix string

	calls     [numEndpoints]atomic.Int64
	answered  [numEndpoints]atomic.Int64 // calls answered with an injected status (FailRate, RateLimitRate, ...)
	limited   [numEndpoints]atomic.Int64 // of those, the 429s
	openConns atomic.Int64               // client connections open now (listening servers only)

	faultMu   sync.Mutex // guards faults and faultRand
	faults    [numEndpoints]endpointFaults
	faultRand *mathrand.Rand // the draws of fault rates, from seed
	seed      uint64

	mu       sync.Mutex // guards everything below
	traces   []*trace   // by created_at, ascending; deleted ones are removed lazily
	nDeleted int        // deleted entries still in traces
	byID     traceIndex
	sources  map[sourceKey]int // live traces per project and filename
	// named holds each project's and filename's traces, oldest first, for
	// list's source filter; deleted ones go when s.traces is compacted.
	named             map[sourceKey][]*trace
	tokens            map[string]*presignedURL
	inflight          map[string][]*presignedURL // open uploads per basename: presigned, not yet created
	objects           map[objectKey]*object
	createsByFilename map[string]int
	// created holds the object of every successful create, once per
	// create. Its SHA-256 is taken only when CreatesByHash asks: hashing
	// every PUT cost the benchmark CPU it shares with tracesync. The bytes
	// are kept by the traces made from them anyway.
	created     []*object
	maxInflight int
	deleted     []string
	lastCreated time.Time
	seq         uint64
	presigns    uint64
	persist     *persistLog

	done      chan struct{} // closed by Close: releases hanging requests
	closeOnce sync.Once

	// Set when listening.
	httpSrv   *http.Server
	url       string
	serveDone chan struct{}
}

type orgInfo struct {
	id, name string
	projects []client.Project
}

type sourceKey struct{ project, filename string }
type objectKey struct{ project, filename string }

// trace is one stored trace. Fields are immutable after creation, except
// deleted and evaluations (under Server.mu).
type trace struct {
	id          string
	project     string
	createdAt   time.Time
	filename    string
	data        []byte // the raw JSON object
	deleted     bool
	evaluations []evaluation
}

type evaluation struct {
	judgeID, judgeName string
	judgeVersion       any
	createdAt          time.Time
	passed             bool
}

// presignedURL is one URL handed out by presign.
type presignedURL struct {
	token       string
	signature   string
	project     string
	filename    string
	contentType string
	expires     time.Time
	open        bool // counted in inflight
	stored      bool // a PUT to it succeeded
	// conn is the connection the upload last used (presign, then PUT); once
	// it is closed the client is gone (e.g. killed) and the upload abandoned.
	// Nil when the server does not own its connections (Handler alone).
	conn *connInfo
}

// connInfo tracks one client connection of a listening server.
type connInfo struct{ closed atomic.Bool }

type connInfoKey struct{}

// connOf returns the request's connection info, or nil.
func connOf(r *http.Request) *connInfo {
	ci, _ := r.Context().Value(connInfoKey{}).(*connInfo)
	return ci
}

// abandoned reports whether the client of an upload is gone.
func (u *presignedURL) abandoned() bool { return u.conn != nil && u.conn.closed.Load() }

// object is the last bytes PUT for a basename.
type object struct {
	data        []byte
	etag        string
	contentType string
	sha256      string // hex SHA-256 of data, computed when CreatesByHash first needs it
}

// New builds a server that is not listening yet: serve Handler() yourself,
// or use NewServer / Listen. It fails only when DataDir cannot be read.
func New(opts Options) (*Server, error) {
	s := &Server{
		opts:              opts,
		now:               opts.Now,
		ttl:               opts.URLTTL,
		sources:           make(map[sourceKey]int),
		named:             make(map[sourceKey][]*trace),
		tokens:            make(map[string]*presignedURL),
		inflight:          make(map[string][]*presignedURL),
		objects:           make(map[objectKey]*object),
		createsByFilename: make(map[string]int),
		done:              make(chan struct{}),
		log:               zerolog.Nop(),
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.ttl <= 0 {
		s.ttl = DefaultURLTTL
	}
	s.seed, s.faultRand = faultSource(opts.Seed)
	key := opts.APIKey
	if key == "" {
		key = DefaultAPIKey
	}
	s.apiKey.Store(&key)
	if opts.Logger != nil {
		s.log = *opts.Logger
		s.debugLog = s.log.GetLevel() <= zerolog.DebugLevel
	}
	s.org = orgInfo{id: opts.OrgID, name: opts.OrgName}
	if s.org.id == "" {
		s.org.id = DefaultOrgID
	}
	if s.org.name == "" {
		s.org.name = "Test organization"
	}
	if opts.Projects != nil {
		s.org.projects = append([]client.Project{}, opts.Projects...)
	} else {
		pid := opts.ProjectID
		if pid == "" {
			pid = DefaultProjectID
		}
		s.org.projects = []client.Project{{ID: pid, Name: "default"}}
	}
	var rnd [4]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, fmt.Errorf("stratixtest: random: %w", err)
	}
	s.idPrefix = "tr_" + hex.EncodeToString(rnd[:]) + "_"
	s.byID = newTraceIndex(s.idPrefix)
	if opts.DataDir != "" {
		if err := s.openPersist(opts.DataDir); err != nil {
			return nil, err
		}
	}
	s.handler = s.routes()
	return s, nil
}

// NewServer starts a server on 127.0.0.1 at a free port, like
// httptest.NewServer. It panics if it cannot (as httptest does); use Listen
// for an error instead. Close it when done (t.Cleanup(s.Close)).
func NewServer(opts Options) *Server {
	s, err := Listen("127.0.0.1:0", opts)
	if err != nil {
		panic(err)
	}
	return s
}

// Listen starts a server on addr (e.g. "127.0.0.1:0", or ":8080") and serves
// it in the background until Close. This is how cmd/stratix-fake and the
// demo run it.
func Listen(addr string, opts Options) (*Server, error) {
	s, err := New(opts)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		s.closePersist()
		return nil, fmt.Errorf("stratixtest: listen on %s: %w", addr, err)
	}
	s.serve(ln)
	return s, nil
}

func (s *Server) serve(ln net.Listener) {
	s.url = "http://" + ln.Addr().String() + "/api/v1"
	var conns sync.Map // net.Conn → *connInfo, while open
	s.httpSrv = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          log.New(io.Discard, "", 0),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			ci := &connInfo{}
			conns.Store(c, ci)
			s.openConns.Add(1)
			return context.WithValue(ctx, connInfoKey{}, ci)
		},
		ConnState: func(c net.Conn, st http.ConnState) {
			if st == http.StateClosed || st == http.StateHijacked {
				if ci, ok := conns.LoadAndDelete(c); ok {
					ci.(*connInfo).closed.Store(true)
					s.openConns.Add(-1)
				}
			}
		},
	}
	s.serveDone = make(chan struct{})
	go func() {
		defer close(s.serveDone)
		if err := s.httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error().Err(err).Msg("stratixtest: serve")
		}
	}()
	s.log.Info().Str("url", s.url).Msg("stratix-fake listening")
}

// URL returns the API base URL, "http://127.0.0.1:PORT/api/v1" (empty for a
// server from New that is not listening).
func (s *Server) URL() string { return s.url }

// Handler returns the server's HTTP handler: the API under /api/v1 and the
// presigned URLs under /s3/. Presigned URLs name the host of the request
// that asked for them.
func (s *Server) Handler() http.Handler { return s.handler }

// Close stops the server: hanging requests are released, connections
// closed, and the DataDir log flushed. It waits for the serving goroutine.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.done)
		if s.httpSrv != nil {
			_ = s.httpSrv.Close()
			<-s.serveDone
		}
		s.closePersist()
		s.log.Info().Msg("stratix-fake stopped")
	})
}

// Seed returns the seed of the server's fault draws: Options.Seed, or the
// one taken from the clock. A test logs it so that a failed run can be
// repeated with Options.Seed set to it.
func (s *Server) Seed() uint64 { return s.seed }

// SetAPIKey changes the key the server accepts (e.g. to answer 401 to a
// client, then accept a fixed key).
func (s *Server) SetAPIKey(key string) { s.apiKey.Store(&key) }

// ExpireURLs makes every presigned URL issued so far expired.
func (s *Server) ExpireURLs() {
	s.mu.Lock()
	defer s.mu.Unlock()
	past := time.Time{}
	for _, t := range s.tokens {
		t.expires = past
	}
}

// Conns returns how many client connections are open now (0 for a server
// from New whose Handler is served elsewhere).
func (s *Server) Conns() int { return int(s.openConns.Load()) }

// Calls returns how many requests reached ep (including failed ones).
func (s *Server) Calls(ep Endpoint) int { return int(s.calls[ep.index()].Load()) }

// Injected returns how many calls of ep were answered with an injected
// status (FailNext, FailRate, RateLimitNext, RateLimitRate) and how many of
// those were 429s.
func (s *Server) Injected(ep Endpoint) (statuses, rateLimited int) {
	return int(s.answered[ep.index()].Load()), int(s.limited[ep.index()].Load())
}

// Traces returns every live trace, oldest first.
func (s *Server) Traces() []client.Trace {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]client.Trace, 0, s.byID.len())
	for _, t := range s.traces {
		if t.deleted {
			continue
		}
		out = append(out, t.public(s.org.id))
	}
	return out
}

// TraceJSON returns each live trace's data by id, in CanonicalJSON's form:
// what a test compares a file's JSON against to tell whose trace it is.
func (s *Server) TraceJSON() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]string, s.byID.len())
	for _, t := range s.traces {
		if !t.deleted {
			out[t.id] = CanonicalJSON(t.data)
		}
	}
	return out
}

// CanonicalJSON re-encodes a JSON value with its object keys sorted and no
// spaces, so two encodings of one value compare equal; invalid JSON is
// returned as it is.
func CanonicalJSON(b []byte) string {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return string(b)
	}
	out, _ := json.Marshal(v)
	return string(out)
}

func (t *trace) public(orgID string) client.Trace {
	fn := t.filename
	ct := client.Trace{ID: t.id, OrganizationID: orgID, ProjectID: t.project, CreatedAt: t.createdAt, Filename: &fn}
	_ = jsonUnmarshal(t.data, &ct.Data)
	return ct
}

// CreatesByFilename returns how many successful creates named each basename.
func (s *Server) CreatesByFilename() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.createsByFilename))
	for k, v := range s.createsByFilename {
		out[k] = v
	}
	return out
}

// CreatesByHash returns how many successful creates used an object of each
// content: hex SHA-256 of the created object's bytes → number of creates.
func (s *Server) CreatesByHash() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for _, o := range s.created {
		if o.sha256 == "" {
			sum := sha256.Sum256(o.data)
			o.sha256 = hex.EncodeToString(sum[:])
		}
		out[o.sha256]++
	}
	return out
}

// MaxInflightPerBasename returns the most uploads of one basename that were
// between presign and create at once. An upload counts from its presign
// until a create for its basename (whatever the outcome), a failed or
// dropped PUT to its URL, its URL's expiry, or the close of the connection
// it last used (presign's, then PUT's): a killed client's uploads end with
// its connections. A live client that abandons a URL without the server
// seeing it (cancelled before sending the PUT, connection kept) keeps it
// counted until it expires. Without a listener of its own (Handler served
// elsewhere) connections are not tracked.
func (s *Server) MaxInflightPerBasename() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxInflight
}

// Deleted returns the ids of deleted traces, in the order of deletion.
func (s *Server) Deleted() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.deleted...)
}

// AddEvaluation records a judge's evaluation of a trace, so list's
// judge_id and status filters have something to match (the fake never
// evaluates on its own). It fails for an unknown trace.
func (s *Server) AddEvaluation(traceID string, e client.Evaluation) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.byID.get(traceID)
	if t == nil {
		return fmt.Errorf("stratixtest: no trace %s", traceID)
	}
	if e.CreatedAt.IsZero() {
		e.CreatedAt = s.now()
	}
	t.evaluations = append(t.evaluations, evaluation{judgeID: e.JudgeID, judgeName: e.JudgeName, judgeVersion: e.JudgeVersion, createdAt: e.CreatedAt, passed: e.Passed})
	return nil
}

// sortedSources returns the filenames of a project's live traces, sorted.
func (s *Server) sortedSources(project string) []string {
	out := []string{}
	for k, n := range s.sources {
		if k.project == project && n > 0 {
			out = append(out, k.filename)
		}
	}
	sort.Strings(out)
	return out
}

// sleep waits d, or until the request ends or the server closes.
func (s *Server) sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	case <-s.done:
	}
}
