// Command image writes tracesync's container image as an OCI archive (an
// OCI image layout in a tar), from scratch and without a container daemon
// or a registry: one layer holding the static binary at /tracesync and a
// CA bundle at /etc/ssl/certs/ca-certificates.crt, user 65532:65532,
// ENTRYPOINT ["/tracesync"], and every timestamp fixed, so the same
// binary gives the same archive, byte for byte.
//
// The CA bundle comes from golang.org/x/crypto/x509roots/fallback/bundle
// (the NSS roots, pinned in this module's go.mod) rather than from the
// build machine's /etc/ssl/certs: a pinned module is the same on every
// machine, so two builds anywhere agree, and it changes only when go.mod
// does. Roots that NSS constrains (distrust-after dates) are left out: a
// PEM file cannot carry the constraint. --ca-bundle takes a file instead.
//
// It lives in a module of its own so the daemon's go.mod does not grow.
package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// epoch is every timestamp in the image: the archive depends on its
// inputs only.
var epoch = time.Unix(0, 0).UTC()

const (
	user       = "65532:65532"
	binPath    = "tracesync"
	caPath     = "etc/ssl/certs/ca-certificates.crt"
	refNameKey = "org.opencontainers.image.ref.name"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	binary := fs.String("binary", "", "the static tracesync binary (required)")
	arch := fs.String("arch", "", "the binary's GOARCH: amd64, arm64, ... (required)")
	version := fs.String("version", "dev", "image version: the archive's ref name tracesync:VERSION")
	caBundle := fs.String("ca-bundle", "", "PEM CA bundle to ship instead of the pinned NSS roots")
	out := fs.String("o", "", "output archive, e.g. dist/tracesync_VERSION_linux_ARCH.oci.tar (required)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *binary == "" || *arch == "" || *out == "" {
		return errors.New("-binary, -arch and -o are required")
	}
	bin, err := os.ReadFile(*binary)
	if err != nil {
		return err
	}
	var ca []byte
	if *caBundle != "" {
		if ca, err = os.ReadFile(*caBundle); err != nil {
			return err
		}
	} else {
		ca = nssBundle()
	}
	img, err := buildImage(bin, ca, *arch, *version)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		return err
	}
	tmp := *out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if err := writeArchive(f, img, *arch, "tracesync:"+*version); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, *out)
}

// nssBundle is the pinned NSS roots as a PEM bundle, unconstrained roots only.
func nssBundle() []byte {
	var b bytes.Buffer
	for r := range bundle.Roots() {
		if r.Constraint != nil {
			continue
		}
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: r.Certificate})
	}
	return b.Bytes()
}

// rootfs is the layer's tar: the folders above the CA bundle, the bundle
// and the binary, owned by root, in a fixed order with fixed times.
func rootfs(bin, ca []byte) ([]byte, error) {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	hdr := func(name string, typ byte, mode int64, size int) *tar.Header {
		return &tar.Header{Name: name, Typeflag: typ, Mode: mode, Size: int64(size), ModTime: epoch, Format: tar.FormatPAX, Uname: "root", Gname: "root"}
	}
	for _, d := range []string{"etc/", "etc/ssl/", "etc/ssl/certs/"} {
		if err := tw.WriteHeader(hdr(d, tar.TypeDir, 0o755, 0)); err != nil {
			return nil, err
		}
	}
	for _, f := range []struct {
		name string
		mode int64
		data []byte
	}{{caPath, 0o644, ca}, {binPath, 0o755, bin}} {
		if err := tw.WriteHeader(hdr(f.name, tar.TypeReg, f.mode, len(f.data))); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func buildImage(bin, ca []byte, arch, version string) (v1.Image, error) {
	layerTar, err := rootfs(bin, ca)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:   layer,
		History: v1.History{Created: v1.Time{Time: epoch}, CreatedBy: "tools/image", Comment: "tracesync " + version},
	})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture = arch
	cf.OS = "linux"
	cf.Created = v1.Time{Time: epoch}
	cf.Config.User = user
	cf.Config.Entrypoint = []string{"/" + binPath}
	cf.Config.Cmd = nil
	cf.Config.Env = []string{"SSL_CERT_FILE=/" + caPath}
	cf.Config.Labels = map[string]string{
		"org.opencontainers.image.title":   "tracesync",
		"org.opencontainers.image.version": version,
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, err
	}
	return mutate.CreatedAt(img, v1.Time{Time: epoch})
}

// writeArchive writes img as an OCI image layout in a tar: oci-layout,
// index.json naming it ref, and its blobs, with fixed headers.
func writeArchive(w io.Writer, img v1.Image, arch, ref string) error {
	manifest, err := img.RawManifest()
	if err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	config, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	cfgName, err := img.ConfigName()
	if err != nil {
		return err
	}
	files := map[string][]byte{
		"oci-layout":      []byte(`{"imageLayoutVersion":"1.0.0"}`),
		blobPath(digest):  manifest,
		blobPath(cfgName): config,
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return err
		}
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return err
		}
		files[blobPath(d)] = data
	}
	index := map[string]any{
		"schemaVersion": 2,
		"mediaType":     string(types.OCIImageIndex),
		"manifests": []map[string]any{{
			"mediaType":   string(types.OCIManifestSchema1),
			"digest":      digest.String(),
			"size":        len(manifest),
			"platform":    map[string]string{"architecture": arch, "os": "linux"},
			"annotations": map[string]string{refNameKey: ref},
		}},
	}
	if files["index.json"], err = json.Marshal(index); err != nil {
		return err
	}

	tw := tar.NewWriter(w)
	dirs := []string{"blobs/", "blobs/sha256/"}
	for _, d := range dirs {
		if err := tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX}); err != nil {
			return err
		}
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := tw.WriteHeader(&tar.Header{Name: n, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(files[n])), ModTime: epoch, Format: tar.FormatPAX}); err != nil {
			return err
		}
		if _, err := tw.Write(files[n]); err != nil {
			return err
		}
	}
	return tw.Close()
}

func blobPath(h v1.Hash) string {
	return "blobs/" + h.Algorithm + "/" + h.Hex
}
