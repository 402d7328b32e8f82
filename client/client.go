package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Default timeouts of the HTTP client New builds when Config.HTTPClient is nil.
const (
	// ConnectTimeout bounds establishing a TCP connection (as the SDK: 5 s).
	ConnectTimeout = 5 * time.Second
	// TLSHandshakeTimeout bounds the TLS handshake.
	TLSHandshakeTimeout = 10 * time.Second
	// ResponseHeaderTimeout bounds the wait for a response's headers once the
	// request is fully written (a server that accepts and never answers).
	ResponseHeaderTimeout = 2 * time.Minute
	// DefaultTimeout is the per-call deadline used when the caller's context
	// has none (the SDK's total timeout is 600 s).
	DefaultTimeout = 10 * time.Minute
	// MaxIdleConnsPerHost sizes the keep-alive pool per host (the API, and
	// the storage the presigned URLs point to): one connection per upload
	// in flight, up to the most workers tracesync allows, so an adaptive
	// pool that grows and shrinks keeps its connections instead of closing
	// and redialing them. Idle ones close after IdleConnTimeout.
	MaxIdleConnsPerHost = 1024
	// PutWriteBufferSize is the write buffer of each connection of the
	// presigned PUTs: a small body (up to about 7 KiB) and its headers
	// leave in one write; a body of up to 16 KiB (smallPut) in two.
	PutWriteBufferSize = 8 << 10
	// ConnBufferSize is the read buffer of every connection, and the write
	// buffer of the API calls' (presign, create, list, delete): their
	// requests and the heads of the answers are small, and a large answer
	// (a create's ids) is read straight into a buffer of its size.
	//
	// Each connection holds its buffers for as long as it is open, and an
	// adaptive pool at 256 uploads keeps hundreds open (docs/performance.md).
	ConnBufferSize = 2 << 10
)

// maxErrorBody bounds how much of an error response is read.
const maxErrorBody = 64 << 10

// maxResponseBody bounds how much of a success response is read (a list
// page of 500 traces with large data can be big, but not unbounded).
const maxResponseBody = 256 << 20

// ErrTooLarge is returned (wrapped) for a body over MaxFileSize, before any request.
var ErrTooLarge = fmt.Errorf("file too large: the API accepts at most %d bytes (50 MiB)", MaxFileSize)

// ErrBodySize is returned (wrapped) by Put when the body holds fewer or more
// bytes than the size given: the file changed while it was being sent.
// Nothing was stored; hash the file again before uploading it.
var ErrBodySize = errors.New("body size differs from the declared size (the file changed while it was sent)")

// ErrBadResponse is returned (wrapped) when a 2xx answer cannot be used: not
// JSON, or missing a required field (presign without url, create without ids).
var ErrBadResponse = errors.New("unexpected response from the API")

// ErrMissingProject is returned (wrapped) by Discover when the organization
// has no project, or none of the name asked for.
var ErrMissingProject = errors.New("organization is missing project")

// ErrWrongOrganization is returned (wrapped) by Discover when the pinned
// organization is not the one the API key belongs to: a configuration
// error, not something that passes with time.
var ErrWrongOrganization = errors.New("organization does not belong to this API key")

// WrongOrganizationError is returned by Discover when the pinned
// organization is not the one the API key belongs to.
type WrongOrganizationError struct {
	Pinned string // the organization asked for
	KeyOrg string // the organization the key belongs to
}

// Error says which organizations differ.
func (e *WrongOrganizationError) Error() string {
	return fmt.Sprintf("%v: organization %s is not the one this API key belongs to (%s)", ErrWrongOrganization, e.Pinned, e.KeyOrg)
}

// Is makes errors.Is(err, ErrWrongOrganization) true.
func (e *WrongOrganizationError) Is(target error) bool { return target == ErrWrongOrganization }

// Client talks to one Stratix API with one key. It is safe for concurrent
// use. It never retries: every method makes at most one attempt per HTTP
// call and reports a classified error (see Classify).
type Client struct {
	baseURL   string // without trailing slash
	keyMu     sync.Mutex
	apiKey    string                 // guarded by keyMu: ReloadKey may replace it
	reloadKey func() (string, error) // Config.ReloadKey
	userAgent string
	hc        *http.Client // the API calls
	putHC     *http.Client // the presigned PUTs
	timeout   time.Duration
	now       func() time.Time

	mu     sync.Mutex // guards target and found
	target Target
	found  bool // target has both IDs
	pinned Config
}

