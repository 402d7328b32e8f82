package main

import (
	"crypto/x509"
	"errors"
	"fmt"
)

// certificateHint names the server's certificate when err is a TLS
// verification failure, and says which CA bundle was used: in a container
// the bundle is the image's, and a private CA must be added to it. It
// returns "" for any other error.
func certificateHint(err error) string {
	var unknown x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	bundle := "the system CA bundle (SSL_CERT_FILE, else /etc/ssl/certs/ca-certificates.crt)"
	switch {
	case errors.As(err, &unknown) && unknown.Cert != nil:
		return fmt.Sprintf("; the server's certificate (subject %q, issuer %q) is signed by an authority not in %s: add that CA to it", unknown.Cert.Subject, unknown.Cert.Issuer, bundle)
	case errors.As(err, &hostname) && hostname.Certificate != nil:
		return fmt.Sprintf("; the server's certificate (subject %q) is not valid for %s", hostname.Certificate.Subject, hostname.Host)
	case errors.As(err, &invalid) && invalid.Cert != nil:
		return fmt.Sprintf("; the server's certificate (subject %q) is invalid: %s", invalid.Cert.Subject, invalid.Detail)
	}
	return ""
}
