package uploader

// LastTurn is when e's main loop last turned (unix nanoseconds), for tests
// of how often an idle engine wakes.
func LastTurn(e *Engine) int64 { return e.beat.Load() }
