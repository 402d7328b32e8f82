package client

import "strings"

// key is the API key sent now.
func (c *Client) key() string {
	c.keyMu.Lock()
	defer c.keyMu.Unlock()
	return c.apiKey
}

// keyRejected reads the key again (Config.ReloadKey) after sent was
// answered 401, and uses the key read from then on when it differs.
func (c *Client) keyRejected(sent string) {
	if c.reloadKey == nil {
		return
	}
	fresh, err := c.reloadKey()
	fresh = strings.TrimSpace(fresh)
	if err != nil || fresh == "" {
		return
	}
	c.keyMu.Lock()
	if c.apiKey == sent {
		c.apiKey = fresh
	}
	c.keyMu.Unlock()
}
