package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// A server whose certificate no trusted CA signed: the error names it.
func TestCertificateHintNamesTheCertificate(t *testing.T) {
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	defer srv.Close()
	hc := &http.Client{Timeout: 5 * time.Second} // the system roots: httptest's CA is not among them
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, srv.URL, nil)
	_, err := hc.Do(req)
	if err == nil {
		t.Fatal("a self-signed certificate was trusted")
	}
	hint := certificateHint(err)
	if !strings.Contains(hint, "Acme Co") || !strings.Contains(hint, "CA bundle") {
		t.Errorf("hint %q does not name the certificate and the bundle", hint)
	}
	if h := certificateHint(context.DeadlineExceeded); h != "" {
		t.Errorf("hint for a timeout: %q, want none", h)
	}
}
