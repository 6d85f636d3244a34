package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rosterhq/roster/core/provider"
)

// The test binary doubles as the machine's "agent": with helperEnv set it
// writes its pid to started, starts a child in its session (a plugin
// stand-in), and waits for SIGTERM (or ignores it, in mode "stubborn").
const helperEnv = "ROSTER_LOCAL_PROVIDER_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		helper(mode)
		return
	}
	os.Exit(m.Run())
}

func helper(mode string) {
	switch mode {
	case "daemon", "leaf":
		daemon(mode)
		return
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	if mode == "stubborn" {
		signal.Ignore(syscall.SIGTERM)
	}
	child := exec.Command("sleep", "3600")
	if err := child.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	_ = os.WriteFile("child", []byte(strconv.Itoa(child.Process.Pid)), 0o644)
	if mode == "escape" {
		if err := startEscapees(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
	}
	// Written last: once "started" exists, the child's pid is there too.
	_ = os.WriteFile("started.tmp", []byte(strconv.Itoa(os.Getpid())), 0o644)
	_ = os.Rename("started.tmp", "started")
	<-sigs
	os.Exit(0)
}

func newProvider(t *testing.T, dir string, mut func(*Options)) *Provider {
	t.Helper()
	opts := Options{
		Exe:       os.Args[0],
		DataDir:   dir,
		AgentArgs: func(id string) []string { return []string{"-test.run=^$", "machine=" + id} },
		Env:       []string{helperEnv + "=plain"},
	}
	if mut != nil {
		mut(&opts)
	}
	p, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// cleanupMachines terminates every machine of dir when the test ends,
// whatever happened.
func cleanupMachines(t *testing.T, dir string) {
	t.Cleanup(func() {
		p, err := New(Options{DataDir: dir, Exe: os.Args[0], AgentArgs: func(string) []string { return nil }, TerminateGrace: time.Second})
		if err != nil {
			t.Error(err)
			return
		}
		defer p.Close()
		ms, _ := p.List(context.Background(), nil)
		for _, m := range ms {
			if err := p.Terminate(context.Background(), m.ID); err != nil {
				t.Error(err)
			}
		}
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 20s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// started waits for the helper of machine id to be up and returns its pid
// and its child's.
func started(t *testing.T, dir, id string) (pid, child int) {
	t.Helper()
	path := filepath.Join(dir, "machines", id, "started")
	waitFor(t, "machine "+id+" started", func() bool { _, err := os.Stat(path); return err == nil })
	read := func(p string) int {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		n, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	return read(path), read(filepath.Join(dir, "machines", id, "child"))
}

func listed(t *testing.T, p *Provider, tags map[string]string) map[string]provider.Machine {
	t.Helper()
	ms, err := p.List(context.Background(), tags)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]provider.Machine{}
	for _, m := range ms {
		out[m.ID] = m
	}
	return out
}

func TestLaunchListTerminate(t *testing.T) {
	dir := t.TempDir()
	cleanupMachines(t, dir)
	p := newProvider(t, dir, nil)
	ctx := context.Background()
	m, err := p.Launch(ctx, provider.LaunchRequest{Token: "tok-1", MachineID: "m-1", Tags: map[string]string{provider.TagCluster: "c"}})
	if err != nil {
		t.Fatal(err)
	}
	if m.ID != "m-1" || m.State != StateRunning || m.Tags[provider.TagCluster] != "c" || m.Tags[provider.TagMachine] != "m-1" {
		t.Fatalf("machine = %+v", m)
	}
	pid, child := started(t, dir, "m-1")
	if m.ProviderID != "pid:"+strconv.Itoa(pid) {
		t.Fatalf("provider id %s, pid %d", m.ProviderID, pid)
	}
	// The machine is a session of its own: not in the orchestrator's
	// process group, so a SIGKILLed orchestrator does not take it along.
	st, err := readStat(pid)
	if err != nil || st.session != pid {
		t.Fatalf("agent session %d (%v), want %d", st.session, err, pid)
	}
	if got := listed(t, p, map[string]string{provider.TagCluster: "c"}); len(got) != 1 || got["m-1"].State != StateRunning {
		t.Fatalf("list = %+v", got)
	}
	if got := listed(t, p, map[string]string{provider.TagCluster: "other"}); len(got) != 0 {
		t.Fatalf("list by another cluster = %+v", got)
	}

	if err := p.Terminate(ctx, "m-1"); err != nil {
		t.Fatal(err)
	}
	if alive(pid, 0) || alive(child, 0) {
		t.Fatalf("after terminate: agent alive %v, its child alive %v", alive(pid, 0), alive(child, 0))
	}
	if got := listed(t, p, nil); len(got) != 0 {
		t.Fatalf("terminated machine listed: %+v", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "machines", "m-1")); !os.IsNotExist(err) {
		t.Fatalf("work dir left: %v", err)
	}
	// Already gone, or never there: not an error.
	if err := p.Terminate(ctx, "m-1"); err != nil {
		t.Fatal(err)
	}
	if err := p.Terminate(ctx, "nope"); err != nil {
		t.Fatal(err)
	}
	// The token still names the terminated machine (as a cloud's does).
	again, err := p.Launch(ctx, provider.LaunchRequest{Token: "tok-1", MachineID: "m-9"})
	if err != nil || again.ID != "m-1" || again.State != StateTerminated {
		t.Fatalf("launch with a used token: %+v, %v", again, err)
	}
}

func TestIdempotentLaunchToken(t *testing.T) {
	dir := t.TempDir()
	cleanupMachines(t, dir)
	p := newProvider(t, dir, nil)
	ctx := context.Background()
	a, err := p.Launch(ctx, provider.LaunchRequest{Token: "tok", MachineID: "m-1"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.Launch(ctx, provider.LaunchRequest{Token: "tok", MachineID: "m-1"})
	if err != nil {
		t.Fatal(err)
	}
	if a.ID != b.ID || a.ProviderID != b.ProviderID {
		t.Fatalf("two launches with one token: %+v and %+v", a, b)
	}
	// Across a restart of the orchestrator too.
	p.Close()
	p2 := newProvider(t, dir, nil)
	c, err := p2.Launch(ctx, provider.LaunchRequest{Token: "tok", MachineID: "m-1"})
	if err != nil || c.ProviderID != a.ProviderID {
		t.Fatalf("after restart: %+v, %v; want %s", c, err, a.ProviderID)
	}
	if got := listed(t, p2, nil); len(got) != 1 {
		t.Fatalf("list = %+v", got)
	}
	// The same id under another token is a mistake, not a second machine.
	if _, err := p2.Launch(ctx, provider.LaunchRequest{Token: "tok-2", MachineID: "m-1"}); err == nil {
		t.Fatal("launched a second machine m-1")
	}
}

func TestRestartReadoptsAndSeesStopped(t *testing.T) {
	dir := t.TempDir()
	cleanupMachines(t, dir)
	p := newProvider(t, dir, nil)
	ctx := context.Background()
	for _, id := range []string{"m-1", "m-2"} {
		if _, err := p.Launch(ctx, provider.LaunchRequest{MachineID: id, Tags: map[string]string{provider.TagCluster: "c"}}); err != nil {
			t.Fatal(err)
		}
	}
	pid1, _ := started(t, dir, "m-1")
	pid2, _ := started(t, dir, "m-2")
	p.Close()

	p2 := newProvider(t, dir, nil)
	got := listed(t, p2, map[string]string{provider.TagCluster: "c"})
	if len(got) != 2 || got["m-1"].State != StateRunning || got["m-1"].ProviderID != "pid:"+strconv.Itoa(pid1) {
		t.Fatalf("after restart: %+v", got)
	}
	// A machine whose agent dies shows as stopped.
	if err := syscall.Kill(pid2, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "m-2 stopped", func() bool { return listed(t, p2, nil)["m-2"].State == StateStopped })
	if listed(t, p2, nil)["m-1"].State != StateRunning {
		t.Fatal("m-1 no longer running")
	}
	// An adopted machine (not this process's child) terminates too.
	if err := p2.Terminate(ctx, "m-1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "m-1 gone", func() bool { return !alive(pid1, 0) })
	if err := p2.Terminate(ctx, "m-2"); err != nil {
		t.Fatal(err)
	}
	if got := listed(t, p2, nil); len(got) != 0 {
		t.Fatalf("list = %+v", got)
	}
}

func TestPidReuseIsNotTheMachine(t *testing.T) {
	dir := t.TempDir()
	cleanupMachines(t, dir)
	p := newProvider(t, dir, nil)
	if _, err := p.Launch(context.Background(), provider.LaunchRequest{MachineID: "m-1"}); err != nil {
		t.Fatal(err)
	}
	pid, _ := started(t, dir, "m-1")
	// Make the record name a live process of another start time: this test
	// process, as if the agent's pid had been reused by it.
	p.mu.Lock()
	p.machines["m-1"].Pid = os.Getpid()
	p.mu.Unlock()
	if got := listed(t, p, nil)["m-1"]; got.State != StateStopped {
		t.Fatalf("a reused pid is taken for the agent: %+v", got)
	}
	p.mu.Lock()
	p.machines["m-1"].Pid, p.machines["m-1"].State = pid, StateRunning
	err := p.saveLocked()
	p.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Terminate(context.Background(), "m-1"); err != nil || alive(pid, 0) {
		t.Fatalf("terminate: %v, alive %v", err, alive(pid, 0))
	}
}

func TestBootDelay(t *testing.T) {
	t.Run("pending until booted", func(t *testing.T) {
		dir := t.TempDir()
		cleanupMachines(t, dir)
		p := newProvider(t, dir, func(o *Options) { o.BootDelay = 50 * time.Millisecond })
		m, err := p.Launch(context.Background(), provider.LaunchRequest{MachineID: "m-1"})
		if err != nil {
			t.Fatal(err)
		}
		if m.State != StatePending || m.ProviderID != "" {
			t.Fatalf("machine = %+v, want pending with no process", m)
		}
		pid, _ := started(t, dir, "m-1")
		if got := listed(t, p, nil)["m-1"]; got.State != StateRunning || got.ProviderID != "pid:"+strconv.Itoa(pid) {
			t.Fatalf("machine = %+v", got)
		}
	})
	t.Run("terminated while booting never starts", func(t *testing.T) {
		dir := t.TempDir()
		cleanupMachines(t, dir)
		p := newProvider(t, dir, func(o *Options) { o.BootDelay = time.Hour; o.KeepTerminated = true })
		if _, err := p.Launch(context.Background(), provider.LaunchRequest{MachineID: "m-1"}); err != nil {
			t.Fatal(err)
		}
		if got := listed(t, p, nil)["m-1"]; got.State != StatePending {
			t.Fatalf("machine = %+v", got)
		}
		if err := p.Terminate(context.Background(), "m-1"); err != nil {
			t.Fatal(err)
		}
		p.mu.Lock()
		pending := len(p.boots)
		p.mu.Unlock()
		if pending != 0 {
			t.Fatal("boot still scheduled")
		}
		if _, err := os.Stat(filepath.Join(dir, "machines", "m-1", "started")); !os.IsNotExist(err) {
			t.Fatalf("terminated machine booted: %v", err)
		}
	})
	t.Run("a restart resumes the boot", func(t *testing.T) {
		dir := t.TempDir()
		cleanupMachines(t, dir)
		p := newProvider(t, dir, func(o *Options) { o.BootDelay = 100 * time.Millisecond })
		if _, err := p.Launch(context.Background(), provider.LaunchRequest{MachineID: "m-1"}); err != nil {
			t.Fatal(err)
		}
		p.Close() // before the boot: the timer is stopped
		p2 := newProvider(t, dir, nil)
		started(t, dir, "m-1")
		waitFor(t, "m-1 running", func() bool { return listed(t, p2, nil)["m-1"].State == StateRunning })
	})
}

func TestCapacity(t *testing.T) {
	dir := t.TempDir()
	cleanupMachines(t, dir)
	p := newProvider(t, dir, func(o *Options) { o.MaxMachines = 1 })
	ctx := context.Background()
	if _, err := p.Launch(ctx, provider.LaunchRequest{MachineID: "m-1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Launch(ctx, provider.LaunchRequest{MachineID: "m-2"}); !errors.Is(err, provider.ErrCapacity) {
		t.Fatalf("second launch: %v, want ErrCapacity", err)
	}
	if err := p.Terminate(ctx, "m-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Launch(ctx, provider.LaunchRequest{MachineID: "m-2"}); err != nil {
		t.Fatal(err)
	}
}

func TestTerminateKillsAfterGrace(t *testing.T) {
	dir := t.TempDir()
	cleanupMachines(t, dir)
	p := newProvider(t, dir, func(o *Options) {
		o.Env = []string{helperEnv + "=stubborn"}
		o.TerminateGrace = 200 * time.Millisecond
	})
	if _, err := p.Launch(context.Background(), provider.LaunchRequest{MachineID: "m-1"}); err != nil {
		t.Fatal(err)
	}
	pid, child := started(t, dir, "m-1")
	if err := p.Terminate(context.Background(), "m-1"); err != nil {
		t.Fatal(err)
	}
	if alive(pid, 0) || alive(child, 0) {
		t.Fatal("a machine that ignores SIGTERM survived")
	}
}

func TestBadLaunchRequests(t *testing.T) {
	p := newProvider(t, t.TempDir(), nil)
	for _, req := range []provider.LaunchRequest{
		{MachineID: ""},
		{MachineID: "../x"},
		{MachineID: "m-1", Token: strings.Repeat("t", 65)},
	} {
		if _, err := p.Launch(context.Background(), req); err == nil {
			t.Errorf("launch %+v succeeded", req)
		}
	}
}
