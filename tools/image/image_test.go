package main

// Checks of a built archive (scripts/k8s-test sets TRACESYNC_IMAGE, and
// TRACESYNC_FAKE to a stratix-fake binary): what the image holds, and the
// image's root filesystem running tracesync as uid 65532 in a chroot.

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// archive is an OCI archive read into memory.
type archive struct {
	files    map[string][]byte
	config   imageConfig
	layerTar []byte
}

type imageConfig struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Created      string `json:"created"`
	Config       struct {
		User       string   `json:"User"`
		Entrypoint []string `json:"Entrypoint"`
		Cmd        []string `json:"Cmd"`
		Env        []string `json:"Env"`
	} `json:"config"`
}

func readArchive(t *testing.T) *archive {
	t.Helper()
	path := os.Getenv("TRACESYNC_IMAGE")
	if path == "" {
		t.Skip("TRACESYNC_IMAGE is not set: run scripts/k8s-test")
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	a := &archive{files: map[string][]byte{}}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			a.files[h.Name], _ = io.ReadAll(tr)
		}
	}
	var index struct {
		Manifests []struct {
			Digest      string            `json:"digest"`
			Annotations map[string]string `json:"annotations"`
		} `json:"manifests"`
	}
	mustJSON(t, a.files["index.json"], &index)
	if len(index.Manifests) != 1 {
		t.Fatalf("index.json: %d manifests, want 1", len(index.Manifests))
	}
	var manifest struct {
		Config struct{ Digest string } `json:"config"`
		Layers []struct {
			Digest    string `json:"digest"`
			MediaType string `json:"mediaType"`
		} `json:"layers"`
	}
	mustJSON(t, a.blob(t, index.Manifests[0].Digest), &manifest)
	mustJSON(t, a.blob(t, manifest.Config.Digest), &a.config)
	if len(manifest.Layers) != 1 {
		t.Fatalf("manifest: %d layers, want 1", len(manifest.Layers))
	}
	zr, err := gzip.NewReader(bytes.NewReader(a.blob(t, manifest.Layers[0].Digest)))
	if err != nil {
		t.Fatal(err)
	}
	if a.layerTar, err = io.ReadAll(zr); err != nil {
		t.Fatal(err)
	}
	return a
}

func (a *archive) blob(t *testing.T, digest string) []byte {
	t.Helper()
	b, ok := a.files["blobs/"+strings.Replace(digest, ":", "/", 1)]
	if !ok {
		t.Fatalf("archive lacks blob %s", digest)
	}
	return b
}

func mustJSON(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
}

// The image holds the binary and the CA bundle only, runs as 65532, and
// every time in it is fixed.
func TestArchiveContents(t *testing.T) {
	a := readArchive(t)
	c := a.config
	if c.Config.User != "65532:65532" {
		t.Errorf("config user %q, want 65532:65532", c.Config.User)
	}
	if !slices.Equal(c.Config.Entrypoint, []string{"/tracesync"}) || len(c.Config.Cmd) != 0 {
		t.Errorf("entrypoint %q cmd %q, want [/tracesync] and none", c.Config.Entrypoint, c.Config.Cmd)
	}
	if c.OS != "linux" || c.Architecture == "" || c.Created != "1970-01-01T00:00:00Z" {
		t.Errorf("config os %q arch %q created %q", c.OS, c.Architecture, c.Created)
	}
	var files []string
	tr := tar.NewReader(bytes.NewReader(a.layerTar))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if !h.ModTime.Equal(time.Unix(0, 0)) || h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s: mtime %v owner %d:%d, want the epoch and root", h.Name, h.ModTime, h.Uid, h.Gid)
		}
		if h.Typeflag == tar.TypeReg {
			files = append(files, h.Name)
		} else if h.Typeflag != tar.TypeDir {
			t.Errorf("%s: type %c, want only files and folders", h.Name, h.Typeflag)
		}
	}
	slices.Sort(files)
	if want := []string{"etc/ssl/certs/ca-certificates.crt", "tracesync"}; !slices.Equal(files, want) {
		t.Errorf("layer files %q, want %q", files, want)
	}
}

