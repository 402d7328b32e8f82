package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The README says the rules in words (design.md numbers them, users do not
// have it), keeps its two first commands on its first screen, and links
// only to docs pages that exist.
func TestReadmeForUsers(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	if m := regexp.MustCompile(`(?i)\brules? \d+`).FindString(readme); m != "" {
		t.Errorf("README cites a rule number (%q): say the rule in words", m)
	}
	lines := strings.Split(readme, "\n")
	first := strings.Join(lines[:min(30, len(lines))], "\n")
	for _, cmd := range []string{"go run ./cmd/tracesync demo", "go test -race ./..."} {
		if !strings.Contains(first, cmd) {
			t.Errorf("README's first 30 lines lack %q", cmd)
		}
	}
	for _, m := range regexp.MustCompile(`\]\((docs/[^)#]+)`).FindAllStringSubmatch(readme, -1) {
		if _, err := os.Stat(filepath.Join("..", "..", m[1])); err != nil {
			t.Errorf("README links to %s: %v", m[1], err)
		}
	}
}
