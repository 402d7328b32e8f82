package main

import (
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// chaosProxy forwards TCP connections to target and, with probability
// dropRate per chunk it forwards (either way), forwards only a part of that
// chunk and then cuts the connection: closed, or reset (SO_LINGER 0) for
// half of them. A request cut on its way in may or may not have reached the
// server; a response cut on its way out was acted on (a create whose answer
// is lost: the crash window of rule 9). stratix-fake builds presigned URLs
// from the request's Host, so the PUTs go through the proxy too.
type chaosProxy struct {
	ln       net.Listener
	target   string
	dropRate float64

	mu  sync.Mutex // guards rng
	rng *rand.Rand

	conns  atomic.Int64 // connections accepted
	drops  atomic.Int64 // connections cut
	resets atomic.Int64 // of drops: by a reset

	wg sync.WaitGroup // the accept loop and every connection's goroutines
}

func startProxy(target string, dropRate float64, seed uint64) (*chaosProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &chaosProxy{ln: ln, target: target, dropRate: dropRate, rng: rand.New(rand.NewPCG(seed, 0x70c5))}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// Addr is the proxy's host:port.
func (p *chaosProxy) Addr() string { return p.ln.Addr().String() }

// Close stops accepting and waits for every forwarded connection to end.
// Call it once the daemon has exited (its connections are then closed).
func (p *chaosProxy) Close() {
	_ = p.ln.Close()
	p.wg.Wait()
}

func (p *chaosProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		p.conns.Add(1)
		p.wg.Add(1)
		go p.handle(c)
	}
}

// decide returns, for a chunk of n bytes, whether to cut and how many bytes
// to forward first.
func (p *chaosProxy) decide(n int) (cut bool, keep int, reset bool) {
	if p.dropRate == 0 {
		return false, n, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rng.Float64() >= p.dropRate {
		return false, n, false
	}
	return true, p.rng.IntN(n + 1), p.rng.IntN(2) == 0
}

func (p *chaosProxy) handle(client net.Conn) {
	defer p.wg.Done()
	server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		_ = client.Close()
		return
	}
	var once sync.Once
	closeBoth := func(reset bool) {
		once.Do(func() {
			if reset {
				for _, c := range []net.Conn{client, server} {
					if tc, ok := c.(*net.TCPConn); ok {
						_ = tc.SetLinger(0)
					}
				}
			}
			_ = client.Close()
			_ = server.Close()
		})
	}
	var inner sync.WaitGroup
	inner.Add(2)
	go func() { defer inner.Done(); p.pipe(server, client, closeBoth) }()
	go func() { defer inner.Done(); p.pipe(client, server, closeBoth) }()
	inner.Wait()
	closeBoth(false)
}

// pipe copies src to dst, cutting at random. At src's end it passes the
// half-close on; a cut or an error closes both connections.
func (p *chaosProxy) pipe(dst, src net.Conn, closeBoth func(reset bool)) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			cut, keep, reset := p.decide(n)
			if _, werr := dst.Write(buf[:keep]); werr != nil {
				closeBoth(false)
				return
			}
			if cut {
				p.drops.Add(1)
				if reset {
					p.resets.Add(1)
				}
				closeBoth(reset)
				return
			}
		}
		if errors.Is(err, io.EOF) {
			if tc, ok := dst.(*net.TCPConn); ok && tc.CloseWrite() == nil {
				return
			}
		}
		if err != nil {
			closeBoth(false)
			return
		}
	}
}
