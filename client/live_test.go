package client_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tracesync/tracesync/client"
	"github.com/tracesync/tracesync/client/stratixtest"
)

// contractLive is the part of the contract that needs no fault injection or
// server inspection: upload, find, read and delete traces. It runs against
// stratixtest in every answer form, and against a real Stratix API when
// TRACESYNC_CONTRACT_BASE_URL and LAYERLENS_STRATIX_API_KEY are set, so the
// fake cannot drift from the real thing unnoticed. It cleans up what it made.
func contractLive(t *testing.T, c *client.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := c.Discover(ctx); err != nil {
		t.Fatalf("discover: %v", err)
	}
	start := time.Now().Add(-5 * time.Minute) // allow for clock skew
	name := fmt.Sprintf("tracesync-contract-%d.jsonl", time.Now().UnixNano())
	body := `{"contract":"tracesync","n":1}` + "\n" + `{"contract":"tracesync","n":2}` + "\n"
	ids, err := c.Upload(ctx, name, strings.NewReader(body), int64(len(body)))
	if err != nil {
		t.Fatalf("upload %s: %v", name, err)
	}
	t.Cleanup(func() {
		for _, id := range ids {
			if err := c.Delete(context.Background(), id); err != nil && client.Classify(err) != client.ClassNotFound {
				t.Errorf("cleanup: delete %s: %v", id, err)
			}
		}
	})
	if len(ids) != 2 {
		t.Fatalf("upload of 2 lines: got %d ids", len(ids))
	}

	// Finding an upload's traces the way crash recovery does (stratix-api.md).
	var found []string
	for tr, err := range c.All(ctx, client.ListOptions{Source: name, SortBy: "created_at", SortOrder: "desc", PageSize: 50}) {
		if err != nil {
			t.Fatalf("list source=%s: %v", name, err)
		}
		if tr.Filename != nil && *tr.Filename == name && !tr.CreatedAt.Before(start) {
			found = append(found, tr.ID)
		}
	}
	slices.Sort(found)
	want := slices.Sorted(slices.Values(ids))
	if !slices.Equal(found, want) {
		t.Fatalf("list source=%s: found %v, want %v", name, found, want)
	}

	tr, err := c.Get(ctx, ids[0])
	if err != nil {
		t.Fatalf("get %s: %v", ids[0], err)
	}
	if tr.ID != ids[0] || tr.Data["contract"] != "tracesync" || tr.CreatedAt.Before(start) {
		t.Fatalf("get %s: got %+v", ids[0], tr)
	}
	src, err := c.Sources(ctx)
	if err != nil {
		t.Fatalf("sources: %v", err)
	}
	if !slices.Contains(src, name) {
		t.Fatalf("sources %v lack %s", src, name)
	}
	if err := c.Delete(ctx, ids[1]); err != nil {
		t.Fatalf("delete %s: %v", ids[1], err)
	}
	err = c.Delete(ctx, ids[1])
	if err != nil && client.Classify(err) != client.ClassNotFound {
		t.Fatalf("second delete of %s: got %v, want success or not-found", ids[1], err)
	}
	_, err = c.Get(ctx, ids[1])
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.StatusCode != 404 {
		t.Fatalf("get of deleted %s: got %v, want 404", ids[1], err)
	}
}

func TestContractLiveSubsetAgainstFake(t *testing.T) {
	for _, opts := range []stratixtest.Options{{}, {Envelope: true}, {Envelope: true, IDsAsList: true}} {
		t.Run(fmt.Sprintf("envelope=%v,ids-as-list=%v", opts.Envelope, opts.IDsAsList), func(t *testing.T) {
			_, c := start(t, opts, client.Config{})
			contractLive(t, c)
		})
	}
}

// TestContractLiveSubsetAgainstRealAPI runs the same checks against a real
// Stratix API. It writes (and deletes) two traces in the key's first
// project, or TRACESYNC_CONTRACT_PROJECT_ID.
func TestContractLiveSubsetAgainstRealAPI(t *testing.T) {
	base, key := os.Getenv("TRACESYNC_CONTRACT_BASE_URL"), os.Getenv("LAYERLENS_STRATIX_API_KEY")
	if base == "" || key == "" {
		t.Skip("set TRACESYNC_CONTRACT_BASE_URL and LAYERLENS_STRATIX_API_KEY to run the contract against a real API")
	}
	c, err := client.New(client.Config{BaseURL: base, APIKey: key, ProjectID: os.Getenv("TRACESYNC_CONTRACT_PROJECT_ID")})
	if err != nil {
		t.Fatal(err)
	}
	contractLive(t, c)
}
