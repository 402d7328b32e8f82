package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

func TestShardFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // in the error; "" for valid
	}{
		{[]string{"--shard", "0/2"}, ""},
		{[]string{"--shard", "3/4"}, ""},
		{[]string{"--shard", "3/2"}, "--shard 3/2: K counts from 0 and must be below N: use 0/2 to 1/2"},
		{[]string{"--shard", "2/2"}, "use 0/2 to 1/2"},
		{[]string{"--shard", "-1/2"}, "--shard -1/2: K counts from 0"},
		{[]string{"--shard", "0/0"}, "--shard 0/0: N is how many hosts"},
	} {
		_, err := parseSyncFlags(t, tc.args, nil)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v: %v, want valid", tc.args, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%v: error %v, want one saying %q", tc.args, err, tc.want)
		}
	}
	var s shardFlag
	if err := s.Set("x"); err == nil {
		t.Errorf("--shard x: parsed, want an error")
	}
}

func TestShardOwnsEachPathOnce(t *testing.T) {
	const n = 3
	shards := make([]shardFlag, n)
	for k := range shards {
		if err := shards[k].Set(fmt.Sprintf("%d/%d", k, n)); err != nil {
			t.Fatal(err)
		}
	}
	count := make([]int, n)
	for i := range 3000 {
		rel := fmt.Sprintf("day%02d/run-%05d.jsonl", i%31, i)
		owners := 0
		for k, s := range shards {
			// Two hosts that mount the archive at different places agree.
			a := s.owns("/mnt/archive", filepath.Join("/mnt/archive", rel))
			b := s.ownsPath([]string{"/srv/x", "/data/traces"}, filepath.Join("/data/traces", rel))
			if a != b {
				t.Fatalf("%s: shard %d/%d owns it under one mount point and not the other", rel, k, n)
			}
			if a {
				owners++
				count[k]++
			}
		}
		if owners != 1 {
			t.Fatalf("%s: owned by %d shares of %d, want exactly one", rel, owners, n)
		}
	}
	for k, c := range count {
		if c < 800 || c > 1200 { // 1000 expected; the hash is fixed, so this is deterministic
			t.Errorf("share %d/%d holds %d of 3000 paths, want about a third", k, n, c)
		}
	}
	var none shardFlag
	if !none.owns("/a", "/a/b.json") {
		t.Errorf("no --shard: a path is not taken")
	}
}
