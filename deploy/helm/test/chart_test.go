// Package test renders the tracesync chart with a pinned helm and decodes
// every document strictly into the k8s.io/api types: an unknown or
// misspelled field (readOnlyRootFileSystem) fails, where a case-insensitive
// decoder such as encoding/json would take it silently. Then it checks what
// the chart promises: non-root pods on a read-only root, the key as a file,
// the state hostPath per namespace and release, maxSurge 0, probes, and the
// backfill's shard argument against its completions. The sidecar example
// passes the same decoding.
//
// It lives in a module of its own so the daemon's go.mod does not grow.
// scripts/k8s-test sets HELM to the pinned binary.
package test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

const (
	chartDir  = "../tracesync"
	release   = "ts"
	namespace = "tracing"
)

// helm returns the helm binary: $HELM, else helm on PATH.
func helm(t *testing.T) string {
	t.Helper()
	if h := os.Getenv("HELM"); h != "" {
		return h
	}
	h, err := exec.LookPath("helm")
	if err != nil {
		t.Skip("no helm: run scripts/k8s-test, which installs the pinned one")
	}
	return h
}

// render runs helm template with args and returns stdout, stderr and the error.
func render(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	cmd := exec.Command(helm(t), append([]string{"template", release, chartDir, "--namespace", namespace}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

// objects is what one rendering holds, decoded strictly.
type objects struct {
	daemonSets  []*appsv1.DaemonSet
	deployments []*appsv1.Deployment
	jobs        []*batchv1.Job
	secrets     []*corev1.Secret
}

// strictDecode turns one YAML document into v: duplicate keys refused
// (YAMLToJSONStrict), then a case-sensitive decode that refuses unknown
// fields (sigs.k8s.io/json, as the API server's strict field validation).
func strictDecode(doc []byte, v any) error {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	strictErrs, err := kjson.UnmarshalStrict(j, v, kjson.DisallowUnknownFields, kjson.DisallowDuplicateFields)
	if err != nil {
		return err
	}
	if len(strictErrs) > 0 {
		msgs := make([]string, len(strictErrs))
		for i, e := range strictErrs {
			msgs[i] = e.Error()
		}
		return fmt.Errorf("strict decoding: %s", strings.Join(msgs, "; "))
	}
	return nil
}

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

// decodeAll decodes every document of a multi-document YAML stream into
// its k8s.io/api type, by kind.
func decodeAll(t *testing.T, stream string) objects {
	t.Helper()
	var o objects
	for i, doc := range docSep.Split(stream, -1) {
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			t.Fatalf("document %d: %v\n%s", i, err, doc)
		}
		if head.Kind == "" {
			if strings.TrimSpace(stripComments(doc)) != "" {
				t.Fatalf("document %d has no kind:\n%s", i, doc)
			}
			continue
		}
		var v any
		switch head.APIVersion + " " + head.Kind {
		case "apps/v1 DaemonSet":
			x := &appsv1.DaemonSet{}
			o.daemonSets, v = append(o.daemonSets, x), x
		case "apps/v1 Deployment":
			x := &appsv1.Deployment{}
			o.deployments, v = append(o.deployments, x), x
		case "batch/v1 Job":
			x := &batchv1.Job{}
			o.jobs, v = append(o.jobs, x), x
		case "v1 Secret":
			x := &corev1.Secret{}
			o.secrets, v = append(o.secrets, x), x
		default:
			t.Fatalf("document %d: unexpected %s %s", i, head.APIVersion, head.Kind)
		}
		if err := strictDecode([]byte(doc), v); err != nil {
			t.Fatalf("document %d (%s): %v\n%s", i, head.Kind, err, doc)
		}
	}
	return o
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func mustRender(t *testing.T, args ...string) objects {
	t.Helper()
	out, errOut, err := render(t, args...)
	if err != nil {
		t.Fatalf("helm template %v: %v\n%s", args, err, errOut)
	}
	return decodeAll(t, out)
}

// A misspelled field is refused; encoding/json's case-insensitive match
// (which sigs.k8s.io/yaml.UnmarshalStrict uses) would let it through.
func TestStrictDecodingRefusesMisspelledFields(t *testing.T) {
	doc := []byte(`
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  containers:
    - name: c
      image: i
      securityContext:
        readOnlyRootFileSystem: true
`)
	var lax corev1.Pod
	if err := yaml.UnmarshalStrict(doc, &lax); err != nil {
		t.Logf("note: sigs.k8s.io/yaml.UnmarshalStrict refused it too: %v", err)
	} else if sc := lax.Spec.Containers[0].SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil {
		t.Logf("note: the case-insensitive decode dropped the field")
	} else {
		t.Logf("a case-insensitive decode took readOnlyRootFileSystem as readOnlyRootFilesystem: %v", *sc.ReadOnlyRootFilesystem)
	}
	var pod corev1.Pod
	err := strictDecode(doc, &pod)
	if err == nil || !strings.Contains(err.Error(), "readOnlyRootFileSystem") {
		t.Fatalf("strict decode of readOnlyRootFileSystem: %v, want an error naming the field", err)
	}
	for _, bad := range []string{"unknownField: 1", "runAsUser: 1\n        runAsUser: 2"} {
		d := bytes.Replace(doc, []byte("readOnlyRootFileSystem: true"), []byte(bad), 1)
		if err := strictDecode(d, &corev1.Pod{}); err == nil {
			t.Errorf("strict decode accepted %q", bad)
		}
	}
}

// Without a key the chart refuses to render and names the value to set.
func TestTemplateWithoutKeyNamesTheValue(t *testing.T) {
	_, errOut, err := render(t)
	if err == nil {
		t.Fatal("helm template without a key succeeded")
	}
	if !strings.Contains(errOut, "apiKey.existingSecret") {
		t.Errorf("helm template without a key: %q does not name apiKey.existingSecret", errOut)
	}
}

// checkPod checks what every pod of the chart and the examples promise.
// initOK names init containers allowed to run as root with CHOWN alone.
func checkPod(t *testing.T, what string, spec corev1.PodSpec, initOK ...string) {
	t.Helper()
	psc := spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser != 65532 {
		t.Errorf("%s: pod securityContext %+v, want runAsNonRoot and runAsUser 65532", what, psc)
	}
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: pod seccomp profile is not RuntimeDefault", what)
	}
	if spec.HostNetwork || spec.HostPID || spec.HostIPC {
		t.Errorf("%s: shares a host namespace", what)
	}
	all := append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...)
	for _, c := range all {
		w := what + " container " + c.Name
		sc := c.SecurityContext
		if sc == nil {
			t.Errorf("%s: no securityContext", w)
			continue
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("%s: root filesystem not read-only", w)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("%s: privilege escalation not refused", w)
		}
		if sc.Privileged != nil && *sc.Privileged {
			t.Errorf("%s: privileged", w)
		}
		if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
			t.Errorf("%s: capabilities do not drop ALL", w)
		}
		if slices.Contains(initOK, c.Name) {
			if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Add, []corev1.Capability{"CHOWN"}) {
				t.Errorf("%s: adds %v, want CHOWN alone", w, sc.Capabilities)
			}
			continue
		}
		if sc.Capabilities != nil && len(sc.Capabilities.Add) > 0 {
			t.Errorf("%s: adds capabilities %v", w, sc.Capabilities.Add)
		}
		if sc.RunAsUser != nil && *sc.RunAsUser == 0 || sc.RunAsNonRoot != nil && !*sc.RunAsNonRoot {
			t.Errorf("%s: runs as root", w)
		}
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				t.Errorf("%s: env %s comes from a Secret: the key must be a file", w, e.Name)
			}
			if strings.Contains(e.Name, "API_KEY") && e.Name != "TRACESYNC_API_KEY_FILE" {
				t.Errorf("%s: env %s looks like a key in the environment", w, e.Name)
			}
		}
		if len(c.EnvFrom) > 0 {
			t.Errorf("%s: envFrom %v: the key must never be in the environment", w, c.EnvFrom)
		}
	}
}

