package main

// End-to-end tests of a state directory that stops taking writes (issue 7,
// local faults), with the real binary against stratixtest on a real port
// and the state on a real file system: a tmpfs that fills up, a tmpfs
// mounted read-only, an ext4 image that the kernel turns read-only under a
// running daemon, and a directory the daemon's user may not write. Each
// must end loud (a non-zero exit naming the state and the cause) and safe:
// once the directory takes writes again, the next start creates nothing
// twice and uploads everything.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tracesync/tracesync/client/stratixtest"
	"github.com/tracesync/tracesync/store"
)

// statefsLimit bounds every wait of these tests: a hang guard, not a speed
// assertion.
const statefsLimit = time.Minute

// statefsMount mounts a tmpfs of size bytes on a new directory and unmounts
// it (lazily if it is busy) at cleanup. It skips the test where mounting is
// not permitted.
func statefsMount(t *testing.T, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root (CAP_SYS_ADMIN): state directory faults not tested")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0755", size)); err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
			t.Skipf("cannot mount a tmpfs (%v): state directory faults not tested", err)
		}
		t.Fatalf("mount tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() { statefsUnmount(t, dir) })
	return dir
}

// statefsUnmount unmounts dir, lazily when it is still busy.
func statefsUnmount(t *testing.T, dir string) {
	t.Helper()
	if err := unix.Unmount(dir, 0); err != nil {
		if err2 := unix.Unmount(dir, unix.MNT_DETACH); err2 != nil {
			t.Errorf("unmount %s: %v; lazy unmount: %v", dir, err, err2)
		}
	}
}

// statefsRemount remounts the tmpfs at dir read-only or read-write.
func statefsRemount(t *testing.T, dir string, readOnly bool) {
	t.Helper()
	flags := uintptr(unix.MS_REMOUNT)
	if readOnly {
		flags |= unix.MS_RDONLY
	}
	if err := unix.Mount("", dir, "", flags, ""); err != nil {
		t.Fatalf("remount %s (read-only %v): %v", dir, readOnly, err)
	}
}

// statefsFill writes a file of zeros at name until the file system is full
// (ENOSPC) and returns its path. Zeros written, not a sparse size: tmpfs
// charges only pages that hold data.
func statefsFill(t *testing.T, name string) string {
	t.Helper()
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				break
			}
			t.Fatalf("fill %s: %v", name, err)
		}
	}
	// The last chunk may have stopped part-way: take any page left too.
	for {
		if _, err := f.Write(buf[:512]); err != nil {
			break
		}
	}
	var st unix.Statfs_t
	if err := unix.Statfs(filepath.Dir(name), &st); err != nil {
		t.Fatal(err)
	}
	if st.Bavail != 0 {
		t.Fatalf("after filling %s, %d blocks are still free", filepath.Dir(name), st.Bavail)
	}
	return name
}

// statefsUseState points e at stateDir for every later command.
func (e *e2eEnv) statefsUseState(stateDir string) {
	e.state = stateDir
	for i, kv := range e.env {
		if strings.HasPrefix(kv, "TRACESYNC_STATE_DIR=") {
			e.env[i] = "TRACESYNC_STATE_DIR=" + stateDir
		}
	}
}

// statefsWriteFiles writes n distinct small traces named prefix-NNN.json
// into root and returns their hashes.
// statefsCreatesInFlight starts a daemon on root that has uploaded 3 files,
// then slows creates down and writes 4 more, and returns once creates of
// those are running on the server: the daemon and every file's hash.
func (e *e2eEnv) statefsCreatesInFlight(t *testing.T, root string) (*proc, []string) {
	t.Helper()
	hashes := statefsWriteFiles(t, root, "before", 3)
	p := e.start("run", "--settle", "100ms", "--rescan-interval", "0", root)
	p.waitFor("the first files created", statefsLimit, func() bool { return allCreatedOnce(e.srv, hashes) })
	e.srv.SetLatency(stratixtest.EndpointCreate, 1500*time.Millisecond)
	hashes = append(hashes, statefsWriteFiles(t, root, "inflight", 4)...)
	p.waitFor("a create in flight", statefsLimit, func() bool { return e.srv.Calls(stratixtest.EndpointCreate) > 3 })
	return p, hashes
}

