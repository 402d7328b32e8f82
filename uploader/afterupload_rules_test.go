package uploader

import (
	"testing"
	"time"

	"github.com/tracesync/tracesync/store"
)

// Rule 14, one row per reason a file stays.
func TestAfterUploadDueRules(t *testing.T) {
	safe := afterUploadDue{recorded: true, sameFile: true, allSent: true}
	for _, tc := range []struct {
		name string
		mod  func(*afterUploadDue)
		want bool
	}{
		{"recorded, quiet, unchanged, all sent", func(*afterUploadDue) {}, true},
		{"not recorded (quarantined, skipped, pending)", func(d *afterUploadDue) { d.recorded = false }, false},
		{"still growing", func(d *afterUploadDue) { d.growing = true }, false},
		{"more work under way", func(d *afterUploadDue) { d.busy = true }, false},
		{"changed since it was read", func(d *afterUploadDue) { d.sameFile = false }, false},
		{"bytes past the last segment unsent", func(d *afterUploadDue) { d.allSent = false }, false},
	} {
		d := safe
		tc.mod(&d)
		if got := d.ok(); got != tc.want {
			t.Errorf("%s: ok() = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestSkipForAgeRules(t *testing.T) {
	h := store.Hash{1}
	for _, tc := range []struct {
		name     string
		old      bool
		busy     bool
		rec      store.PathRecord
		recFound bool
		want     bool
	}{
		{"new old file", true, false, store.PathRecord{}, false, true},
		{"new recent file", false, false, store.PathRecord{}, false, false},
		{"old file with work under way", true, true, store.PathRecord{}, false, false},
		{"old file already uploaded", true, false, store.PathRecord{State: store.StateUploaded, Hash: h}, true, false},
		{"old file quarantined with its bytes", true, false, store.PathRecord{State: store.StateQuarantined, Hash: h}, true, false},
		{"old file at a removed path", true, false, store.PathRecord{State: store.StateRemoved, Hash: h}, true, true},
		{"old file skipped before", true, false, store.PathRecord{State: store.StateSkipped}, true, true},
	} {
		if got := skipForAge(tc.old, tc.busy, tc.rec, tc.recFound); got != tc.want {
			t.Errorf("%s: skipForAge = %v, want %v", tc.name, got, tc.want)
		}
	}
	now := time.Now()
	if tooOld(0, now, now.Add(-1000*time.Hour)) || !tooOld(time.Hour, now, now.Add(-2*time.Hour)) || tooOld(time.Hour, now, time.Time{}) {
		t.Errorf("tooOld: wrong for no limit, an old file, or no mtime")
	}
	for d, want := range map[time.Duration]string{720 * time.Hour: "720h", 90 * time.Minute: "1h30m", 90 * time.Second: "1m30s", 45 * time.Second: "45s"} {
		if got := shortDuration(d); got != want {
			t.Errorf("shortDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
