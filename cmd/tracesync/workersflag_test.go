package main

import "testing"

func TestWorkersAutoOrFixed(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want int // Config.Workers: 0 is auto
		max  int
	}{
		{nil, nil, 0, 256},
		{[]string{"--workers", "auto", "--max-workers", "64"}, nil, 0, 64},
		{[]string{"--workers", "AUTO"}, nil, 0, 256},
		{[]string{"--workers", "16"}, nil, 16, 256},
		{nil, map[string]string{"TRACESYNC_WORKERS": "32"}, 32, 256},
		{nil, map[string]string{"TRACESYNC_WORKERS": "auto", "TRACESYNC_MAX_WORKERS": "512"}, 0, 512},
		{[]string{"--workers", "auto"}, map[string]string{"TRACESYNC_WORKERS": "8"}, 0, 256},
	} {
		f, err := parseSyncFlags(t, tc.args, tc.env)
		if err != nil {
			t.Errorf("%v %v: %v", tc.args, tc.env, err)
			continue
		}
		if got := f.workers.count(); got != tc.want || f.maxWorkers != tc.max {
			t.Errorf("%v %v: workers %d (%s), max %d; want %d, max %d", tc.args, tc.env, got, &f.workers, f.maxWorkers, tc.want, tc.max)
		}
	}
}
