package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/tracesync/tracesync/client"
	"github.com/tracesync/tracesync/store"
)

// serviceUser is the user the packaged systemd units run as (User= in
// systemd/tracesync.service). check-config run by root checks the folders
// with its permissions.
const serviceUser = "tracesync"

// apiCheckTimeout bounds the API check: one organization discovery.
const apiCheckTimeout = 30 * time.Second

func newCheckConfigCmd(g *globals) *cobra.Command {
	var f syncFlags
	cmd := &cobra.Command{
		Use:   "check-config [flags] [DIR...]",
		Short: "Check the configuration, the API key, the API, the state and the folders",
		Long: `check-config checks what run would use, without syncing anything: the flags
and TRACESYNC_* environment, the API key, the API (it discovers the
organization and project), the state file, and each folder (DIR arguments,
else TRACESYNC_DIRS). It prints one line per check, "ok" or "FAIL" with what
to do, and exits 0 when all pass, 2 when the configuration needs fixing, and
1 when the API cannot be reached. Run it before systemctl restart.

Run by root, it checks that the tracesync service user can read each folder,
and it never creates the state file (the service does, as its own user).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCheckConfig(cmd.Context(), g, &f, args)
		},
	}
	addSyncFlags(cmd.Flags(), &f)
	return cmd
}

// checkReport prints check lines and remembers what kind of failure was seen.
type checkReport struct {
	w           io.Writer
	checks      int
	failures    int
	configBad   bool // a failure fixed in the configuration: exit 2
	unreachable bool // the API could not be reached: exit 1
}

func (r *checkReport) line(status, what, detail string) {
	fmt.Fprintf(r.w, "%-4s  %s: %s\n", status, what, detail)
}

func (r *checkReport) ok(what, format string, a ...any) {
	r.checks++
	r.line("ok", what, fmt.Sprintf(format, a...))
}

// fail records a configuration failure: what is wrong and what to do.
func (r *checkReport) fail(what, format string, a ...any) {
	r.checks++
	r.failures++
	r.configBad = true
	r.line("FAIL", what, fmt.Sprintf(format, a...))
}

// note is information that is not a failure.
func (r *checkReport) note(what, format string, a ...any) {
	r.line("note", what, fmt.Sprintf(format, a...))
}

func runCheckConfig(ctx context.Context, g *globals, f *syncFlags, args []string) error {
	r := &checkReport{w: g.stdout}
	svc := lookupServiceUser()

	if err := f.validate(); err != nil {
		for _, msg := range strings.Split(err.Error(), "\n") {
			r.fail("flags", "%s", msg)
		}
	} else {
		r.ok("flags", "valid (workers %s, settle %s, rescan every %s, delete-on-remove %t)", &f.workers, f.settle, f.rescanInterval, f.deleteOnRemove)
	}

	checkFolders(r, g, f, args, svc)

	target := checkAPI(ctx, r, g)
	checkState(r, g, target)

	switch {
	case r.failures == 0:
		fmt.Fprintf(g.stdout, "check-config: %s passed\n", countOf(r.checks, "check", "checks"))
		return nil
	case r.configBad:
		fmt.Fprintf(g.stdout, "check-config: %d of %d checks failed: fix the configuration, then run check-config again\n", r.failures, r.checks)
		return &exitError{code: exitUsage, err: errSilentFailure}
	default:
		fmt.Fprintf(g.stdout, "check-config: %d of %d checks failed: the API is unreachable\n", r.failures, r.checks)
		return &exitError{code: exitFailure, err: errSilentFailure}
	}
}

// svcAccount is the service user's identity, when check-config runs as root
// on a host where that user exists.
type svcAccount struct {
	name string
	uid  uint32
	gids []uint32
}

func lookupServiceUser() *svcAccount {
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup(serviceUser)
	if err != nil {
		return nil
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil
	}
	a := &svcAccount{name: u.Username, uid: uint32(uid)}
	ids, _ := u.GroupIds()
	if len(ids) == 0 {
		ids = []string{u.Gid}
	}
	for _, id := range ids {
		if gid, err := strconv.ParseUint(id, 10, 32); err == nil {
			a.gids = append(a.gids, uint32(gid))
		}
	}
	return a
}

func checkFolders(r *checkReport, g *globals, f *syncFlags, args []string, svc *svcAccount) {
	dirs := args
	if len(dirs) == 0 {
		dirs = splitList(g.getenv(dirsEnv))
	}
	if len(dirs) == 0 {
		r.fail("folders", "none given: pass DIR... or set %s=/path/one,/path/two (in /etc/tracesync/tracesync.env for the service)", dirsEnv)
		return
	}
	allOK := true
	for _, d := range dirs {
		if !checkFolder(r, d, f, svc) {
			allOK = false
		}
	}
	if allOK {
		// Folders that exist one by one can still be wrong together.
		if _, err := resolveDirs(dirs, g.getenv); err != nil {
			r.fail("folders", "%v", err)
		}
	}
}

// checkFolder reports one folder; false when it failed.
func checkFolder(r *checkReport, dir string, f *syncFlags, svc *svcAccount) bool {
	abs, err := filepath.Abs(dir)
	if err != nil {
		r.fail("folder "+dir, "%v", err)
		return false
	}
	what := "folder " + abs
	fi, err := os.Stat(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		r.fail(what, "does not exist: create it, or fix the path (%s or the DIR arguments)", dirsEnv)
		return false
	case err != nil:
		r.fail(what, "%v", err)
		return false
	case !fi.IsDir():
		r.fail(what, "is not a directory: give folders, not files")
		return false
	}
	dh, err := os.Open(abs)
	if err == nil {
		_, err = dh.Readdirnames(1)
		dh.Close()
		if errors.Is(err, io.EOF) {
			err = nil
		}
	}
	if err != nil {
		r.fail(what, "cannot be read by this user: %v", err)
		return false
	}
	if f.rootMarker != "" {
		if _, err := os.Stat(filepath.Join(abs, f.rootMarker)); err != nil {
			r.fail(what, "has no marker file %s: without it the folder counts as unmounted and nothing is deleted; create it (touch %s) or unset --root-marker",
				f.rootMarker, filepath.Join(abs, f.rootMarker))
			return false
		}
	}
	if svc != nil {
		if blocked, why := svc.cannotRead(abs); blocked != "" {
			r.fail(what, "user %s cannot read it: %s %s; give its group access (SupplementaryGroups= and PrivateUsers=no in a drop-in, see service.md) or chmod", svc.name, blocked, why)
			return false
		}
	}
	if hiddenBySandbox(abs) {
		r.note(what, "under /home, /root or /run/user, which the packaged unit hides (ProtectHome=yes): add ProtectHome=read-only in a drop-in")
	}
	if svc != nil {
		r.ok(what, "readable by %s", svc.name)
	} else {
		r.ok(what, "readable")
	}
	return true
}

// cannotRead checks, by the mode bits, that the account can search every
// ancestor of dir and list dir itself. It returns the first path that
// blocks it and why, or "" when none does. ACLs are not read.
func (a *svcAccount) cannotRead(dir string) (path, why string) {
	var chain []string
	for p := dir; ; p = filepath.Dir(p) {
		chain = append(chain, p)
		if p == filepath.Dir(p) {
			break
		}
	}
	for i := len(chain) - 1; i >= 0; i-- {
		p := chain[i]
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			return p, err.Error()
		}
		need := uint32(1) // x: search
		if p == dir {
			need = 5 // r-x: list and search
		}
		if !a.allowed(&st, need) {
			return p, fmt.Sprintf("(owner %d:%d, mode %04o)", st.Uid, st.Gid, st.Mode&0o7777)
		}
	}
	return "", ""
}

// allowed applies the owner, group or other bits, as the kernel does.
func (a *svcAccount) allowed(st *unix.Stat_t, need uint32) bool {
	mode := st.Mode & 0o777
	switch {
	case st.Uid == a.uid:
		return (mode>>6)&need == need
	case a.inGroup(st.Gid):
		return (mode>>3)&need == need
	}
	return mode&need == need
}

func (a *svcAccount) inGroup(gid uint32) bool {
	for _, g := range a.gids {
		if g == gid {
			return true
		}
	}
	return false
}

// hiddenBySandbox reports whether ProtectHome=yes hides path.
func hiddenBySandbox(path string) bool {
	for _, p := range []string{"/home", "/root", "/run/user"} {
		if path == p || strings.HasPrefix(path, p+"/") {
			return true
		}
	}
	return false
}

// checkAPI checks the key and reaches the API; it returns the target found,
// or the zero Target.
func checkAPI(ctx context.Context, r *checkReport, g *globals) client.Target {
	_, source, err := g.apiKey()
	if err != nil {
		r.fail("api key", "%v", err)
		return client.Target{}
	}
	r.ok("api key", "read from %s", source)

	ctx, cancel := context.WithTimeout(ctx, apiCheckTimeout)
	defer cancel()
	base := g.resolvedBaseURL()
	c, err := g.newClient(ctx)
	var t client.Target
	if err == nil {
		t, err = c.Discover(ctx)
	}
	if err == nil {
		r.ok("api", "%s reached: organization %s, project %s", base, t.OrganizationID, t.ProjectID)
		return t
	}
	var ae *client.APIError
	switch {
	case errors.As(err, &ae) && ae.Class() == client.ClassAuth:
		r.fail("api", "%s rejected the API key (HTTP %d): put a valid key in the key file (%s) or LAYERLENS_STRATIX_API_KEY", base, ae.StatusCode, source)
	case isUnreachable(err):
		r.checks++
		r.failures++
		r.unreachable = true
		r.line("FAIL", "api", fmt.Sprintf("cannot reach %s: %v; check the network, a proxy (HTTPS_PROXY), or --base-url", base, err))
	default:
		r.fail("api", "%s: %v", base, err)
	}
	return client.Target{}
}

// isUnreachable tells an API that could not be reached (network, timeout,
// or a server error that a retry may fix) from an answer that says the
// configuration is wrong.
func isUnreachable(err error) bool {
	var ae *client.APIError
	if errors.As(err, &ae) {
		return ae.Class() == client.ClassTransient
	}
	var te *client.TransportError
	var ne net.Error
	return errors.As(err, &te) || errors.As(err, &ne) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, syscall.ECONNREFUSED)
}

// checkState opens the state file the way run does. It does not create
// one: the first run (the service, as its own user) does.
func checkState(r *checkReport, g *globals, target client.Target) {
	dir, err := g.resolveStateDir()
	if err != nil {
		r.fail("state", "%v", err)
		return
	}
	file := filepath.Join(dir, store.FileName)
	if _, err := os.Stat(file); errors.Is(err, fs.ErrNotExist) {
		p := dir
		for {
			if _, err := os.Stat(p); err == nil || p == filepath.Dir(p) {
				break
			}
			p = filepath.Dir(p)
		}
		if err := unix.Access(p, unix.W_OK); err != nil {
			if p == dir {
				r.fail("state", "%s is not writable by this user (uid %d) (%v): fix its owner or mode, or pass --state-dir", dir, os.Getuid(), err)
			} else {
				r.fail("state", "%s does not exist and %s is not writable (%v): create it for this user, or pass --state-dir", dir, p, err)
			}
			return
		}
		r.ok("state", "none yet in %s: the first run creates %s", dir, store.FileName)
		return
	}
	key := ""
	if target.ProjectID != "" {
		key = target.String()
	}
	db, err := store.Open(dir, store.Options{Target: key})
	var le *store.LockedError
	switch {
	case errors.As(err, &le):
		if le.PID > 0 {
			r.ok("state", "%s is in use by the running tracesync (pid %d)", le.File, le.PID)
		} else {
			r.ok("state", "%s is in use by a running tracesync", le.File)
		}
	case errors.Is(err, store.ErrSchemaTooNew):
		r.fail("state", "%v: upgrade tracesync", err)
	case err != nil:
		r.fail("state", "%v", err)
	default:
		if moved := db.Recovered(); moved != "" {
			r.note("state", "the state file was corrupt and was moved to %s; a fresh one was started", moved)
		}
		if err := db.Close(); err != nil {
			r.fail("state", "close %s: %v", db.File(), err)
			return
		}
		r.ok("state", "%s opens", db.File())
	}
}
