package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
)

// fakeCalls counts the calls stratix-fake answered, by endpoint and status,
// from its debug log (one "request" line per call). The injected faults
// are the 503s and 429s: the fake answers neither of them otherwise.
type fakeCalls struct {
	byEndpoint map[string]map[int]int // endpoint → status → calls
	total      int
}

// endpointOf names the API call of a request the way stratixtest does.
func endpointOf(method, path string) string {
	const traces = "/traces"
	switch {
	case method == "PUT" && strings.HasPrefix(path, "/s3/"):
		return "put"
	case path == "/api/v1/organizations":
		return "organizations"
	case method == "POST" && strings.HasSuffix(path, traces+"/upload"):
		return "presign"
	case method == "POST" && strings.HasSuffix(path, traces):
		return "create"
	case method == "GET" && strings.HasSuffix(path, traces):
		return "list"
	case method == "GET" && strings.HasSuffix(path, traces+"/sources"):
		return "sources"
	case method == "DELETE" && strings.Contains(path, traces+"/"):
		return "delete"
	case method == "GET" && strings.Contains(path, traces+"/"):
		return "get"
	}
	return method + " other"
}

// readFakeLog reads stratix-fake's JSON log (run with --log-level debug).
func readFakeLog(name string) (fakeCalls, error) {
	fc := fakeCalls{byEndpoint: map[string]map[int]int{}}
	f, err := os.Open(name)
	if err != nil {
		return fc, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var l struct {
			Message string `json:"message"`
			Method  string `json:"method"`
			Path    string `json:"path"`
			Status  int    `json:"status"`
		}
		if json.Unmarshal(sc.Bytes(), &l) != nil || l.Message != "request" || l.Method == "" {
			continue
		}
		ep := endpointOf(l.Method, l.Path)
		if fc.byEndpoint[ep] == nil {
			fc.byEndpoint[ep] = map[int]int{}
		}
		fc.byEndpoint[ep][l.Status]++
		fc.total++
	}
	return fc, sc.Err()
}

// status sums the calls answered with status over every endpoint.
func (fc fakeCalls) status(code int) int {
	n := 0
	for _, by := range fc.byEndpoint {
		n += by[code]
	}
	return n
}

// byStatus formats, for one status, its calls by endpoint: "put 12, create 3".
func (fc fakeCalls) byStatus(code int) string {
	var parts []string
	for _, ep := range fc.endpoints() {
		if n := fc.byEndpoint[ep][code]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", ep, n))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func (fc fakeCalls) endpoints() []string {
	eps := make([]string, 0, len(fc.byEndpoint))
	for ep := range fc.byEndpoint {
		eps = append(eps, ep)
	}
	slices.Sort(eps)
	return eps
}

// String is one line per endpoint: its calls and their statuses.
func (fc fakeCalls) String() string {
	var b strings.Builder
	for _, ep := range fc.endpoints() {
		by := fc.byEndpoint[ep]
		codes := make([]int, 0, len(by))
		n := 0
		for code, k := range by {
			codes = append(codes, code)
			n += k
		}
		slices.Sort(codes)
		var parts []string
		for _, code := range codes {
			parts = append(parts, fmt.Sprintf("%d×%d", code, by[code]))
		}
		fmt.Fprintf(&b, "  %-13s %6d calls: %s\n", ep, n, strings.Join(parts, " "))
	}
	return b.String()
}
