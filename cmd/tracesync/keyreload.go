package main

import "sync"

// keyReloader is the client's Config.ReloadKey: after a 401 the key is
// read again from where it came from (a key file, e.g. a Kubernetes Secret
// mounted as a file, or a systemd credential), so a rotated key needs no
// restart. It logs that the key changed, never the key.
func (g *globals) keyReloader(current string) func() (string, error) {
	var mu sync.Mutex
	return func() (string, error) {
		key, source, err := g.apiKey()
		if err != nil {
			g.log.Warn().Err(err).Msg("the API key was rejected and could not be read again")
			return "", err
		}
		mu.Lock()
		defer mu.Unlock()
		if key != current {
			current = key
			g.log.Info().Str("source", source).Msg("the API key was rejected; a new key was read from " + source + " and is used from now on")
		}
		return key, nil
	}
}