// tracesyncContainer checks the daemon's container: probes, resources,
// GOMEMLIMIT from the limit, the key file.
func checkDaemonContainer(t *testing.T, what string, spec corev1.PodSpec, c corev1.Container) {
	t.Helper()
	probe := func(name string, p *corev1.Probe, path string) {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != path || p.HTTPGet.Port.String() != "metrics" {
			t.Errorf("%s: %s probe %+v, want GET %s on port metrics", what, name, p, path)
		}
	}
	probe("startup", c.StartupProbe, "/healthz")
	probe("liveness", c.LivenessProbe, "/healthz")
	probe("readiness", c.ReadinessProbe, "/readyz")
	if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == "metrics" }) {
		t.Errorf("%s: no metrics port", what)
	}
	if !slices.ContainsFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, "--metrics-addr=:") }) {
		t.Errorf("%s: args %q lack --metrics-addr=:PORT", what, c.Args)
	}
	checkResources(t, what, c)
	checkKeyFile(t, what, spec, c)
}

func checkResources(t *testing.T, what string, c corev1.Container) {
	t.Helper()
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Requests[r]; !ok {
			t.Errorf("%s: no %s request", what, r)
		}
		if _, ok := c.Resources.Limits[r]; !ok {
			t.Errorf("%s: no %s limit", what, r)
		}
	}
	i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "GOMEMLIMIT" })
	if i < 0 || c.Env[i].ValueFrom == nil || c.Env[i].ValueFrom.ResourceFieldRef == nil ||
		c.Env[i].ValueFrom.ResourceFieldRef.Resource != "limits.memory" || c.Env[i].ValueFrom.ResourceFieldRef.ContainerName != c.Name {
		t.Errorf("%s: GOMEMLIMIT is not this container's limits.memory (downward API)", what)
	}
}

