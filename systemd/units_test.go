package systemd

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// unit is a parsed unit file: section -> key -> values in order (keys may
// repeat, as SystemCallFilter= does).
type unit map[string]map[string][]string

// parseUnit reads a unit file the way systemd does for what these tests
// need: [Section] headers, "#" and ";" comments, Key=Value with a trailing
// "\" continuing the line.
func parseUnit(t *testing.T, path string) unit {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read unit: %v", err)
	}
	u := unit{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	var cont string
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if cont != "" {
			line = cont + " " + line
			cont = ""
		}
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if strings.HasSuffix(line, `\`) {
			cont = strings.TrimSuffix(line, `\`)
			continue
		}
		if line[0] == '[' {
			if !strings.HasSuffix(line, "]") {
				t.Fatalf("%s:%d: bad section header %q", path, n, line)
			}
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || section == "" {
			t.Fatalf("%s:%d: not a Key=Value line in a section: %q", path, n, line)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		u[section][k] = append(u[section][k], v)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

// last is the effective value of a single-valued key ("" when absent).
func (u unit) last(section, key string) string {
	vs := u[section][key]
	if len(vs) == 0 {
		return ""
	}
	return vs[len(vs)-1]
}

// systemdDuration parses the unit time spans these units use: "45s",
// "5min", "60s", "2min 30s".
func systemdDuration(t *testing.T, s string) time.Duration {
	t.Helper()
	var total time.Duration
	for _, f := range strings.Fields(s) {
		m := regexp.MustCompile(`^(\d+)(ms|s|sec|min|m|h)?$`).FindStringSubmatch(f)
		if m == nil {
			t.Fatalf("cannot parse time span %q", s)
		}
		n, _ := strconv.Atoi(m[1])
		unit := map[string]time.Duration{"": time.Second, "ms": time.Millisecond, "s": time.Second, "sec": time.Second, "min": time.Minute, "m": time.Minute, "h": time.Hour}[m[2]]
		total += time.Duration(n) * unit
	}
	return total
}

// defaultShutdownTimeout is tracesync run's --shutdown-timeout default
// (cmd/tracesync); TimeoutStopSec= must leave room above it.
const defaultShutdownTimeout = 30 * time.Second

var unitFiles = []string{"tracesync.service", "tracesync@.service"}

func TestUnitsEssentialDirectives(t *testing.T) {
	for _, name := range unitFiles {
		t.Run(name, func(t *testing.T) {
			u := parseUnit(t, name)
			want := map[string]string{
				"Type":                     "notify",
				"NotifyAccess":             "main",
				"ExecStart":                "/usr/bin/tracesync run",
				"Restart":                  "on-failure",
				"RestartPreventExitStatus": "2", // exitUsage: a configuration error is not fixed by a restart
				"User":                     "tracesync",
				"LoadCredential":           "api-key:/etc/tracesync/api-key",
				"NoNewPrivileges":          "yes",
				"CapabilityBoundingSet":    "",
				"AmbientCapabilities":      "",
				"ProtectSystem":            "strict",
				"ProtectHome":              "yes",
				"PrivateTmp":               "yes",
				"PrivateDevices":           "yes",
				"RestrictAddressFamilies":  "AF_INET AF_INET6 AF_UNIX",
				"SystemCallArchitectures":  "native",
				"MemoryDenyWriteExecute":   "yes",
				"RestrictNamespaces":       "yes",
				"LockPersonality":          "yes",
				"UMask":                    "0077",
				"StateDirectoryMode":       "0700",
				"LogRateLimitIntervalSec":  "30s",
				"ProtectKernelTunables":    "yes",
				"ProtectControlGroups":     "yes",
				"ProtectKernelModules":     "yes",
				"RestrictSUIDSGID":         "yes",
				"RestrictRealtime":         "yes",
				"ProtectClock":             "yes",
				"ProtectHostname":          "yes",
				"ProtectKernelLogs":        "yes",
				"PrivateUsers":             "yes",
				"PrivateMounts":            "yes",
				"ProtectProc":              "invisible",
				"ProcSubset":               "pid",
				"SystemCallErrorNumber":    "EPERM",
				"DevicePolicy":             "closed",
				"KeyringMode":              "private",
				"RemoveIPC":                "yes",
				"PrivateIPC":               "yes",
				"RestrictFileSystems":      "", // not used: absent
				"ReadWritePaths":           "", // nothing but the state directory is writable
				"DynamicUser":              "", // a fixed system user owns the state
				"ExecStartPre":             "", // nothing runs before the daemon
				"SupplementaryGroups":      "", // opt-in per host, see the comments
				"IPAddressDeny":            "", // the API's address is not known in advance
				"PrivateNetwork":           "", // it needs the network
			}
			for k, v := range want {
				if got := u.last("Service", k); got != v {
					t.Errorf("[Service] %s: got %q, want %q", k, got, v)
				}
			}
			if len(u["Service"]["AmbientCapabilities"]) == 0 || len(u["Service"]["CapabilityBoundingSet"]) == 0 {
				t.Errorf("[Service] CapabilityBoundingSet= and AmbientCapabilities= must be present and empty (no capabilities)")
			}

			// Go exits with status 2 on a panic and on SIGABRT (the watchdog's
			// signal), the status RestartPreventExitStatus= keeps for
			// configuration errors; GOTRACEBACK=crash makes both die by
			// SIGABRT, which is restarted.
			if !contains(u["Service"]["Environment"], "GOTRACEBACK=crash") {
				t.Errorf("[Service] Environment: got %q, want GOTRACEBACK=crash (else a panic or a watchdog kill exits 2 and is never restarted)", u["Service"]["Environment"])
			}
			if got := u.last("Service", "WatchdogSignal"); got != "" && got != "SIGABRT" {
				t.Errorf("[Service] WatchdogSignal: got %q, want the default SIGABRT (goroutine dump)", got)
			}
			if got := u.last("Service", "LimitCORE"); got != "0" {
				t.Errorf("[Service] LimitCORE: got %q, want 0 (a core file would hold the API key)", got)
			}

			filters := u["Service"]["SystemCallFilter"]
			if len(filters) == 0 || filters[0] != "@system-service" {
				t.Errorf("[Service] SystemCallFilter: got %q, want @system-service first", filters)
			}
			if !contains(filters, "~@privileged @resources") {
				t.Errorf("[Service] SystemCallFilter: got %q, want ~@privileged @resources too", filters)
			}

			stop := systemdDuration(t, u.last("Service", "TimeoutStopSec"))
			if stop <= defaultShutdownTimeout {
				t.Errorf("TimeoutStopSec %v must be above --shutdown-timeout's default %v, or in-flight uploads are killed", stop, defaultShutdownTimeout)
			}
			wd := systemdDuration(t, u.last("Service", "WatchdogSec"))
			if wd < 10*time.Second {
				t.Errorf("WatchdogSec %v: want at least 10s (pings go every half of it from a loop that also does work)", wd)
			}
			burst, err := strconv.Atoi(u.last("Service", "LogRateLimitBurst"))
			if err != nil || burst < 10000 {
				t.Errorf("LogRateLimitBurst %q: want a number of at least journald's default 10000", u.last("Service", "LogRateLimitBurst"))
			}
			if got := u.last("Unit", "After"); !strings.Contains(got, "network-online.target") {
				t.Errorf("[Unit] After: got %q, want network-online.target", got)
			}
			if got := u.last("Install", "WantedBy"); got != "multi-user.target" {
				t.Errorf("[Install] WantedBy: got %q, want multi-user.target", got)
			}
		})
	}
}

func TestUnitsStateAndEnvironmentPerInstance(t *testing.T) {
	single := parseUnit(t, "tracesync.service")
	if got := single.last("Service", "StateDirectory"); got != "tracesync" {
		t.Errorf("tracesync.service StateDirectory: got %q, want tracesync", got)
	}
	if got := single["Service"]["EnvironmentFile"]; !equal(got, []string{"-/etc/tracesync/tracesync.env"}) {
		t.Errorf("tracesync.service EnvironmentFile: got %q, want the optional -/etc/tracesync/tracesync.env", got)
	}

	tmpl := parseUnit(t, "tracesync@.service")
	if got := tmpl.last("Service", "StateDirectory"); got != "tracesync/%i" {
		t.Errorf("tracesync@.service StateDirectory: got %q, want tracesync/%%i (one state per instance)", got)
	}
	if got := tmpl["Service"]["EnvironmentFile"]; !equal(got, []string{"/etc/tracesync/%i.env"}) {
		t.Errorf("tracesync@.service EnvironmentFile: got %q, want only the instance's /etc/tracesync/%%i.env", got)
	}
}

// TestEnvExampleCoversEveryFlag checks that the example env file names every
// setting the service reads, each commented out with an explanation above it.
func TestEnvExampleCoversEveryFlag(t *testing.T) {
	b, err := os.ReadFile("tracesync.env.example")
	if err != nil {
		t.Fatal(err)
	}
	flags := []string{"workers", "include", "exclude", "settle", "settle-timeout", "rescan-interval",
		"delete-on-remove", "max-delete", "retention", "max-file-size", "rate-limit", "metrics-addr", "shutdown-timeout",
		"no-recursive", "follow-symlinks", "poll", "root-marker", "state-dir", "base-url", "api-key-file",
		"organization-id", "project-id", "project", "log-level", "log-format"}
	vars := []string{"TRACESYNC_DIRS", "LAYERLENS_STRATIX_API_KEY"}
	for _, f := range flags {
		vars = append(vars, "TRACESYNC_"+strings.ToUpper(strings.ReplaceAll(f, "-", "_")))
	}
	lines := strings.Split(string(b), "\n")
	for _, v := range vars {
		found := false
		for i, l := range lines {
			if !strings.HasPrefix(l, "#"+v+"=") {
				continue
			}
			found = true
			if i == 0 || !strings.HasPrefix(lines[i-1], "# ") && !strings.HasPrefix(lines[i-1], "#TRACESYNC_") && !strings.HasPrefix(lines[i-1], "#LAYERLENS_") {
				t.Errorf("%s has no explanation above it", v)
			}
		}
		if !found {
			t.Errorf("tracesync.env.example does not show %s (as a commented-out #%s=... line)", v, v)
		}
	}
	for i, l := range lines {
		if l != "" && !strings.HasPrefix(l, "#") {
			t.Errorf("line %d is an active setting %q: the example sets nothing, every line is commented", i+1, l)
		}
	}
}

// TestSystemdAnalyzeSecurity runs systemd-analyze's offline security review
// on both units: the exposure must be 1.5 or lower ("OK").
func TestSystemdAnalyzeSecurity(t *testing.T) {
	analyze := lookSystemdAnalyze(t)
	re := regexp.MustCompile(`Overall exposure level for \S+: (\d+\.\d+) (\S+)`)
	for _, name := range unitFiles {
		out, err := exec.Command(analyze, "security", "--offline=yes", "--no-pager", name).CombinedOutput()
		if err != nil {
			t.Fatalf("systemd-analyze security %s: %v\n%s", name, err, out)
		}
		m := re.FindSubmatch(out)
		if m == nil {
			t.Fatalf("systemd-analyze security %s: no overall exposure line in:\n%s", name, out)
		}
		score, _ := strconv.ParseFloat(string(m[1]), 64)
		t.Logf("systemd-analyze security --offline=yes %s: %s %s", name, m[1], m[2])
		if score > 1.5 {
			t.Errorf("%s: exposure %.1f %s, want 1.5 or lower (OK)", name, score, m[2])
		}
	}
}

// TestSystemdAnalyzeVerify runs systemd-analyze verify on both units inside
// a scratch root: the unit installed where systemd looks for it, a stand-in
// executable at /usr/bin/tracesync (verify only checks that ExecStart names
// an executable), /bin/kill for ExecReload, and the host's own system units
// for the targets the units reference. Clean means no output at all:
// verify exits 0 even when it ignores a bad line.
func TestSystemdAnalyzeVerify(t *testing.T) {
	analyze := lookSystemdAnalyze(t)
	var sysUnits string
	for _, d := range []string{"/usr/lib/systemd/system", "/lib/systemd/system"} {
		if _, err := os.Stat(filepath.Join(d, "multi-user.target")); err == nil {
			sysUnits = d
			break
		}
	}
	if sysUnits == "" {
		t.Skip("no systemd system units on this machine (multi-user.target not found): cannot verify dependencies")
	}
	kill, err := exec.LookPath("kill")
	if err != nil || !strings.HasPrefix(kill, "/") {
		t.Skip("no kill executable to stand in for /bin/kill")
	}

	root := t.TempDir()
	copyTree(t, sysUnits, filepath.Join(root, "usr/lib/systemd/system"))
	writeFile(t, filepath.Join(root, "usr/bin/tracesync"), []byte("#!/bin/sh\n"), 0o755)
	copyFile(t, kill, filepath.Join(root, "bin/kill"), 0o755)
	for _, name := range unitFiles {
		copyFile(t, name, filepath.Join(root, "etc/systemd/system", name), 0o644)
	}
	for _, name := range []string{"tracesync.service", "tracesync@agents.service"} {
		out, err := exec.Command(analyze, "verify", "--root="+root, "--man=no", "--generators=no", name).CombinedOutput()
		if err != nil || len(bytes.TrimSpace(out)) != 0 {
			t.Errorf("systemd-analyze verify %s: err %v, want no output, got:\n%s", name, err, out)
		}
	}
}

func lookSystemdAnalyze(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed (apt-get install systemd): unit checks by systemd itself skipped")
	}
	return p
}

func copyTree(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(dst, 0o755)
		case d.Type()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(target, dst)
		case d.Type().IsRegular():
			copyFile(t, p, dst, 0o644)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("copy %s: %v", from, err)
	}
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, in); err != nil {
		t.Fatal(err)
	}
	writeFile(t, to, buf.Bytes(), mode)
}

func writeFile(t *testing.T, path string, b []byte, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, mode); err != nil {
		t.Fatal(err)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
