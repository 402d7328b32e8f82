package main

// fake.go starts stratix-fake for a run and reads what it served.

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// startFake starts stratix-fake on a free port and returns its base URL,
// a function that reads the CPU time it has used so far, and one that
// stops it and returns what it served. Each run gets a fresh one: the fake keeps every trace and body
// in memory (each large-file run leaves 1.5 million traces and 400 MiB),
// and a fake shared by all runs made each later run pay for the earlier
// ones: its garbage collector scanning them, and the latency runs' polling
// lists walking them.
func startFake(c config) (url string, cpu func() time.Duration, stop func() fakeCounts, err error) {
	cmd, url, last, err := launchFake(c.fake, c.latency, c.rateLimitRate)
	if err != nil {
		return "", nil, nil, err
	}
	pid := cmd.Process.Pid
	return url, func() time.Duration { return procCPU(pid) }, func() fakeCounts {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		return parseServed(<-last)
	}, nil
}

// fakeCounts is what stratix-fake says it served, from its last stdout
// line (zero when it printed none: a build before it did).
type fakeCounts struct {
	calls, injected, rateLimited int
}

func parseServed(line string) fakeCounts {
	var f fakeCounts
	_, _ = fmt.Sscanf(line, "served %d calls; %d answered with an injected status, %d of them 429", &f.calls, &f.injected, &f.rateLimited)
	return f
}

// fakeArgs are -fake-arg's, added to every stratix-fake's command line.
var fakeArgs argList

// argList is a repeatable flag's values.
type argList []string

func (l *argList) String() string     { return strings.Join(*l, " ") }
func (l *argList) Set(v string) error { *l = append(*l, v); return nil }

// launchFake starts stratix-fake and returns its URL and a channel that
// gets its last stdout line once it exits.
// env is added to its environment.
func launchFake(bin string, latency time.Duration, rateLimitRate float64, env ...string) (*exec.Cmd, string, <-chan string, error) {
	args := []string{"--addr", "127.0.0.1:0", "--log-level", "warn", "--api-key", "bench-key", "--envelope=false", "--latency", latency.String()}
	if rateLimitRate > 0 {
		args = append(args, "--rate-limit-rate", strconv.FormatFloat(rateLimitRate, 'f', -1, 64))
	}
	cmd := exec.Command(bin, append(args, fakeArgs...)...)
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, "", nil, fmt.Errorf("start stratix-fake: %w", err)
	}
	rd := bufio.NewReader(out)
	line, err := rd.ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		return nil, "", nil, fmt.Errorf("read stratix-fake's URL: %w", err)
	}
	last := make(chan string, 1)
	go func() {
		var l string
		for {
			s, err := rd.ReadString('\n')
			if strings.TrimSpace(s) != "" {
				l = strings.TrimSpace(s)
			}
			if err != nil {
				last <- l
				return
			}
		}
	}()
	return cmd, strings.TrimSpace(line), last, nil
}