func statefsWriteFiles(t *testing.T, root, prefix string, n int) []string {
	t.Helper()
	hashes := make([]string, 0, n)
	for i := range n {
		name := fmt.Sprintf("%s-%03d.json", prefix, i)
		hashes = append(hashes, writeFile(t, root, name, traceJSON(fmt.Sprintf("statefs-%s-%d", prefix, i))))
	}
	return hashes
}

// statefsErrorLine is the process's last "tracesync: ..." line on stderr,
// the error Main prints before it exits.
func statefsErrorLine(stderr string) string {
	line := ""
	sc := bufio.NewScanner(strings.NewReader(stderr))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "tracesync: ") {
			line = sc.Text()
		}
	}
	return line
}

// statefsWantFailure checks that a tracesync that could not write its state
// exited with want and said which state path and why on its last line.
func statefsWantFailure(t *testing.T, what string, code int, stderr string, want int, path, cause string) {
	t.Helper()
	line := statefsErrorLine(stderr)
	if code != want {
		t.Fatalf("%s: exit %d, want %d\nstderr:\n%s", what, code, want, tail(stderr, 4000))
	}
	if !strings.Contains(line, path) || !strings.Contains(line, cause) {
		t.Fatalf("%s: error %q, want one naming %s and saying %q\nstderr:\n%s", what, line, path, cause, tail(stderr, 4000))
	}
	// The error also says what to do about it.
	fix := map[string]string{
		"no space left on device": "free space there",
		"read-only file system":   "make it writable again",
		"permission denied":       "fix its owner or mode",
	}[cause]
	if fix != "" && !strings.Contains(line, fix) {
		t.Fatalf("%s: error %q does not say what to do (want %q in it)", what, line, fix)
	}
	t.Logf("%s: exit %d: %s", what, code, line)
}

// statefsCreatedAtMostOnce fails when any content was created more than
// once, and logs how many were created.
func statefsCreatedAtMostOnce(t *testing.T, srv *stratixtest.Server, when string) {
	t.Helper()
	_, total := createsOf(srv, nil)
	for h, n := range srv.CreatesByHash() {
		if n > 1 {
			t.Fatalf("%s: content %s created %d times, want at most 1", when, h, n)
		}
	}
	t.Logf("%s: %d contents created", when, total)
}

// statefsLogState logs what a failed daemon left for the next start, read
// with `tracesync status` (which must work on a full disk): paths recorded
// as uploaded, and upload intents (creates that may have run unrecorded,
// for the next start to resolve).
func statefsLogState(t *testing.T, e *e2eEnv, when string) {
	t.Helper()
	st := e.status()
	t.Logf("%s: %d paths recorded as uploaded, %d upload intents left", when, st.Files["uploaded"], st.Intents)
}

// statefsSyncAll runs the daemon on root until every content of hashes is
// created, then stops it with SIGTERM and checks that each was created
// exactly once, nothing else was, the store records every path as uploaded
// and no upload intent is left.
func statefsSyncAll(t *testing.T, e *e2eEnv, root string, hashes []string) {
	t.Helper()
	p := e.start("run", "--settle", "100ms", "--rescan-interval", "0", root)
	p.waitFor(fmt.Sprintf("all %d contents created", len(hashes)), statefsLimit, func() bool {
		per, _ := createsOf(e.srv, hashes)
		for _, n := range per {
			if n == 0 {
				return false
			}
		}
		return true
	})
	p.waitFor("every file recorded as uploaded", statefsLimit, func() bool {
		st := e.status()
		return st.Files["uploaded"] == len(hashes) && st.Intents == 0
	})
	p.signal(syscall.SIGTERM)
	if code := p.wait(statefsLimit); code != 0 {
		t.Fatalf("SIGTERM after the state was repaired: exit %d, want 0\n%s", code, tail(p.stderr.String(), 4000))
	}
	per, total := createsOf(e.srv, hashes)
	for i, h := range hashes {
		if per[h] != 1 {
			t.Errorf("file %d (%s): created %d times, want 1", i, h, per[h])
		}
	}
	if total != len(hashes) {
		t.Errorf("%d creates in all, want %d (one per content)", total, len(hashes))
	}
	for path, row := range e.files() {
		if row.State != "uploaded" {
			t.Errorf("%s: %s (%q), want uploaded", path, row.State, row.LastError)
		}
	}
}

