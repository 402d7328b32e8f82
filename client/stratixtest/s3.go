// The presigned URLs: how long each is in flight, and the S3 PUT with S3's checks and XML errors.

package stratixtest

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cespare/xxhash/v2"
)

// putChunk is the most read from a PUT body at a time.
const putChunk = 256 << 10

// s3Error answers an S3 XML error.
func s3Error(w http.ResponseWriter, status int, code, msg string) {
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n<Error><Code>")
	xmlEscape(&b, code)
	b.WriteString("</Code><Message>")
	xmlEscape(&b, msg)
	b.WriteString("</Message><RequestId>stratixtest</RequestId></Error>")
	h := w.Header()
	h.Set("Content-Type", "application/xml")
	h.Set("Content-Length", strconv.Itoa(b.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

func xmlEscape(b *bytes.Buffer, s string) {
	r := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&apos;")
	b.WriteString(r.Replace(s))
}

// s3CodeFor is the S3 error code of an injected status on the PUT.
func s3CodeFor(status int) string {
	switch status {
	case http.StatusForbidden:
		return "AccessDenied"
	case http.StatusServiceUnavailable, http.StatusTooManyRequests:
		return "SlowDown"
	case http.StatusInternalServerError:
		return "InternalError"
	case http.StatusBadRequest:
		return "InvalidRequest"
	case http.StatusRequestTimeout:
		return "RequestTimeout"
	}
	return http.StatusText(status)
}

// sweepTokensLocked forgets expired URLs (bounded memory in long runs).
func (s *Server) sweepTokensLocked(now time.Time) {
	for k, t := range s.tokens {
		if now.After(t.expires) {
			delete(s.tokens, k)
			t.open = false
		}
	}
	for name, list := range s.inflight {
		open := list[:0]
		for _, o := range list {
			if o.open {
				open = append(open, o)
			}
		}
		if len(open) == 0 {
			delete(s.inflight, name)
		} else {
			s.inflight[name] = open
		}
	}
}

// closeUploadLocked ends an upload's in-flight period.
func (s *Server) closeUploadLocked(u *presignedURL) {
	if !u.open {
		return
	}
	u.open = false
	list := s.inflight[u.filename]
	for i, o := range list {
		if o == u {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(s.inflight, u.filename)
	} else {
		s.inflight[u.filename] = list
	}
}

// handlePut is the presigned PUT, with S3's checks in S3's order.
func (s *Server) handlePut(w http.ResponseWriter, r *http.Request) {
	f, handled := s.begin(w, r, EndpointPut)
	token := r.PathValue("token")
	s.mu.Lock()
	u := s.tokens[token]
	if handled && u != nil {
		s.closeUploadLocked(u) // the client saw a failure: it will presign again
	}
	s.mu.Unlock()
	if handled {
		return
	}
	fail := func(status int, code, msg string) {
		if u != nil {
			s.mu.Lock()
			s.closeUploadLocked(u)
			s.mu.Unlock()
		}
		s3Error(w, status, code, msg)
	}
	if len(r.TransferEncoding) > 0 {
		fail(http.StatusNotImplemented, "NotImplemented", "A header you provided implies functionality that is not implemented: Transfer-Encoding")
		return
	}
	if len(r.Header.Values("Content-Length")) == 0 {
		fail(http.StatusLengthRequired, "MissingContentLength", "You must provide the Content-Length HTTP header.")
		return
	}
	if u == nil || r.URL.Query().Get("X-Amz-Signature") != u.signature || r.PathValue("filename") != u.filename {
		fail(http.StatusForbidden, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided. Check your key and signing method.")
		return
	}
	if r.Header.Get("Content-Type") != u.contentType {
		fail(http.StatusForbidden, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided. Check your key and signing method. (Content-Type "+strconv.Quote(r.Header.Get("Content-Type"))+" was not the signed "+strconv.Quote(u.contentType)+")")
		return
	}
	s.mu.Lock()
	expired := s.now().After(u.expires)
	s.mu.Unlock()
	if expired {
		fail(http.StatusForbidden, "AccessDenied", "Request has expired")
		return
	}
	if r.ContentLength > maxFileSize {
		fail(http.StatusBadRequest, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size")
		return
	}
	if f.kind == faultDrop {
		_, _ = io.CopyN(io.Discard, r.Body, r.ContentLength/2)
		s.mu.Lock()
		s.closeUploadLocked(u)
		s.mu.Unlock()
		hijackClose(w)
		return
	}
	// The ETag (S3 sends the MD5 of the body; clients treat it as opaque)
	// is a fast non-cryptographic hash taken as the body arrives.
	data := make([]byte, r.ContentLength)
	h := xxhash.New()
	for off := 0; off < len(data); {
		n, err := r.Body.Read(data[off:min(off+putChunk, len(data))])
		_, _ = h.Write(data[off : off+n])
		off += n
		if err != nil && off < len(data) {
			fail(http.StatusBadRequest, "IncompleteBody", "You did not provide the number of bytes specified by the Content-Length HTTP header.")
			return
		}
	}
	obj := &object{data: data, etag: fmt.Sprintf("%016x%016x", h.Sum64(), uint64(len(data))), contentType: u.contentType}
	s.mu.Lock()
	s.objects[objectKey{u.project, u.filename}] = obj
	u.stored = true
	if ci := connOf(r); ci != nil {
		u.conn = ci
	}
	s.mu.Unlock()
	w.Header().Set("ETag", `"`+obj.etag+`"`)
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusOK)
}
