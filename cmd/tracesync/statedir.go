package main

// `tracesync state-dir prepare`: an init step that hands a state directory
// to the non-root user the daemon runs as. A Kubernetes hostPath created by
// the kubelet is root:root 0755, where a non-root daemon may not write; an
// init container with only CAP_CHOWN runs this once before it, instead of
// the whole pod running privileged.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

// defaultStateOwner is the uid and gid of the container image's user
// (distroless "nonroot").
const defaultStateOwner = 65532

func newStateDirCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "state-dir",
		Short: "Prepare a state directory for a non-root daemon (an init step)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usageErrorf("state-dir: give a subcommand: prepare")
		},
	}
	var uid, gid int
	prepare := &cobra.Command{
		Use:   "prepare DIR",
		Short: "Create DIR if needed, owned by --uid:--gid with mode 0700",
		Long: `prepare creates the state directory DIR (and its parents, 0755) if it is
missing, then makes it owned by --uid:--gid with mode 0700, and hands the
regular files directly in it (the state file) to the same owner; a folder
already owned by --uid:--gid with mode 0700 is left alone. It needs the
chown capability (CAP_CHOWN) and nothing else: run it as an init step
before a non-root daemon whose state directory the system created as root.

It refuses a DIR that looks wrong: relative or not clean, a system folder or
one under /proc, /sys, /dev, /etc, /usr, /boot, a path through a symlink, or
something that is not a directory. It never descends into subfolders.`,
		Example: `  tracesync state-dir prepare /var/lib/tracesync/default-tracesync --uid 65532 --gid 65532`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := prepareStateDir(args[0], uid, gid); err != nil {
				return err
			}
			_, err := fmt.Fprintf(g.stdout, "state directory %s: owner %d:%d, mode 0700\n", args[0], uid, gid)
			return err
		},
	}
	prepare.Flags().IntVar(&uid, "uid", defaultStateOwner, "user to own the state directory (the daemon's)")
	prepare.Flags().IntVar(&gid, "gid", defaultStateOwner, "group to own the state directory")
	cmd.AddCommand(prepare)
	return cmd
}

// systemDirs are folders a state directory must never be, nor be under
// (the second set), whatever a values file says.
var (
	systemDirs = []string{"/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/media", "/mnt",
		"/opt", "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/usr/local", "/var", "/var/lib",
		"/var/log", "/var/run", "/var/tmp"}
	systemTrees = []string{"/proc", "/sys", "/dev", "/etc", "/usr", "/boot", "/bin", "/sbin", "/lib", "/lib64"}
)

// checkStateDirPath refuses a path that looks wrong for a state directory.
func checkStateDirPath(dir string) error {
	if !filepath.IsAbs(dir) || filepath.Clean(dir) != dir {
		return usageErrorf("state-dir prepare %q: give an absolute, clean path (no .., no trailing /)", dir)
	}
	for _, s := range systemDirs {
		if dir == s {
			return usageErrorf("state-dir prepare %s: refusing a system folder: give a folder of its own, e.g. /var/lib/tracesync/NAME", dir)
		}
	}
	for _, s := range systemTrees {
		if strings.HasPrefix(dir, s+"/") {
			return usageErrorf("state-dir prepare %s: refusing a path under %s: give a folder of its own, e.g. /var/lib/tracesync/NAME", dir, s)
		}
	}
	// No symlink on the way: what exists of the path must resolve to itself.
	existing := dir
	for {
		if _, err := os.Lstat(existing); err == nil {
			break
		}
		existing = filepath.Dir(existing)
	}
	if real, err := filepath.EvalSymlinks(existing); err != nil || real != existing {
		return usageErrorf("state-dir prepare %s: refusing a path through a symlink (%s resolves to %s): give the real path", dir, existing, real)
	}
	if fi, err := os.Lstat(dir); err == nil && !fi.IsDir() {
		return usageErrorf("state-dir prepare %s: it exists and is not a directory (%s)", dir, fi.Mode().Type())
	}
	return nil
}

// prepareStateDir creates dir if needed and hands it, with the regular
// files directly in it, to uid:gid, mode 0700.
func prepareStateDir(dir string, uid, gid int) error {
	if uid <= 0 || gid < 0 {
		return usageErrorf("state-dir prepare: --uid must be a non-root user id and --gid a group id (got %d:%d)", uid, gid)
	}
	if err := checkStateDirPath(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("state-dir prepare: create %s: %w", dir, err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("state-dir prepare: %w", err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) == uid && int(st.Gid) == gid && fi.Mode().Perm() == 0o700 {
		return nil // prepared before (a pod restart): the files in it are the daemon's own
	}
	// Everything while root still owns the folder, the folder last: with
	// CAP_CHOWN alone, root may neither change the mode of another user's
	// folder (CAP_FOWNER) nor look into a 0700 one (CAP_DAC_READ_SEARCH).
	if fi.Mode().Perm() != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("state-dir prepare: chmod %s: %w (this step needs CAP_FOWNER when the folder is not root's)", dir, err)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("state-dir prepare: list %s: %w", dir, err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue // sockets, links, folders: not ours to hand over
		}
		p := filepath.Join(dir, e.Name())
		if err := os.Lchown(p, uid, gid); err != nil {
			return chownError(p, uid, gid, err)
		}
	}
	if err := os.Lchown(dir, uid, gid); err != nil {
		return chownError(dir, uid, gid, err)
	}
	return nil
}

func chownError(path string, uid, gid int, err error) error {
	if errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EPERM) {
		return fmt.Errorf("state-dir prepare: chown %s to %d:%d: %w (this step needs the chown capability: CAP_CHOWN, as root)", path, uid, gid, err)
	}
	return fmt.Errorf("state-dir prepare: chown %s to %d:%d: %w", path, uid, gid, err)
}