// The state directory's file system fills up: first under a running daemon
// (bbolt cannot grow the state file to record new files), then before a
// start (not even the pid file fits). Both times tracesync exits 1 with an
// error naming the state and saying the device is full, and it creates no
// content twice meanwhile; once space is freed, a restart uploads every
// file exactly once.
func TestE2EStateFSFull(t *testing.T) {
	t.Parallel()
	e := newE2E(t, stratixtest.Options{})
	mnt := statefsMount(t, 2<<20)
	e.statefsUseState(filepath.Join(mnt, "state"))
	stateFile := filepath.Join(e.state, "state.db")
	root := t.TempDir()

	// Uploads are in flight when the disk fills up: their creates run on
	// the server, and recording their traces needs the full disk (rule 9's
	// crash window, under a real ENOSPC).
	p, hashes := e.statefsCreatesInFlight(t, root)
	filler := statefsFill(t, filepath.Join(mnt, "filler"))
	// New files keep arriving. Recording 200 of them needs more pages than
	// the state file's freed ones: bbolt must grow it.
	hashes = append(hashes, statefsWriteFiles(t, root, "full", 200)...)
	code := p.wait(statefsLimit)
	e.srv.SetLatency(stratixtest.EndpointCreate, 0)
	statefsWantFailure(t, "daemon whose state disk filled up", code, p.stderr.String(), 1, stateFile, "no space left on device")
	statefsCreatedAtMostOnce(t, e.srv, "after the disk filled up")
	statefsLogState(t, e, "after the disk filled up")

	// Still full at the next start (the pid file the daemon removed on its
	// way out freed a page: take it too).
	filler2 := statefsFill(t, filepath.Join(mnt, "filler2"))
	before := e.srv.Calls(stratixtest.EndpointCreate)
	r := e.run("run", "--settle", "100ms", "--rescan-interval", "0", root)
	statefsWantFailure(t, "start on a full state disk", r.code, r.stderr, 1, e.state, "no space left on device")
	if n := e.srv.Calls(stratixtest.EndpointCreate); n != before {
		t.Fatalf("start on a full state disk: %d creates, want none (nothing can be recorded)", n-before)
	}

	// Space freed: a restart resolves what the full disk left and uploads
	// the rest, each content once.
	for _, f := range []string{filler, filler2} {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	statefsSyncAll(t, e, root, hashes)
}

// The state directory is read-only when tracesync starts: on a first start
// (the state directory cannot even be created) and on a later one (the
// state file cannot be opened for writing). Each exits 1 naming the state
// and saying the file system is read-only, before any upload; once the
// file system is writable again, every file is uploaded exactly once.
func TestE2EStateFSReadOnlyAtStart(t *testing.T) {
	t.Parallel()
	e := newE2E(t, stratixtest.Options{})
	mnt := statefsMount(t, 4<<20)
	e.statefsUseState(filepath.Join(mnt, "state"))
	stateFile := filepath.Join(e.state, "state.db")
	root := t.TempDir()
	hashes := statefsWriteFiles(t, root, "first", 3)

	// First start, read-only: the state directory cannot be created.
	statefsRemount(t, mnt, true)
	r := e.run("run", "--settle", "100ms", "--rescan-interval", "0", root)
	statefsWantFailure(t, "first start on a read-only state disk", r.code, r.stderr, 1, e.state, "read-only file system")
	if n := e.srv.Calls(stratixtest.EndpointCreate); n != 0 {
		t.Fatalf("first start on a read-only state disk: %d creates, want none", n)
	}

	// Writable: the daemon syncs and stops.
	statefsRemount(t, mnt, false)
	p := e.start("run", "--settle", "100ms", "--rescan-interval", "0", root)
	p.waitFor("the first files created", statefsLimit, func() bool { return allCreatedOnce(e.srv, hashes) })
	p.waitFor("the first files recorded", statefsLimit, func() bool { return e.status().Files["uploaded"] == len(hashes) })
	p.signal(syscall.SIGTERM)
	if code := p.wait(statefsLimit); code != 0 {
		t.Fatalf("SIGTERM: exit %d, want 0\n%s", code, tail(p.stderr.String(), 4000))
	}

	// Read-only again, with new files waiting: the state file cannot be
	// opened for writing.
	statefsRemount(t, mnt, true)
	hashes = append(hashes, statefsWriteFiles(t, root, "second", 5)...)
	before := e.srv.Calls(stratixtest.EndpointCreate)
	r = e.run("run", "--settle", "100ms", "--rescan-interval", "0", root)
	statefsWantFailure(t, "start on a read-only state disk", r.code, r.stderr, 1, stateFile, "read-only file system")
	if n := e.srv.Calls(stratixtest.EndpointCreate); n != before {
		t.Fatalf("start on a read-only state disk: %d creates, want none", n-before)
	}

	statefsRemount(t, mnt, false)
	statefsSyncAll(t, e, root, hashes)
}

// statefsExt4 mounts a new 16 MiB ext4 image with errors=remount-ro on a
// new directory and returns the image, the directory and the file that makes the
// kernel record a file system error (and so turn it read-only), as it does
// on a failing disk. It skips the test where loop devices, mkfs.ext4 or that
// file are missing.
func statefsExt4(t *testing.T) (img, mnt, trigger string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a file system image needs root: read-only-while-running not tested")
	}
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skip("no mkfs.ext4: read-only-while-running not tested")
	}
	img = filepath.Join(t.TempDir(), "state.ext4")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 16<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	mnt = t.TempDir()
	statefsMountImage(t, img, mnt)
	t.Cleanup(func() {
		if statefsIsMounted(mnt) {
			statefsUnmount(t, mnt)
		}
	})
	dev := statefsSource(t, mnt)
	trigger = filepath.Join("/sys/fs/ext4", filepath.Base(dev), "trigger_fs_error")
	if _, err := os.Stat(trigger); err != nil {
		t.Skipf("this kernel has no %s (%v): read-only-while-running not tested", trigger, err)
	}
	return img, mnt, trigger
}

