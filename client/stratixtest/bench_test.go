package stratixtest_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tracesync/tracesync/client"
	"github.com/tracesync/tracesync/client/stratixtest"
)

// body4K is a 4 KiB JSONL file of 8 traces.
func body4K() []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < 4096-600; i++ {
		fmt.Fprintf(&b, `{"trace_id":"bench-%d","agent_name":"bench","events":[{"type":"llm.call","payload":{"prompt":"%s"}}]}`+"\n", i, bytes.Repeat([]byte("x"), 380))
	}
	pad := 4096 - b.Len() - len(`{"pad":""}`+"\n")
	fmt.Fprintf(&b, `{"pad":"%s"}`+"\n", bytes.Repeat([]byte("p"), pad))
	return b.Bytes()
}

// BenchmarkUpload measures full uploads (presign, PUT, create) of 4 KiB
// files by 16 concurrent clients, each with its own connection pool,
// against the server on a real loopback port. The figure is uploads/s.
func BenchmarkUpload(b *testing.B) {
	const workers = 16
	srv, err := stratixtest.Listen("127.0.0.1:0", stratixtest.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	body := body4K()
	if len(body) != 4096 {
		b.Fatalf("body is %d bytes, want 4096", len(body))
	}
	clients := make([]*client.Client, workers)
	for i := range clients {
		c, err := client.New(client.Config{BaseURL: srv.URL(), APIKey: stratixtest.DefaultAPIKey})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Discover(context.Background()); err != nil {
			b.Fatal(err)
		}
		clients[i] = c
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	cpuStart := cpuTime()
	start := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := clients[w]
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				name := fmt.Sprintf("bench-%d.jsonl", i)
				if _, err := c.Upload(context.Background(), name, bytes.NewReader(body), int64(len(body))); err != nil {
					b.Errorf("upload %s: %v", name, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := cpuTime() - cpuStart
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "uploads/s")
	// CPU per upload (client and server together, this process) does not
	// depend on what else runs on the machine: 2 cores give at most
	// 2s / cpu-us-per-upload uploads per second.
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/upload")
	if got := srv.Calls(stratixtest.EndpointCreate); got != b.N {
		b.Fatalf("%d creates for %d uploads", got, b.N)
	}
}
