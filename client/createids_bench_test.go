package client_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/tracesync/tracesync/client"
)

// createBody is a create answer of n ids shaped like stratix-fake's, bare
// or inside the envelope.
func createBody(n int, envelope bool) string {
	var b strings.Builder
	if envelope {
		b.WriteString(`{"status":"success","data":`)
	}
	b.WriteString(`{"trace_ids":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"tr_%016x%08d"`, 0x5eed, i)
	}
	b.WriteString(`]}`)
	if envelope {
		b.WriteString(`}`)
	}
	return b.String()
}

// BenchmarkCreateAnswer measures a create answering the ids of a 50 MiB
// upload (190,000 of them), from the request to the []string: reading the
// answer and decoding it.
func BenchmarkCreateAnswer(b *testing.B) {
	for _, envelope := range []bool{false, true} {
		body := createBody(190_000, envelope)
		raw := []byte(body)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Length", strconv.Itoa(len(raw)))
			_, _ = w.Write(raw)
		}))
		c, err := client.New(client.Config{BaseURL: srv.URL + "/api/v1", APIKey: "k", OrganizationID: "o", ProjectID: "p"})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("envelope=%v", envelope), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				ids, err := c.Create(context.Background(), "a.jsonl")
				if err != nil || len(ids) != 190_000 {
					b.Fatalf("create: %d ids, %v", len(ids), err)
				}
			}
		})
		srv.Close()
	}
}