// statefsMountImage mounts the ext4 image img on mnt through a loop device.
func statefsMountImage(t *testing.T, img, mnt string) {
	t.Helper()
	out, err := exec.Command("mount", "-t", "ext4", "-o", "loop,errors=remount-ro", img, mnt).CombinedOutput()
	if err != nil {
		t.Skipf("cannot mount an ext4 image on a loop device (%v: %s): read-only-while-running not tested", err, strings.TrimSpace(string(out)))
	}
}

// statefsMountInfo calls fn with the mount point and source of every mount.
func statefsMountInfo(fn func(mountPoint, source string)) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return err
	}
	for line := range strings.Lines(string(b)) {
		pre, post, ok := strings.Cut(line, " - ")
		fields, postFields := strings.Fields(pre), strings.Fields(post)
		if !ok || len(fields) < 5 || len(postFields) < 2 {
			continue
		}
		fn(fields[4], postFields[1])
	}
	return nil
}

func statefsIsMounted(dir string) bool {
	found := false
	_ = statefsMountInfo(func(mp, _ string) { found = found || mp == dir })
	return found
}

// statefsSource is the device mounted on dir, e.g. /dev/loop3.
func statefsSource(t *testing.T, dir string) string {
	t.Helper()
	src := ""
	if err := statefsMountInfo(func(mp, s string) {
		if mp == dir {
			src = s
		}
	}); err != nil {
		t.Fatal(err)
	}
	if src == "" {
		t.Fatalf("%s is not in /proc/self/mountinfo", dir)
	}
	return src
}

// An I/O error from the state store is explained by what the disk is now:
// on a file system that turned read-only (ext4 errors=remount-ro fails the
// sync in flight with EIO, not EROFS) it says read-only and names the state
// file; elsewhere it says the disk failed a write.
func TestExplainStateErrorIO(t *testing.T) {
	t.Parallel()
	commitEIO := fmt.Errorf("store: commit: %w", syscall.EIO)
	ro := statefsMount(t, 1<<20)
	statefsRemount(t, ro, true)
	got := explainStateError(commitEIO, ro).Error()
	for _, want := range []string{filepath.Join(ro, store.FileName), "read-only file system", "make it writable again"} {
		if !strings.Contains(got, want) {
			t.Errorf("EIO on a read-only file system: %q, want %q in it", got, want)
		}
	}
	rw := t.TempDir()
	got = explainStateError(commitEIO, rw).Error()
	if !strings.Contains(got, filepath.Join(rw, store.FileName)) || !strings.Contains(got, "failed a write") || strings.Contains(got, "read-only") {
		t.Errorf("EIO on a writable file system: %q, want the state file and a failed write, not read-only", got)
	}
}

