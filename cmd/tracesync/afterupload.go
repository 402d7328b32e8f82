package main

// afterupload.go holds the flags --after-upload, --archive-dir and
// --max-age: their value type and their checks (the engine does the work:
// uploader/afterupload.go, uploader/maxage.go).

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/tracesync/tracesync/uploader"
)

// afterUploadFlag is --after-upload: keep, delete or archive.
type afterUploadFlag struct{ v uploader.AfterUpload }

func (a *afterUploadFlag) String() string { return a.v.String() }
func (a *afterUploadFlag) Type() string   { return "keep|delete|archive" }
func (a *afterUploadFlag) Set(s string) error {
	v, ok := uploader.ParseAfterUpload(strings.TrimSpace(s))
	if !ok {
		return fmt.Errorf("%q: use keep (the default), delete or archive", s)
	}
	a.v = v
	return nil
}

// validateAfterUpload checks --after-upload, --archive-dir and --max-age
// against each other and --delete-on-remove.
func (f *syncFlags) validateAfterUpload() []error {
	var errs []error
	mode := f.afterUpload.v
	switch {
	case mode != uploader.AfterUploadKeep && f.deleteOnRemove:
		errs = append(errs, fmt.Errorf("--after-upload %s cannot be used with --delete-on-remove: the files tracesync removes after upload would count as removed and their traces would be deleted from the server; drop one of them", mode))
	case mode == uploader.AfterUploadArchive && f.archiveDir == "":
		errs = append(errs, errors.New("--after-upload archive needs --archive-dir DIR: the folder files move to"))
	case mode != uploader.AfterUploadArchive && f.archiveDir != "":
		errs = append(errs, fmt.Errorf("--archive-dir %s is used only with --after-upload archive (now %s)", f.archiveDir, mode))
	}
	if f.maxAge < 0 {
		errs = append(errs, fmt.Errorf("--max-age %s: use 0 (no limit) or a positive duration such as 720h", f.maxAge))
	}
	return errs
}

// prepareArchive checks and creates --archive-dir for dirs when files are
// archived: a configuration error (exit 2) when it cannot take them.
func (f *syncFlags) prepareArchive(dirs []string) error {
	if f.afterUpload.v != uploader.AfterUploadArchive {
		return nil
	}
	abs, err := uploader.PrepareArchiveDir(f.archiveDir, dirs)
	if err != nil {
		return asUsage(err)
	}
	f.archiveDir = abs
	return nil
}

// writeAfterUpload adds the backfill summary's lines for --max-age and
// --after-upload, when they did anything.
func (s *backfillSummary) writeAfterUpload(w io.Writer) {
	if s.tooOld > 0 {
		fmt.Fprintf(w, "  too old      %8s  (modified longer ago than --max-age: skipped unread)\n", count(s.tooOld))
	}
	if s.deleted > 0 {
		fmt.Fprintf(w, "  deleted      %8s  (after upload, their traces recorded: --after-upload delete)\n", count(s.deleted))
	}
	if s.archived > 0 {
		fmt.Fprintf(w, "  archived     %8s  (moved to --archive-dir after upload, their traces recorded)\n", count(s.archived))
	}
}

// tooOld says, for the dry run, whether a file modified at mtime is past
// --max-age at now, and the reason the engine would record.
func (f *syncFlags) tooOld(mtime, now time.Time) (string, bool) {
	if f.maxAge <= 0 || mtime.IsZero() || now.Sub(mtime) <= f.maxAge {
		return "", false
	}
	return uploader.TooOldReason("--max-age", f.maxAge, mtime) + "; not read", true
}