// checkKeyFile: TRACESYNC_API_KEY_FILE names a file on a read-only mount
// of a Secret volume.
func checkKeyFile(t *testing.T, what string, spec corev1.PodSpec, c corev1.Container) {
	t.Helper()
	i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "TRACESYNC_API_KEY_FILE" })
	if i < 0 {
		t.Errorf("%s: no TRACESYNC_API_KEY_FILE", what)
		return
	}
	file := c.Env[i].Value
	for _, m := range c.VolumeMounts {
		if filepath.Dir(file) != m.MountPath {
			continue
		}
		if !m.ReadOnly {
			t.Errorf("%s: the key's mount %s is writable", what, m.MountPath)
		}
		for _, v := range spec.Volumes {
			if v.Name == m.Name {
				if v.Secret == nil || v.Secret.DefaultMode == nil || *v.Secret.DefaultMode != 0o440 {
					t.Errorf("%s: the key's volume %s is not a Secret with mode 0440", what, v.Name)
				}
				if v.Secret != nil && !slices.ContainsFunc(v.Secret.Items, func(k corev1.KeyToPath) bool { return k.Path == filepath.Base(file) }) {
					t.Errorf("%s: the Secret volume has no item at %s", what, filepath.Base(file))
				}
				return
			}
		}
	}
	t.Errorf("%s: TRACESYNC_API_KEY_FILE %s is on no volume mount", what, file)
}

func container(t *testing.T, cs []corev1.Container, name string) corev1.Container {
	t.Helper()
	i := slices.IndexFunc(cs, func(c corev1.Container) bool { return c.Name == name })
	if i < 0 {
		t.Fatalf("no container %s", name)
	}
	return cs[i]
}

func volume(t *testing.T, spec corev1.PodSpec, name string) corev1.Volume {
	t.Helper()
	i := slices.IndexFunc(spec.Volumes, func(v corev1.Volume) bool { return v.Name == name })
	if i < 0 {
		t.Fatalf("no volume %s", name)
	}
	return spec.Volumes[i]
}