// The state directory turns read-only under a running daemon. A tmpfs
// cannot be remounted read-only while a file on it is open for writing (the
// kernel answers EBUSY), so this is what happens on a failing disk: ext4
// mounted errors=remount-ro records an error and the kernel makes it
// read-only under the open state file. The daemon exits 1 naming the state
// file and saying it is read-only, without creating anything twice; after
// fsck and a fresh mount, a restart uploads every file exactly once.
func TestE2EStateFSReadOnlyWhileRunning(t *testing.T) {
	t.Parallel()
	e := newE2E(t, stratixtest.Options{})
	img, mnt, trigger := statefsExt4(t)
	e.statefsUseState(filepath.Join(mnt, "state"))
	stateFile := filepath.Join(e.state, "state.db")
	root := t.TempDir()

	// As above, uploads are in flight when the disk turns read-only.
	p, hashes := e.statefsCreatesInFlight(t, root)
	if err := os.WriteFile(trigger, []byte("1"), 0); err != nil {
		t.Fatalf("make the state file system fail: %v", err)
	}
	// Writes to the file system now fail with EROFS.
	if err := os.WriteFile(filepath.Join(mnt, "probe"), nil, 0o600); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("after the file system error, a new file on it: %v, want EROFS", err)
	}
	hashes = append(hashes, statefsWriteFiles(t, root, "after", 5)...)
	code := p.wait(statefsLimit)
	e.srv.SetLatency(stratixtest.EndpointCreate, 0)
	statefsWantFailure(t, "daemon whose state disk turned read-only", code, p.stderr.String(), 1, stateFile, "read-only file system")
	statefsCreatedAtMostOnce(t, e.srv, "after the state disk turned read-only")

	// Repair, as an operator would: unmount, fsck, mount.
	statefsUnmount(t, mnt)
	if out, err := exec.Command("e2fsck", "-f", "-y", img).CombinedOutput(); err != nil && exitCode(err) != 1 { // 1: errors corrected
		t.Fatalf("e2fsck: %v\n%s", err, out)
	}
	statefsMountImage(t, img, mnt)
	statefsLogState(t, e, "after fsck")
	statefsSyncAll(t, e, root, hashes)
}

// statefsAsNobody makes every later command of e run as nobody (uid and
// gid 65534) when the tests run as root, so that directory permissions
// apply (root passes them): a copy of the binary where nobody may run it,
// behind a wrapper that drops to nobody with setpriv and execs it. As
// another user, commands run as that user. It returns a directory anyone
// may enter, for the test's folders.
func (e *e2eEnv) statefsAsNobody(t *testing.T) string {
	t.Helper()
	base, err := os.MkdirTemp("", "tracesync-statefs-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, kv := range e.env {
		if strings.HasPrefix(kv, "HOME=") {
			e.env[i] = "HOME=" + base
		}
	}
	if os.Geteuid() != 0 {
		return base
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("running as root without setpriv: cannot run tracesync as another user, and root passes directory permissions")
	}
	data, err := os.ReadFile(e.bin)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(base, "tracesync")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	wrapper := filepath.Join(base, "tracesync-as-nobody")
	script := fmt.Sprintf("#!/bin/sh\nexec %s --reuid=65534 --regid=65534 --clear-groups %s \"$@\"\n", setpriv, bin)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(wrapper, "version").CombinedOutput(); err != nil {
		t.Skipf("cannot run tracesync as nobody (%v: %s)", err, strings.TrimSpace(string(out)))
	}
	e.bin = wrapper
	return base
}

// statefsChown gives path to the user the commands run as (nobody when
// the tests run as root).
func statefsChown(t *testing.T, path string) {
	t.Helper()
	if os.Geteuid() != 0 {
		return
	}
	if err := os.Chown(path, 65534, 65534); err != nil {
		t.Fatal(err)
	}
}