// unpack writes the layer under dir.
func unpack(t *testing.T, layer []byte, dir string) {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(layer))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, h.Name)
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(p, os.FileMode(h.Mode))
		case tar.TypeReg:
			var b []byte
			if b, err = io.ReadAll(tr); err == nil {
				err = os.WriteFile(p, b, os.FileMode(h.Mode))
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// rootfsWorld is the image's root filesystem unpacked, with a state
// directory, a traces folder and a key file to mount into it.
type rootfsWorld struct {
	t                        *testing.T
	rootfs, state, traces    string
	keyDir                   string
	unshare, chroot, fakeBin string
}

func newRootfsWorld(t *testing.T) *rootfsWorld {
	t.Helper()
	a := readArchive(t)
	if os.Geteuid() != 0 {
		t.Skip("the chroot run needs root (mount namespace, chroot, setuid)")
	}
	w := &rootfsWorld{t: t, fakeBin: os.Getenv("TRACESYNC_FAKE")}
	if w.fakeBin == "" {
		t.Skip("TRACESYNC_FAKE is not set: run scripts/k8s-test")
	}
	var err error
	for _, tool := range []*string{&w.unshare, &w.chroot} {
		name := map[*string]string{&w.unshare: "unshare", &w.chroot: "chroot"}[tool]
		if *tool, err = exec.LookPath(name); err != nil {
			t.Skipf("%s not found", name)
		}
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("setpriv not found")
	}
	base := t.TempDir()
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	w.rootfs, w.state, w.traces, w.keyDir = filepath.Join(base, "rootfs"), filepath.Join(base, "state"), filepath.Join(base, "traces"), filepath.Join(base, "key")
	unpack(t, a.layerTar, w.rootfs)
	// Mount points, made before the root is mounted read-only.
	for _, d := range []string{"var/lib/tracesync", "traces", "run/secrets/tracesync"} {
		if err := os.MkdirAll(filepath.Join(w.rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{w.state, w.traces, w.keyDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// As the kubelet makes a hostPath: root:root 0755 (prepare hands it over).
	if err := os.Chown(w.state, 0, 0); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(w.keyDir, "api-key")
	if err := os.WriteFile(key, []byte("test-key\n"), 0o440); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(key, 0, 65532); err != nil { // 0440 root:65532, as a Secret with fsGroup
		t.Fatal(err)
	}
	return w
}

// command is tracesync ARGS run as 65532:65532 in the read-only image root,
// with the state directory writable and the traces and key read-only.
func (w *rootfsWorld) command(args ...string) *exec.Cmd {
	return w.commandAs(`exec "$CHROOT" --userspec=65532:65532 "$R" /tracesync "$@"`, args...)
}

// prepareCommand is `tracesync state-dir prepare` as the chart's init
// container runs it: uid 0 with no capability but CHOWN (and SYS_CHROOT,
// which the chroot itself needs).
func (w *rootfsWorld) prepareCommand() *exec.Cmd {
	return w.commandAs(`exec setpriv --bounding-set=-all,+chown,+sys_chroot --inh-caps=-all -- "$CHROOT" "$R" /tracesync "$@"`,
		"state-dir", "prepare", "/var/lib/tracesync", "--uid", "65532", "--gid", "65532")
}

// prepare runs prepareCommand and checks the state directory is 65532's, 0700.
func (w *rootfsWorld) prepare() {
	w.t.Helper()
	if out, err := w.prepareCommand().CombinedOutput(); err != nil {
		w.t.Fatalf("state-dir prepare with CAP_CHOWN alone: %v\n%s", err, out)
	}
	fi, err := os.Stat(w.state)
	if err != nil || fi.Sys().(*syscall.Stat_t).Uid != 65532 || fi.Mode().Perm() != 0o700 {
		w.t.Fatalf("state dir after prepare: %v %v, want 65532 and 0700", fi, err)
	}
}

func (w *rootfsWorld) commandAs(last string, args ...string) *exec.Cmd {
	script := `set -e
mount --bind "$R" "$R"
mount --bind "$S" "$R/var/lib/tracesync"
mount -o ro --bind "$T" "$R/traces"
mount -o ro --bind "$K" "$R/run/secrets/tracesync"
mount -o remount,bind,ro "$R/traces"
mount -o remount,bind,ro "$R/run/secrets/tracesync"
mount -o remount,bind,ro "$R"
` + last
	cmd := exec.Command(w.unshare, append([]string{"-m", "--propagation", "private", "sh", "-c", script, "sh"}, args...)...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "R=" + w.rootfs, "S=" + w.state, "T=" + w.traces, "K=" + w.keyDir, "CHROOT=" + w.chroot,
		"TRACESYNC_API_KEY_FILE=/run/secrets/tracesync/api-key", "TRACESYNC_STATE_DIR=/var/lib/tracesync", "TRACESYNC_LOG_FORMAT=json"}
	return cmd
}

// startFake runs stratix-fake and returns its base URL.
func startFake(t *testing.T, bin string) string {
	t.Helper()
	cmd := exec.Command(bin, "--addr", "127.0.0.1:0", "--api-key", "test-key", "--log-level", "warn")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line := make([]byte, 0, 128)
	buf := make([]byte, 1)
	for {
		if _, err := out.Read(buf); err != nil {
			t.Fatalf("stratix-fake printed no URL: %v", err)
		}
		if buf[0] == '\n' {
			break
		}
		line = append(line, buf[0])
	}
	go io.Copy(io.Discard, out)
	return strings.TrimSpace(string(line))
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func get(url string) (int, string) {
	hc := &http.Client{Timeout: time.Second}
	resp, err := hc.Get(url)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The image's root, read-only, runs `tracesync run` as uid 65532 against
// stratix-fake: the files are uploaded, both probes answer 200, SIGTERM
// exits 0.
func TestRootfsRunsAsNonRoot(t *testing.T) {
	w := newRootfsWorld(t)
	base := startFake(t, w.fakeBin)
	for i := range 3 {
		p := filepath.Join(w.traces, fmt.Sprintf("t%d.json", i))
		if err := os.WriteFile(p, []byte(fmt.Sprintf(`{"trace_id":"rootfs-%d","events":[]}`, i)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	w.prepare()
	metrics := freePort(t)
	var stderr bytes.Buffer
	cmd := w.command("run", "--base-url", base, "--metrics-addr", metrics, "--settle", "200ms", "/traces")
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	deadline := time.Now().Add(time.Minute)
	for {
		_, m := get("http://" + metrics + "/metrics")
		h, _ := get("http://" + metrics + "/healthz")
		r, _ := get("http://" + metrics + "/readyz")
		if strings.Contains(m, "\ntracesync_uploads_total 3\n") && h == 200 && r == 200 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("tracesync exited early: %v\n%s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("within a minute: uploads not 3, or /healthz %d /readyz %d\n%s", h, r, stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The unshare wrapper execs into chroot, which execs tracesync: the
	// signal reaches the daemon itself.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("after SIGTERM: %v, want exit 0\n%s", err, stderr.String())
		}
	case <-time.After(time.Minute):
		t.Fatalf("no exit within a minute of SIGTERM\n%s", stderr.String())
	}
	if fi, err := os.Stat(filepath.Join(w.state, "state.db")); err != nil {
		t.Errorf("no state file written: %v", err)
	} else if st := fi.Sys().(*syscall.Stat_t); st.Uid != 65532 {
		t.Errorf("state file owned by %d, want 65532", st.Uid)
	}
}

// Against a TLS endpoint whose certificate a test CA signed, check-config
// passes once that CA is appended to the image's bundle, and fails naming
// the certificate with the stock bundle.
func TestRootfsTrustsItsBundle(t *testing.T) {
	w := newRootfsWorld(t)
	base := startFake(t, w.fakeBin)
	upstream, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httptest.NewUnstartedServer(httputil.NewSingleHostReverseProxy(&url.URL{Scheme: upstream.Scheme, Host: upstream.Host}))
	proxy.TLS = &tls.Config{}
	proxy.StartTLS()
	t.Cleanup(proxy.Close)
	tlsBase := proxy.URL + upstream.Path
	w.prepare()

	checkConfig := func() (string, error) {
		var out bytes.Buffer
		cmd := w.command("check-config", "--base-url", tlsBase, "/traces")
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}
	out, err := checkConfig()
	if err == nil {
		t.Fatalf("check-config with the stock bundle passed against a test CA's certificate:\n%s", out)
	}
	if !strings.Contains(out, "certificate") || !strings.Contains(out, "example.com") && !strings.Contains(out, "Acme Co") {
		t.Errorf("check-config with the stock bundle does not name the certificate:\n%s", out)
	}

	bundle := filepath.Join(w.rootfs, "etc/ssl/certs/ca-certificates.crt")
	f, err := os.OpenFile(bundle, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := pem.Encode(f, &pem.Block{Type: "CERTIFICATE", Bytes: proxy.Certificate().Raw}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if out, err := checkConfig(); err != nil {
		t.Fatalf("check-config with the test CA appended: %v\n%s", err, out)
	}
}

// The archive is a valid OCI image layout: go-containerregistry reads it
// back and validates every digest and size (what podman load -i relies on).
func TestArchiveIsValidOCILayout(t *testing.T) {
	a := readArchive(t)
	dir := t.TempDir()
	for name, data := range a.files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(idx); err != nil {
		t.Fatalf("validate: %v", err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if ref := im.Manifests[0].Annotations[refNameKey]; !strings.HasPrefix(ref, "tracesync:") {
		t.Errorf("ref name %q, want tracesync:VERSION", ref)
	}
}
