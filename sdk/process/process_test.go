package process

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rosterhq/roster/sdk"
)

func newSup(t *testing.T) *Supervisor {
	t.Helper()
	s, err := NewSupervisor(filepath.Join(t.TempDir(), "run"), nil)
	if err != nil {
		t.Fatal(err)
	}
	s.PollInterval = 5 * time.Millisecond
	return s
}

// stopOnCleanup makes sure a test leaves no daemon behind, also on failure.
func stopOnCleanup(t *testing.T, p *Process) {
	t.Cleanup(func() {
		_ = p.signalGroup(syscall.SIGKILL)
	})
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func waitMembers(t *testing.T, p *Process, n int) []int {
	t.Helper()
	ctx := ctxT(t, 10*time.Second)
	for {
		m, err := p.Members()
		if err != nil {
			t.Fatal(err)
		}
		if len(m) >= n {
			return m
		}
		if ctx.Err() != nil {
			t.Fatalf("group of %s has %v, want %d members", p.Name, m, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestStopKillsWholeGroupAfterDeadline(t *testing.T) {
	s := newSup(t)
	// The shell dies on SIGTERM but its children do not: only the group
	// kill after the deadline ends them.
	p, err := s.Start(context.Background(), Spec{
		Name: "stubborn",
		Path: "sh",
		Args: []string{"-c", "trap '' TERM; sleep 300 & sleep 300 & wait"},
	})
	if err != nil {
		t.Fatal(err)
	}
	stopOnCleanup(t, p)
	members := waitMembers(t, p, 3)
	if err := p.Stop(context.Background(), 100*time.Millisecond); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	for _, pid := range members {
		if st, err := readStat(pid); err == nil && !st.dead() && st.pgrp == p.Pid {
			t.Errorf("pid %d of the group survived Stop", pid)
		}
	}
	if left, _ := p.Members(); len(left) != 0 {
		t.Errorf("Members after Stop = %v", left)
	}
	if _, err := s.Find("stubborn"); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Find after Stop = %v, want ErrNotRunning", err)
	}
	// Twice is fine.
	if err := s.Stop(context.Background(), "stubborn", time.Second); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestStopGraceful(t *testing.T) {
	s := newSup(t)
	p, err := s.Start(context.Background(), Spec{
		Name: "polite",
		Path: "sh",
		Args: []string{"-c", "trap 'echo bye; exit 0' TERM; echo hello; while :; do sleep 0.02; done"},
	})
	if err != nil {
		t.Fatal(err)
	}
	stopOnCleanup(t, p)
	if err := p.WaitReady(ctxT(t, 10*time.Second), func(context.Context) error {
		if strings.Contains(Tail(p.Stdout, 100), "hello") {
			return nil
		}
		return errors.New("no hello yet")
	}); err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(context.Background(), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	// Exit status 0 means the trap ran: the daemon stopped by itself, not
	// by SIGKILL.
	if err := p.ExitError(); err != nil {
		t.Fatalf("daemon exit = %v, want a clean exit", err)
	}
	if got := Tail(p.Stdout, 100); !strings.Contains(got, "bye") {
		t.Fatalf("stdout log = %q, want the trap's bye", got)
	}
	logs := p.Logs("polite")
	if len(logs) != 2 || logs[0].Name != "polite/polite.out.log" {
		t.Fatalf("Logs = %+v", logs)
	}
}

func TestFindAfterRestartAndStopCommand(t *testing.T) {
	s := newSup(t)
	p, err := s.Start(context.Background(), Spec{
		Name:        "sleeper",
		Path:        "sleep",
		Args:        []string{"300"},
		StopCommand: []string{"sh", "-c", "kill -TERM $(cat " + s.PidFile("sleeper") + ")"},
	})
	if err != nil {
		t.Fatal(err)
	}
	stopOnCleanup(t, p)

	// A plugin process that restarted has only the directory.
	s2, err := NewSupervisor(s.Dir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	found, err := s2.Find("sleeper")
	if err != nil {
		t.Fatal(err)
	}
	if found.Pid != p.Pid || !found.Alive() {
		t.Fatalf("found pid %d alive=%v, want %d alive", found.Pid, found.Alive(), p.Pid)
	}
	if names, _ := s2.Names(); len(names) != 1 || names[0] != "sleeper" {
		t.Fatalf("Names = %v", names)
	}
	if _, err := s2.Start(context.Background(), Spec{Name: "sleeper", Path: "sleep", Args: []string{"1"}}); !errors.Is(err, ErrAlreadyRunning) {
		t.Fatalf("second Start = %v, want ErrAlreadyRunning", err)
	}
	if err := s2.Stop(context.Background(), "sleeper", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if p.Alive() {
		t.Fatal("daemon alive after Stop")
	}
	// SIGTERM from the stop command, not SIGKILL.
	var ee *exec.ExitError
	if err := p.ExitError(); !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGTERM {
		t.Fatalf("exit = %v, want killed by SIGTERM", err)
	}
}

func TestRecycledPidIsNotOurs(t *testing.T) {
	s := newSup(t)
	// Our own pid with a start time that is not ours: a recycled pid.
	st := State{Name: "ghost", Pid: os.Getpid(), StartTime: 1, Path: "/bin/true"}
	b, _ := json.Marshal(st)
	if err := os.WriteFile(s.statePath("ghost"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := s.Find("ghost")
	if err != nil {
		t.Fatal(err)
	}
	if p.Alive() {
		t.Fatal("a recycled pid counts as alive")
	}
	if m, _ := p.Members(); len(m) != 0 {
		t.Fatalf("Members of a recycled pid = %v", m)
	}
	// Stop must not signal the test process; it only forgets the record.
	if err := p.Stop(context.Background(), time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Find("ghost"); !errors.Is(err, ErrNotRunning) {
		t.Fatal("record not removed")
	}
}

func TestWaitReadyReportsEarlyExit(t *testing.T) {
	s := newSup(t)
	p, err := s.Start(context.Background(), Spec{
		Name: "broken",
		Path: "sh",
		Args: []string{"-c", "echo 'AH00015: Unable to open logs' >&2; exit 3"},
	})
	if err != nil {
		t.Fatal(err)
	}
	stopOnCleanup(t, p)
	err = p.WaitReady(ctxT(t, 10*time.Second), func(context.Context) error { return errors.New("not yet") })
	if !errors.Is(err, sdk.ErrUnavailable) || !strings.Contains(err.Error(), "Unable to open logs") {
		t.Fatalf("WaitReady = %v, want the daemon's stderr", err)
	}
}

func TestWaitReadyTimeout(t *testing.T) {
	s := newSup(t)
	p, err := s.Start(context.Background(), Spec{Name: "slow", Path: "sleep", Args: []string{"300"}})
	if err != nil {
		t.Fatal(err)
	}
	stopOnCleanup(t, p)
	err = p.WaitReady(ctxT(t, 50*time.Millisecond), func(context.Context) error { return errors.New("port closed") })
	if !errors.Is(err, sdk.ErrTimeout) || !strings.Contains(err.Error(), "port closed") {
		t.Fatalf("WaitReady = %v, want a timeout naming the probe's error", err)
	}
	if err := p.Stop(context.Background(), 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestStartErrors(t *testing.T) {
	s := newSup(t)
	if _, err := s.Start(context.Background(), Spec{Name: "../x", Path: "sleep"}); err == nil {
		t.Error("a name with a slash was accepted")
	}
	if _, err := s.Start(context.Background(), Spec{Name: "nope", Path: "/nonexistent/daemon"}); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("missing executable = %v, want ErrNotFound", err)
	}
	if err := s.Stop(context.Background(), "never-started", time.Second); err != nil {
		t.Errorf("Stop of a daemon never started = %v", err)
	}
}

func TestParseStat(t *testing.T) {
	line := "1234 (a (weird) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10"
	st, err := parseStat(1234, line)
	if err != nil {
		t.Fatal(err)
	}
	if st.state != 'S' || st.ppid != 1 || st.pgrp != 1234 || st.session != 1234 || st.startTime != 98765 {
		t.Fatalf("parsed %+v", st)
	}
	if _, err := parseStat(1, "garbage"); err == nil {
		t.Fatal("garbage parsed")
	}
}

func TestLogsIn(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"b.log", "a.log", "c.txt"} {
		os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o644)
	}
	os.Mkdir(filepath.Join(dir, "d.log"), 0o755)
	got := LogsIn(dir, "*.log", "apache")
	if len(got) != 2 || got[0].Name != "apache/a.log" || got[1].Name != "apache/b.log" {
		t.Fatalf("LogsIn = %+v", got)
	}
	if got := ExistingLogs(sdk.LogFile{Name: "x", Path: filepath.Join(dir, "missing")}); len(got) != 0 {
		t.Fatalf("ExistingLogs kept a missing file: %+v", got)
	}
}

func TestStartAsUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("switching users needs root")
	}
	s := newSup(t)
	if _, err := s.Start(context.Background(), Spec{Name: "x", Path: "id", User: "roster-no-such-user"}); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("unknown user = %v, want ErrNotFound", err)
	}
	p, err := s.Start(context.Background(), Spec{Name: "whoami", Path: "sh", Args: []string{"-c", "echo $(id -un) $HOME"}, User: "nobody", Dir: "/"})
	if err != nil {
		t.Fatal(err)
	}
	stopOnCleanup(t, p)
	if left, err := p.WaitExited(ctxT(t, 10*time.Second)); err != nil || len(left) > 0 {
		t.Fatalf("WaitExited = %v, %v", left, err)
	}
	if got := Tail(p.Stdout, 100); got != "nobody /nonexistent" {
		t.Fatalf("daemon ran as %q, want nobody with its home", got)
	}
}
