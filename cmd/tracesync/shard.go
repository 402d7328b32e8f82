package main

// shard.go owns --shard K/N: which files of the folders this process takes
// when N hosts that see the same archive share it with no coordinator.

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// shardType is --shard's value type as the help shows it; expectedForm
// knows it.
const shardType = "K/N"

// shardFlag is --shard K/N: this process takes the files whose path hash,
// modulo N, is K. The zero value takes every file.
type shardFlag struct {
	k, n int // n 0: no sharding
	raw  string
}

func (s *shardFlag) String() string {
	if s.n == 0 {
		return ""
	}
	return fmt.Sprintf("%d/%d", s.k, s.n)
}

func (s *shardFlag) Type() string { return shardType }

// Set parses K/N; validate checks that K is one of 0..N-1.
func (s *shardFlag) Set(v string) error {
	v = strings.TrimSpace(v)
	ks, ns, ok := strings.Cut(v, "/")
	k, kerr := strconv.Atoi(strings.TrimSpace(ks))
	n, nerr := strconv.Atoi(strings.TrimSpace(ns))
	if !ok || kerr != nil || nerr != nil {
		return fmt.Errorf("%q: want K/N", v)
	}
	*s = shardFlag{k: k, n: n, raw: v}
	return nil
}

// validate checks the shard's range; the error says how to fix it.
func (s *shardFlag) validate() error {
	if s.raw == "" {
		return nil
	}
	switch {
	case s.n < 1:
		return fmt.Errorf("--shard %s: N is how many hosts share the folders, at least 1: use e.g. 0/4 on the first of four", s.raw)
	case s.k < 0 || s.k >= s.n:
		return fmt.Errorf("--shard %s: K counts from 0 and must be below N: use 0/%d to %d/%d (JOB_COMPLETION_INDEX counts from 0)", s.raw, s.n, s.n-1, s.n)
	}
	return nil
}

// owns reports whether path, under root, is this shard's: the first 8
// bytes of the SHA-256 of its path relative to root (slash-separated), as
// a big-endian number, modulo N, is K. The hash is of the relative path,
// so hosts that mount the archive at different places agree.
func (s *shardFlag) owns(root, path string) bool {
	if s.n <= 1 {
		return true
	}
	rel, err := filepath.Rel(root, path)
	if err != nil {
		rel = path
	}
	sum := sha256.Sum256([]byte(filepath.ToSlash(rel)))
	return binary.BigEndian.Uint64(sum[:8])%uint64(s.n) == uint64(s.k)
}

// ownsPath is owns for a path under one of roots (which do not nest); a
// path under none is taken.
func (s *shardFlag) ownsPath(roots []string, path string) bool {
	if s.n <= 1 {
		return true
	}
	for _, r := range roots {
		if path == r || strings.HasPrefix(path, r+string(filepath.Separator)) {
			return s.owns(r, path)
		}
	}
	return true
}
