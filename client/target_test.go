package client

import "testing"

// ParseTarget reads back what String writes, and refuses what is not a key.
func TestParseTarget(t *testing.T) {
	want := Target{BaseURL: "http://127.0.0.1:8780/api/v1", OrganizationID: "org-1", ProjectID: "proj-1"}
	got, ok := ParseTarget(want.String())
	if !ok || got != want {
		t.Fatalf("ParseTarget(%q) = %+v, %v; want %+v, true", want.String(), got, ok, want)
	}
	for _, bad := range []string{"", "http://x", "http://x|org", "|org|proj", "http://x||proj", "http://x|org|"} {
		if got, ok := ParseTarget(bad); ok {
			t.Errorf("ParseTarget(%q) = %+v, true; want false", bad, got)
		}
	}
}
