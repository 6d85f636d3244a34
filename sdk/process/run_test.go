package process

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rosterhq/roster/sdk"
)

// TestDescendantsOutsideTheGroup starts a daemon whose child leaves the
// process group (setsid, as PostgreSQL's backends do) and ignores SIGTERM:
// without Descendants Stop would miss it; with it, Members lists it and
// Stop kills it at the deadline, after the leader is gone.
func TestDescendantsOutsideTheGroup(t *testing.T) {
	s := newSup(t)
	p, err := s.Start(context.Background(), Spec{
		Name: "postmaster",
		Path: "sh",
		// The leader exits on SIGTERM; its child, in a session of its
		// own, ignores it.
		Args:        []string{"-c", "setsid sh -c \"trap '' TERM; while :; do sleep 0.05; done\" & wait"},
		Descendants: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	stopOnCleanup(t, p)
	var outside int
	waitFor(t, "a descendant outside the group", func() bool {
		group, others, err := p.members()
		if err != nil {
			t.Fatal(err)
		}
		for _, pid := range others {
			if st, err := readStat(pid); err == nil && st.session == pid {
				outside = pid
				t.Cleanup(func() { _ = syscall.Kill(outside, syscall.SIGKILL) })
				return len(group) > 0
			}
		}
		return false
	})
	if m, _ := p.Members(); !slices.Contains(m, outside) || !slices.Contains(m, p.Pid) {
		t.Fatalf("Members = %v, want the leader %d and the descendant %d", m, p.Pid, outside)
	}
	if err := p.Stop(context.Background(), 200*time.Millisecond); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if st, err := readStat(outside); err == nil && !st.dead() {
		t.Fatalf("descendant %d outside the group survived Stop", outside)
	}
}

func TestWithoutDescendantsOnlyTheGroup(t *testing.T) {
	s := newSup(t)
	p, err := s.Start(context.Background(), Spec{
		Name: "plain",
		Path: "sh",
		Args: []string{"-c", "setsid sleep 300 & sleep 300 & wait"},
	})
	if err != nil {
		t.Fatal(err)
	}
	stopOnCleanup(t, p)
	members := waitMembers(t, p, 2)
	for _, pid := range members {
		if st, err := readStat(pid); err == nil && st.pgrp != p.Pid {
			t.Errorf("member %d is not in the group %d", pid, p.Pid)
		}
	}
	// The setsid'd sleep is not ours to stop here; end it by hand.
	procs, err := listProcs()
	if err != nil {
		t.Fatal(err)
	}
	for pid, st := range procs {
		if st.ppid == p.Pid && st.session == pid {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if err := p.Stop(context.Background(), 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
}

func TestRunCapturesAndLogs(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "logs", "tool.log")
	t.Setenv("PGHOST", "elsewhere")
	base := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "PG") })
	var lines []string
	out, err := Run(context.Background(), Command{
		Path:    "sh",
		Args:    []string{"-c", `printf 'a\rb\n' ; echo "$GREETING $PGHOST" >&2`},
		BaseEnv: base,
		Env:     []string{"GREETING=hello"},
		Dir:     dir,
		Log:     log,
		OnLine:  func(l string) { lines = append(lines, l) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "a\rb\nhello \n" {
		t.Fatalf("output %q: want stdout and stderr, without the PGHOST left out of BaseEnv", out)
	}
	if strings.Join(lines, "|") != "a|b|hello" {
		t.Fatalf("lines %q", lines)
	}
	b, err := os.ReadFile(log)
	if err != nil || !strings.HasPrefix(string(b), "# sh -c ") || !strings.HasSuffix(string(b), "hello \n") {
		t.Fatalf("log %q, %v", b, err)
	}
}

func TestRunFailureQuotesOutput(t *testing.T) {
	_, err := Run(context.Background(), Command{Path: "sh", Args: []string{"-c", "echo 'ERROR: syntax error at or near' >&2; exit 3"}})
	if err == nil || !strings.Contains(err.Error(), "syntax error") || !strings.Contains(err.Error(), "sh failed (exit status 3)") {
		t.Fatalf("Run = %v, want the failure with the end of the output", err)
	}
	if _, err := Run(context.Background(), Command{Path: "/nonexistent/tool"}); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("missing tool = %v, want ErrNotFound", err)
	}
}

// TestRunTimeoutKillsGroup: a tool that forks is ended with everything it
// started when ctx ends.
func TestRunTimeoutKillsGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := Run(ctx, Command{Path: "sh", Args: []string{"-c", "sleep 300 & echo $! > " + pidFile + "; wait"}})
	if !errors.Is(err, sdk.ErrTimeout) {
		t.Fatalf("Run = %v, want ErrTimeout", err)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the forked child to be gone", func() bool {
		st, err := readStat(pid)
		return err != nil || st.dead()
	})
}

func TestRunAsUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("switching users needs root")
	}
	out, err := Run(context.Background(), Command{Path: "sh", Args: []string{"-c", "echo $(id -un) $HOME"}, User: "nobody", Dir: "/"})
	if err != nil || strings.TrimSpace(string(out)) != "nobody /nonexistent" {
		t.Fatalf("ran as %q, %v; want nobody with its home", out, err)
	}
	if _, err := Run(context.Background(), Command{Path: "id", User: "roster-no-such-user"}); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("unknown user = %v, want ErrNotFound", err)
	}
}

func TestLineWriterSplitsProgress(t *testing.T) {
	var lines []string
	w := &lineWriter{fn: func(l string) { lines = append(lines, l) }}
	w.Write([]byte("100/2000 kB (5%), 0/1 tablespace\r2000/2000 kB (100%), 1/1 tab"))
	w.Write([]byte("lespace\nwaiting\n"))
	w.flush()
	if strings.Join(lines, "|") != "100/2000 kB (5%), 0/1 tablespace|2000/2000 kB (100%), 1/1 tablespace|waiting" {
		t.Errorf("lines %q", lines)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not so after 10s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
