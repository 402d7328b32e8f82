package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/tracesync/tracesync/client"
)

// newClient builds the API client every API command uses: the key from
// g.apiKey (never a flag), the base URL, the pinned organization and project
// (by ID or name), a User-Agent with the version. It runs discovery, so a
// wrong key or an unreachable API fails here with a message that says what
// to do. A rejected key (401/403) names where the key was read from, never
// the key.
func (g *globals) newClient(ctx context.Context) (*client.Client, error) {
	key, source, err := g.apiKey()
	if err != nil {
		return nil, err
	}
	base := g.resolvedBaseURL()
	c, err := client.New(client.Config{
		BaseURL:        base,
		APIKey:         key,
		UserAgent:      "tracesync/" + version,
		OrganizationID: g.organizationID,
		ProjectID:      g.projectID,
		ProjectName:    g.projectName,
		ReloadKey:      g.keyReloader(key),
	})
	if errors.Is(err, client.ErrNoAPIKey) {
		return nil, usageErrorf("%w: set LAYERLENS_STRATIX_API_KEY or pass --api-key-file", err)
	}
	if err != nil {
		return nil, asUsage(err)
	}
	if _, err := c.Discover(ctx); err != nil {
		return nil, discoveryError(err, base, source)
	}
	return c, nil
}

// errKeyRejected marks a discovery that failed because the API refused the key.
var errKeyRejected = errors.New("API key rejected")

// discoveryError explains a failed discovery to the user.
func discoveryError(err error, base, keySource string) error {
	var ae *client.APIError
	var wrongOrg *client.WrongOrganizationError
	switch {
	case errors.As(err, &ae) && (ae.StatusCode == http.StatusUnauthorized || ae.StatusCode == http.StatusForbidden):
		return fmt.Errorf("%w: %s answered HTTP %d (%s) to the API key read from %s: check the key, or set LAYERLENS_STRATIX_API_KEY / --api-key-file: %w",
			errKeyRejected, base, ae.StatusCode, ae.Message, keySource, err)
	case errors.Is(err, client.ErrMissingProject):
		return asUsage(fmt.Errorf("%w (pass --project-id or --project to choose one)", err))
	case errors.As(err, &wrongOrg):
		return asUsage(fmt.Errorf("%w: pass --organization-id %s or leave it out", err, wrongOrg.KeyOrg))
	case errors.As(err, &ae) && ae.StatusCode == http.StatusNotFound:
		// Discovery's one call is GET /organizations: a 404 is a wrong base URL.
		return asUsage(fmt.Errorf("%s has no Stratix API: %w; check --base-url / LAYERLENS_STRATIX_BASE_URL: the base URL usually ends in /api/v1 (e.g. %s)", base, err, defaultBaseURLHelp))
	case client.Classify(err) == client.ClassCanceled:
		return err
	case client.Classify(err) == client.ClassTransient:
		return fmt.Errorf("cannot reach the Stratix API at %s (check --base-url / LAYERLENS_STRATIX_BASE_URL and the network): %w%s", base, err, certificateHint(err))
	}
	return fmt.Errorf("find the organization and project at %s: %w", base, err)
}