// The node agent: one DaemonSet with the state on the node per namespace
// and release, read-only trace folders, maxSurge 0, the init step.
func TestDaemonSet(t *testing.T) {
	for _, values := range []string{"", "ci/agent-values.yaml"} {
		t.Run("values="+values, func(t *testing.T) {
			args := []string{"--set", "apiKey.existingSecret=tracesync-api-key"}
			if values != "" {
				args = []string{"-f", filepath.Join(chartDir, values)}
			}
			o := mustRender(t, args...)
			if len(o.daemonSets) != 1 || len(o.jobs) != 0 {
				t.Fatalf("%d DaemonSets and %d Jobs, want 1 and 0", len(o.daemonSets), len(o.jobs))
			}
			ds := o.daemonSets[0]
			spec := ds.Spec.Template.Spec
			checkPod(t, "DaemonSet", spec, "prepare-state")
			ru := ds.Spec.UpdateStrategy.RollingUpdate
			if ds.Spec.UpdateStrategy.Type != appsv1.RollingUpdateDaemonSetStrategyType || ru == nil || ru.MaxSurge == nil || ru.MaxSurge.IntValue() != 0 || ru.MaxSurge.String() != "0" {
				t.Errorf("updateStrategy %+v, want RollingUpdate with maxSurge 0", ds.Spec.UpdateStrategy)
			}
			if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
				t.Errorf("the service account token is mounted: tracesync needs no Kubernetes API")
			}
			c := container(t, spec.Containers, "tracesync")
			checkDaemonContainer(t, "DaemonSet", spec, c)

			state := volume(t, spec, "state")
			want := "/var/lib/tracesync/" + namespace + "-" + release
			if state.HostPath == nil || state.HostPath.Path != want || state.HostPath.Type == nil || *state.HostPath.Type != corev1.HostPathDirectoryOrCreate {
				t.Errorf("state volume %+v, want hostPath %s (DirectoryOrCreate)", state.VolumeSource, want)
			}
			init := container(t, spec.InitContainers, "prepare-state")
			if !slices.Equal(init.Args, []string{"state-dir", "prepare", "/var/lib/tracesync", "--uid", "65532", "--gid", "65532"}) {
				t.Errorf("init args %q", init.Args)
			}
			if init.SecurityContext.RunAsUser == nil || *init.SecurityContext.RunAsUser != 0 {
				t.Errorf("prepare-state does not run as root: it cannot chown")
			}
			// Every hostPath but the state is a trace folder, mounted read-only.
			for _, v := range spec.Volumes {
				if v.HostPath == nil || v.Name == "state" {
					continue
				}
				if !strings.HasPrefix(v.Name, "traces-") {
					t.Errorf("unexpected hostPath volume %s (%s)", v.Name, v.HostPath.Path)
				}
				i := slices.IndexFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == v.Name })
				if i < 0 || !c.VolumeMounts[i].ReadOnly || c.VolumeMounts[i].MountPath != v.HostPath.Path {
					t.Errorf("trace folder %s: not mounted read-only at its own path", v.HostPath.Path)
				}
				if !slices.Contains(c.Args, v.HostPath.Path) {
					t.Errorf("trace folder %s is mounted but not watched (args %q)", v.HostPath.Path, c.Args)
				}
			}
			if spec.TerminationGracePeriodSeconds == nil || *spec.TerminationGracePeriodSeconds <= 25 {
				t.Errorf("terminationGracePeriodSeconds %v: must exceed --shutdown-timeout", spec.TerminationGracePeriodSeconds)
			}
		})
	}
}