// New returns a Client for cfg. It makes no request; it returns ErrNoAPIKey
// when cfg.APIKey is empty.
func New(cfg Config) (*Client, error) {
	if strings.TrimSpace(cfg.APIKey) == "" {
		return nil, ErrNoAPIKey
	}
	base := strings.TrimRight(cfg.BaseURL, "/")
	if base == "" {
		base = DefaultBaseURL
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("invalid base URL %q: want http(s)://host/api/v1", cfg.BaseURL)
	}
	hc, putHC := cfg.HTTPClient, cfg.PutHTTPClient
	if hc == nil {
		hc = &http.Client{Transport: NewTransport()}
		if putHC == nil {
			putHC = &http.Client{Transport: NewPutTransport()}
		}
	}
	if putHC == nil {
		putHC = hc
	}
	ua := cfg.UserAgent
	if ua == "" {
		ua = "tracesync"
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	c := &Client{
		baseURL:   base,
		apiKey:    cfg.APIKey,
		reloadKey: cfg.ReloadKey,
		userAgent: ua,
		hc:        hc,
		putHC:     putHC,
		timeout:   timeout,
		now:       now,
		pinned:    cfg,
		target:    Target{BaseURL: base, OrganizationID: cfg.OrganizationID, ProjectID: cfg.ProjectID},
	}
	c.found = cfg.OrganizationID != "" && cfg.ProjectID != ""
	return c, nil
}

// NewTransport returns the http.Transport New uses by default for the API
// calls: 5 s connect timeout, TLS handshake and response-header timeouts,
// a keep-alive pool of up to MaxIdleConnsPerHost connections, and
// ConnBufferSize buffers. Callers building their own http.Client should
// start from it.
func NewTransport() *http.Transport {
	dialer := &net.Dialer{Timeout: ConnectTimeout, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		TLSHandshakeTimeout:   TLSHandshakeTimeout,
		ResponseHeaderTimeout: ResponseHeaderTimeout,
		ExpectContinueTimeout: time.Second,
		MaxIdleConns:          2 * MaxIdleConnsPerHost,
		MaxIdleConnsPerHost:   MaxIdleConnsPerHost,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
		ReadBufferSize:        ConnBufferSize,
		WriteBufferSize:       ConnBufferSize,
	}
}

// NewPutTransport is NewTransport for the presigned PUTs: a small file's
// PUT (headers and a body of up to about 7 KiB) goes out in one write. The
// storage the URLs point to is usually another host than the API; when it
// is the same, the PUTs still keep connections of their own.
func NewPutTransport() *http.Transport {
	tr := NewTransport()
	tr.WriteBufferSize = PutWriteBufferSize
	return tr
}

// Target returns the base URL and the organization and project known so far
// (both IDs are set once Discover succeeded or when they were pinned).
func (c *Client) Target() Target {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.target
}

// Discover finds the organization and project traces go to, as the SDK does:
// GET /organizations gives the key's organization and its projects; the first
// project is used, or the one named Config.ProjectName. Nothing is requested
// when both IDs were given in Config. A success is cached; an error is not.
func (c *Client) Discover(ctx context.Context) (Target, error) {
	c.mu.Lock()
	if c.found {
		t := c.target
		c.mu.Unlock()
		return t, nil
	}
	c.mu.Unlock()

	var org wireOrganization
	if err := c.do(ctx, "organizations", http.MethodGet, c.baseURL+"/organizations", nil, &org, true); err != nil {
		return Target{}, err
	}
	if org.ID == "" {
		return Target{}, fmt.Errorf("organizations: %w: no organization id", ErrBadResponse)
	}
	orgID := org.ID
	if c.pinned.OrganizationID != "" && c.pinned.OrganizationID != org.ID {
		return Target{}, &WrongOrganizationError{Pinned: c.pinned.OrganizationID, KeyOrg: org.ID}
	}
	projectID := c.pinned.ProjectID
	if projectID == "" {
		switch {
		case len(org.Projects) == 0:
			return Target{}, fmt.Errorf("organization %s: %w", orgID, ErrMissingProject)
		case c.pinned.ProjectName != "":
			var names []string
			for _, p := range org.Projects {
				if p.Name == c.pinned.ProjectName {
					projectID = p.ID
					break
				}
				names = append(names, p.Name)
			}
			if projectID == "" {
				return Target{}, fmt.Errorf("organization %s has no project named %q (it has: %s): %w", orgID, c.pinned.ProjectName, strings.Join(names, ", "), ErrMissingProject)
			}
		default:
			projectID = org.Projects[0].ID
		}
		if projectID == "" {
			return Target{}, fmt.Errorf("organizations: %w: organization %s lists a project without an id: %w", ErrBadResponse, orgID, ErrMissingProject)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.target = Target{BaseURL: c.baseURL, OrganizationID: orgID, ProjectID: projectID}
	c.found = true
	return c.target, nil
}

// tracesURL returns {base}/organizations/{org}/projects/{project}/traces,
// discovering the target first when needed.
func (c *Client) tracesURL(ctx context.Context) (string, error) {
	t, err := c.Discover(ctx)
	if err != nil {
		return "", err
	}
	return c.baseURL + "/organizations/" + url.PathEscape(t.OrganizationID) + "/projects/" + url.PathEscape(t.ProjectID) + "/traces", nil
}

// withTimeout applies the per-call timeout when ctx has no deadline.
func (c *Client) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok || c.timeout < 0 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, c.timeout)
}

// do sends one API request (with the key) and decodes a 2xx JSON answer into
// out (after unwrapping the envelope) unless out is nil. mustWrap is for
// GET /organizations, whose body is always inside "data".
func (c *Client) do(ctx context.Context, op, method, u string, body any, out any, mustWrap bool) error {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("%s: encode request: %w", op, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	key := c.key()
	req.Header.Set("x-api-key", key)
	req.Header.Set("User-Agent", c.userAgent)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return c.transportError(op, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		if resp.StatusCode == http.StatusUnauthorized {
			defer c.keyRejected(key)
		}
		return c.readAPIError(op, resp)
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
		return nil
	}
	ca, isCreate := out.(*createAnswer)
	var raw []byte
	if isCreate && !mustWrap {
		// The usual answers, {"trace_ids": [...]} alone or in the
		// envelope: the ids are slices of the answer, read once.
		s, err := readString(resp.Body, resp.ContentLength, maxResponseBody)
		if err != nil {
			return c.transportError(op, err)
		}
		if ids, ok := plainTraceIDsObject(s); ok {
			ca.ids = ids
			return nil
		}
		if ids, ok := plainEnvelopeIDs(s); ok {
			ca.ids = ids
			return nil
		}
		raw = []byte(s)
	} else if raw, err = readBody(resp.Body, resp.ContentLength, maxResponseBody); err != nil {
		return c.transportError(op, err)
	}
	payload, wrapped, err := unwrap(raw)
	if err != nil {
		return fmt.Errorf("%s: %w: %v", op, ErrBadResponse, err)
	}
	if mustWrap && !wrapped {
		return fmt.Errorf("%s: %w: body has no \"data\"", op, ErrBadResponse)
	}
	if isCreate {
		// unwrap parsed the whole body, so payload is one valid JSON value
		// (with JSON whitespace around it at most): what Unmarshal would
		// copy into a RawMessage, without the copy.
		ca.payload = bytes.TrimSpace(payload)
		return nil
	}
	if err := json.Unmarshal(payload, out); err != nil {
		return fmt.Errorf("%s: %w: %v", op, ErrBadResponse, err)
	}
	return nil
}

// readBody reads a response body of up to limit bytes. When the length is
// known it reads into one buffer of that size instead of growing one.
func readBody(r io.Reader, size, limit int64) ([]byte, error) {
	if size <= 0 || size > limit {
		return io.ReadAll(io.LimitReader(r, limit))
	}
	var b bytes.Buffer
	b.Grow(int(size) + bytes.MinRead) // room to read EOF without growing
	_, err := b.ReadFrom(io.LimitReader(r, limit))
	return b.Bytes(), err
}

// copyBufs are the chunks readString copies through.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// readString reads a body of up to limit bytes into one string, written
// once (into a buffer of its size when the length is known): no buffer to
// zero first, and no copy of the ids a create answer holds, which are
// slices of it.
func readString(r io.Reader, size, limit int64) (string, error) {
	var b strings.Builder
	if size > 0 && size <= limit {
		b.Grow(int(size))
	}
	bufp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bufp)
	if _, err := io.CopyBuffer(&b, io.LimitReader(r, limit), *bufp); err != nil {
		return "", err
	}
	return b.String(), nil
}

// unwrap returns the payload of a JSON object body: its "data" when both
// "status" and "data" are present (as the SDK does), else the body itself.
// Every body must be a JSON object.
func unwrap(raw []byte) (payload []byte, wrapped bool, err error) {
	var env struct {
		Status json.RawMessage `json:"status"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(raw, &env); err != nil {
		return nil, false, fmt.Errorf("body is not a JSON object: %v", err)
	}
	if env.Status != nil && env.Data != nil {
		return env.Data, true, nil
	}
	return raw, false, nil
}

// transportError wraps a failure to get an answer, with the operation
// named and any URL query (a presigned signature) removed.
func (c *Client) transportError(op string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		if u, perr := url.Parse(ue.URL); perr == nil {
			u.RawQuery = ""
			ue.URL = u.String()
		}
	}
	return &TransportError{Op: op, Err: redactErr(err, c.key())}
}

// TransportError is a request that got no HTTP answer: connection refused or
// reset, timeout, DNS failure, a connection dropped mid-request, or the
// context ending. Classify tells which.
type TransportError struct {
	Op  string // as APIError.Op
	Err error
}

func (e *TransportError) Error() string { return e.Op + ": " + e.Err.Error() }

// Unwrap returns the underlying error (context.Canceled, a *net.OpError, ...).
func (e *TransportError) Unwrap() error { return e.Err }

// redactErr returns err, or an error with the same chain whose message no
// longer holds key (in case something echoed it).
func redactErr(err error, key string) error {
	if key == "" || !strings.Contains(err.Error(), key) {
		return err
	}
	return &redactedError{msg: strings.ReplaceAll(err.Error(), key, "[REDACTED]"), err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }
