package client

// put.go owns the presigned PUT: S3's rules for the body, its size and
// its errors, and the hash of the bytes as they are sent.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
)

// Put sends exactly size bytes of body to a presigned URL, with
// Content-Length set (never chunked), the signed contentType, and no API
// key: up to smallPut bytes read whole first, larger bodies streamed. It
// returns the SHA-256 of the bytes actually sent. A body that ends early or
// holds more than size bytes is an error wrapping ErrBodySize, and the
// server stores nothing: a small body is not sent at all, a streamed one is
// cut short. A retried Put must be given a body that starts again from the
// beginning.
func (c *Client) Put(ctx context.Context, u, contentType string, body io.Reader, size int64) ([32]byte, error) {
	var sum [32]byte
	if size > MaxFileSize {
		return sum, fmt.Errorf("put: %d bytes: %w", size, ErrTooLarge)
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	if size > 0 && size <= smallPut {
		return c.putSmall(ctx, u, contentType, body, size)
	}
	hr := &hashingReader{r: body, remaining: size, size: size, h: sha256.New()}
	var rd io.Reader = hr
	if size == 0 {
		// A zero ContentLength with a non-nil body would make net/http probe
		// it and maybe send it chunked; check the body is empty ourselves.
		if err := hr.checkEmpty(); err != nil {
			return sum, fmt.Errorf("put: %w", err)
		}
		rd = http.NoBody
	}
	req, err := c.newPut(ctx, u, contentType, rd)
	if err != nil {
		return sum, err
	}
	req.ContentLength = size
	resp, err := c.putHC.Do(req)
	// net/http may still be reading the body in another goroutine after Do
	// returns: read hr's state under its lock.
	hr.mu.Lock()
	bodyErr, remaining := hr.err, hr.remaining
	if remaining == 0 && bodyErr == nil {
		copy(sum[:], hr.h.Sum(nil))
	}
	hr.mu.Unlock()
	if bodyErr != nil {
		if resp != nil {
			resp.Body.Close()
		}
		return [32]byte{}, fmt.Errorf("put: %w", bodyErr)
	}
	if err := c.putAnswer(resp, err); err != nil {
		return [32]byte{}, err
	}
	if remaining != 0 {
		// The server answered 2xx before taking the whole body: not stored as meant.
		return [32]byte{}, fmt.Errorf("put: %w: server answered after %d of %d bytes", ErrBodySize, size-remaining, size)
	}
	return sum, nil
}

// smallPut is the largest body Put reads whole before sending it. net/http
// writes the headers of a body it cannot see in memory on their own, before
// the body, so that every PUT of a small file cost two writes here and two
// reads (two wake-ups) at the server; a body in memory goes out with its
// headers in one write.
const smallPut = 16 << 10

// putSmall is Put for a body of 1 to smallPut bytes: it reads exactly size
// bytes, checks the source ends there, hashes them and sends them. A body
// of the wrong size is refused before anything is sent. The buffer is not
// reused: net/http may still read it after Do returns.
func (c *Client) putSmall(ctx context.Context, u, contentType string, body io.Reader, size int64) ([32]byte, error) {
	buf := make([]byte, size)
	if n, err := io.ReadFull(body, buf); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return [32]byte{}, fmt.Errorf("put: %w: body ended after %d of %d bytes", ErrBodySize, n, size)
		}
		return [32]byte{}, fmt.Errorf("put: read body: %w", err)
	}
	if err := (&hashingReader{r: body, size: size}).checkEmpty(); err != nil {
		return [32]byte{}, fmt.Errorf("put: %w", err)
	}
	req, err := c.newPut(ctx, u, contentType, bytes.NewReader(buf))
	if err != nil {
		return [32]byte{}, err
	}
	resp, err := c.putHC.Do(req)
	if err := c.putAnswer(resp, err); err != nil {
		return [32]byte{}, err
	}
	return sha256.Sum256(buf), nil
}

// newPut builds a PUT of body to the presigned URL u: the signed
// Content-Type, no API key.
func (c *Client) newPut(ctx context.Context, u, contentType string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u, body)
	if err != nil {
		return nil, fmt.Errorf("put: invalid URL: %w", redactURLErr(err))
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("User-Agent", c.userAgent)
	return req, nil
}

// putAnswer reads the answer to a PUT (or the error that came instead):
// nil for a 2xx, whose body is drained so that the connection is reused.
func (c *Client) putAnswer(resp *http.Response, err error) error {
	if err != nil {
		return c.transportError("put", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return c.readAPIError("put", resp)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
	return nil
}

// redactURLErr drops the query (a presigned signature) from a URL parse error.
func redactURLErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		if i := strings.IndexByte(ue.URL, '?'); i >= 0 {
			ue.URL = ue.URL[:i]
		}
	}
	return err
}

// hashingReader hashes what it hands out and enforces the declared size:
// the last bytes are withheld (and an error returned) if the source holds
// more than size bytes, so the server never receives a complete body.
type hashingReader struct {
	mu        sync.Mutex // guards everything below: net/http may read from another goroutine
	r         io.Reader
	size      int64
	remaining int64
	h         hash.Hash
	err       error // ErrBodySize (wrapped) or a read error, sticky
}

func (hr *hashingReader) Read(p []byte) (int, error) {
	hr.mu.Lock()
	defer hr.mu.Unlock()
	if hr.err != nil {
		return 0, hr.err
	}
	if hr.remaining == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > hr.remaining {
		p = p[:hr.remaining]
	}
	n, err := hr.r.Read(p)
	if n > 0 {
		if int64(n) == hr.remaining {
			// The last bytes: hand them out only if the source ends here.
			if extra := hr.checkEmpty(); extra != nil {
				return 0, extra
			}
		}
		hr.h.Write(p[:n])
		hr.remaining -= int64(n)
	}
	if err == io.EOF {
		if hr.remaining > 0 {
			hr.err = fmt.Errorf("%w: body ended after %d of %d bytes", ErrBodySize, hr.size-hr.remaining, hr.size)
			return n, hr.err
		}
		return n, io.EOF
	}
	if err != nil {
		hr.err = fmt.Errorf("read body: %w", err)
		return n, hr.err
	}
	return n, nil
}

// checkEmpty reads one more byte from the source: an error if there is one.
func (hr *hashingReader) checkEmpty() error {
	var one [1]byte
	for {
		n, err := hr.r.Read(one[:])
		if n > 0 {
			hr.err = fmt.Errorf("%w: body holds more than %d bytes", ErrBodySize, hr.size)
			return hr.err
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			hr.err = fmt.Errorf("read body: %w", err)
			return hr.err
		}
	}
}