// The sharded backfill: an Indexed Job whose shard argument's N is its
// completions, state on an emptyDir, the archive read-only.
func TestBackfillJob(t *testing.T) {
	o := mustRender(t, "-f", filepath.Join(chartDir, "ci/backfill-values.yaml"))
	if len(o.jobs) != 1 || len(o.daemonSets) != 0 || len(o.secrets) != 1 {
		t.Fatalf("%d Jobs, %d DaemonSets, %d Secrets; want 1, 0, 1", len(o.jobs), len(o.daemonSets), len(o.secrets))
	}
	job := o.jobs[0]
	spec := job.Spec.Template.Spec
	checkPod(t, "Job", spec)
	if job.Spec.CompletionMode == nil || *job.Spec.CompletionMode != batchv1.IndexedCompletion {
		t.Errorf("completionMode %v, want Indexed", job.Spec.CompletionMode)
	}
	if job.Spec.Completions == nil || *job.Spec.Completions != 6 {
		t.Fatalf("completions %v, want 6 (ci/backfill-values.yaml)", job.Spec.Completions)
	}
	c := container(t, spec.Containers, "backfill")
	want := fmt.Sprintf("--shard=$(JOB_COMPLETION_INDEX)/%d", *job.Spec.Completions)
	if len(c.Args) == 0 || c.Args[0] != "backfill" || !slices.Contains(c.Args, want) {
		t.Errorf("args %q, want backfill ... %s", c.Args, want)
	}
	checkResources(t, "Job", c)
	checkKeyFile(t, "Job", spec, c)
	if v := volume(t, spec, "state"); v.EmptyDir == nil {
		t.Errorf("backfill state %+v, want an emptyDir", v.VolumeSource)
	}
	if v := volume(t, spec, "archive"); v.PersistentVolumeClaim == nil || !v.PersistentVolumeClaim.ReadOnly {
		t.Errorf("archive volume %+v, want the read-only claim of the values", v.VolumeSource)
	}
	for _, m := range c.VolumeMounts {
		if m.Name == "archive" && !m.ReadOnly {
			t.Errorf("archive mounted writable")
		}
	}
	s := o.secrets[0]
	if s.StringData["api-key"] == "" || volume(t, spec, "api-key").Secret.SecretName != s.Name {
		t.Errorf("apiKey.value: the chart's Secret %s is not the one mounted", s.Name)
	}
}

// The sidecar example: a native sidecar (an init container that restarts
// Always) sharing an emptyDir with the app, draining on exit.
func TestSidecarExample(t *testing.T) {
	b, err := os.ReadFile("../../examples/sidecar.yaml")
	if err != nil {
		t.Fatal(err)
	}
	o := decodeAll(t, string(b))
	if len(o.deployments) != 1 {
		t.Fatalf("%d Deployments, want 1", len(o.deployments))
	}
	spec := o.deployments[0].Spec.Template.Spec
	checkPod(t, "sidecar example", spec)
	side := container(t, spec.InitContainers, "tracesync")
	if side.RestartPolicy == nil || *side.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Errorf("the sidecar's restartPolicy is %v, want Always (a native sidecar)", side.RestartPolicy)
	}
	if !slices.Contains(side.Args, "--drain-on-exit") {
		t.Errorf("sidecar args %q lack --drain-on-exit", side.Args)
	}
	checkDaemonContainer(t, "sidecar example", spec, side)
	app := container(t, spec.Containers, "agent")
	shared := false
	for _, m := range side.VolumeMounts {
		for _, am := range app.VolumeMounts {
			if m.Name == am.Name && volume(t, spec, m.Name).EmptyDir != nil {
				shared = true
			}
		}
	}
	if !shared {
		t.Errorf("the sidecar and the app share no emptyDir")
	}
}

// The same misspelling in a real manifest (the sidecar example) is caught.
func TestStrictDecodingCatchesMisspelledSidecar(t *testing.T) {
	b, err := os.ReadFile("../../examples/sidecar.yaml")
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Replace(b, []byte("readOnlyRootFilesystem"), []byte("readOnlyRootFileSystem"), 1)
	if bytes.Equal(bad, b) {
		t.Fatal("the example has no readOnlyRootFilesystem to misspell")
	}
	err = strictDecode(bad, &appsv1.Deployment{})
	if err == nil || !strings.Contains(err.Error(), "readOnlyRootFileSystem") {
		t.Fatalf("strict decode of the misspelled example: %v, want an error naming readOnlyRootFileSystem", err)
	}
}