// The state directory is not writable by the daemon's user (chmod 0555):
// on a first start (no state file yet) and on a later one (the state file
// is there, but the pid file beside it cannot be created). Each time
// tracesync exits before any upload with an error naming the state path and
// saying permission denied; the exit code is 2, as for the other
// configuration errors (README, "Exit status": systemd does not restart on
// it; `tracesync check-config` reports the same directory as a
// configuration error, exit 2). Once the directory is writable, every file
// is uploaded exactly once.
func TestE2EStateFSNotWritable(t *testing.T) {
	t.Parallel()
	e := newE2E(t, stratixtest.Options{})
	base := e.statefsAsNobody(t)
	root := filepath.Join(base, "drop")
	state := filepath.Join(base, "state")
	e.statefsUseState(state)
	hashes := statefsWriteFiles(t, root, "first", 3)
	if err := os.Mkdir(state, 0o555); err != nil {
		t.Fatal(err)
	}
	var codes []int

	// check-config, what an operator runs first, says the same.
	cc := e.run("check-config", root)
	if cc.code != exitUsage || !strings.Contains(cc.stdout, state+" is not writable by this user") {
		t.Fatalf("check-config on an unwritable state directory: exit %d, want %d and %q in:\n%s%s", cc.code, exitUsage, state+" is not writable by this user", cc.stdout, cc.stderr)
	}

	r := e.run("run", "--settle", "100ms", "--rescan-interval", "0", root)
	codes = append(codes, r.code)
	statefsWantFailure(t, "first start with a state directory it may not write", r.code, r.stderr, r.code, filepath.Join(state, "state.db"), "permission denied")
	if n := e.srv.Calls(stratixtest.EndpointCreate); n != 0 {
		t.Fatalf("first start with an unwritable state directory: %d creates, want none", n)
	}

	// Made writable for the user: the daemon syncs.
	statefsChown(t, state)
	if err := os.Chmod(state, 0o700); err != nil {
		t.Fatal(err)
	}
	statefsSyncAll(t, e, root, hashes)

	// Not writable again, with new files waiting.
	if err := os.Chmod(state, 0o555); err != nil {
		t.Fatal(err)
	}
	hashes = append(hashes, statefsWriteFiles(t, root, "second", 4)...)
	before := e.srv.Calls(stratixtest.EndpointCreate)
	r = e.run("run", "--settle", "100ms", "--rescan-interval", "0", root)
	codes = append(codes, r.code)
	statefsWantFailure(t, "start with a state directory it may no longer write", r.code, r.stderr, r.code, state, "permission denied")
	if n := e.srv.Calls(stratixtest.EndpointCreate); n != before {
		t.Fatalf("start with an unwritable state directory: %d creates, want none", n-before)
	}

	if err := os.Chmod(state, 0o700); err != nil {
		t.Fatal(err)
	}
	statefsSyncAll(t, e, root, hashes)

	for i, code := range codes {
		if code != exitUsage {
			t.Errorf("start %d with a state directory the user may not write: exit %d, want %d", i+1, code, exitUsage)
		}
	}
}

// The read commands answer from a state directory on a read-only file
// system: after a daemon stopped because its state disk turned read-only,
// `tracesync status` and `tracesync files` are what the operator runs
// first, and they only read.
func TestE2EStateFSReadCommandsOnReadOnlyState(t *testing.T) {
	t.Parallel()
	e := newE2E(t, stratixtest.Options{})
	mnt := statefsMount(t, 4<<20)
	e.statefsUseState(filepath.Join(mnt, "state"))
	root := t.TempDir()
	hashes := statefsWriteFiles(t, root, "ro", 3)
	statefsSyncAll(t, e, root, hashes)

	statefsRemount(t, mnt, true)
	r := e.run("status", "--json")
	if r.code != 0 {
		t.Fatalf("status on a read-only state directory: exit %d: %s", r.code, r.stderr)
	}
	st := e.status()
	if st.Files["uploaded"] != len(hashes) || st.Intents != 0 {
		t.Errorf("status on a read-only state: %v uploaded and %d intents, want %d and 0", st.Files, st.Intents, len(hashes))
	}
	rows := e.files()
	if len(rows) != len(hashes) {
		t.Errorf("files on a read-only state: %d rows, want %d", len(rows), len(hashes))
	}
	// A command that writes says why it cannot.
	for p := range rows {
		r = e.run("forget", p)
		if r.code == 0 || !strings.Contains(r.stderr, "read-only") {
			t.Errorf("forget on a read-only state: exit %d, want a failure saying read-only:\n%s", r.code, r.stderr)
		}
		break
	}
}
