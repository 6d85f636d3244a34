package local

import (
	"context"
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

// startEscapees runs in the helper agent (mode "escape", working directory
// the machine's) and starts what a role plugin's services look like to the
// provider: daemons in sessions of their own that ignore SIGTERM.
//
//   - svc: working directory inside the work directory (memcached,
//     postgres); its child svc-leaf works in / and leads a session too,
//     so only its parent ties it to the machine;
//   - logger: works in /, stderr to a file in the work directory (apache,
//     which changes to / even in the foreground).
//
// Their pids go to the file "escapees", one "name pid" line each.
func startEscapees() error {
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	svcDir := filepath.Join(wd, "svc")
	if err := os.Mkdir(svcDir, 0o755); err != nil {
		return err
	}
	svc := helperCmd("daemon", svcDir)
	if err := svc.Start(); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(svcDir, "logger.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	logger := helperCmd("leaf", "/")
	logger.Stderr = logf
	if err := logger.Start(); err != nil {
		return err
	}
	var leaf []byte
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if leaf, err = os.ReadFile(filepath.Join(svcDir, "leaf.pid")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("svc-leaf not started: %w", err)
		}
	}
	lines := fmt.Sprintf("svc %d\nsvc-leaf %s\nlogger %d\n", svc.Process.Pid, leaf, logger.Process.Pid)
	return os.WriteFile("escapees", []byte(lines), 0o644)
}

func helperCmd(mode, dir string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	return cmd
}

// daemon is a helper process that ignores SIGTERM; a "daemon" starts a
// "leaf" and writes its pid to leaf.pid.
func daemon(mode string) {
	signal.Ignore(syscall.SIGTERM)
	if mode == "daemon" {
		leaf := helperCmd("leaf", "/")
		if err := leaf.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		_ = os.WriteFile("leaf.pid.tmp", []byte(strconv.Itoa(leaf.Process.Pid)), 0o644)
		_ = os.Rename("leaf.pid.tmp", "leaf.pid")
	}
	for {
		time.Sleep(time.Hour)
	}
}

// proc is one process of a machine, named by pid and start time.
type proc struct {
	name  string
	pid   int
	start uint64
}

func (p proc) alive() bool { return alive(p.pid, p.start) }

// machineOf waits for the escape helper of machine id and returns its
// processes: the agent, its child, and the escapees. A test cleanup
// SIGKILLs whatever of them is left, whatever happened.
func machineOf(t *testing.T, dir, id string) []proc {
	t.Helper()
	pid, child := started(t, dir, id)
	b, err := os.ReadFile(filepath.Join(dir, "machines", id, "escapees"))
	if err != nil {
		t.Fatal(err)
	}
	procs := []proc{{name: "agent", pid: pid}, {name: "agent-child", pid: child}}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var p proc
		if _, err := fmt.Sscan(line, &p.name, &p.pid); err != nil {
			t.Fatalf("escapees %q: %v", line, err)
		}
		procs = append(procs, p)
	}
	for i := range procs {
		st, err := readStat(procs[i].pid)
		if err != nil {
			t.Fatalf("%s of %s: %v", procs[i].name, id, err)
		}
		procs[i].start = st.startTime
	}
	t.Cleanup(func() {
		for _, p := range procs {
			signalVerified(p.pid, p.start, syscall.SIGKILL)
		}
	})
	return procs
}

// TestTerminateLeavesNothing: services that left the machine's session
// (setsid), ignore SIGTERM, and work in the work directory, or log there,
// or only descend from such a service, end with the machine, whether its
// agent still runs or was SIGKILLed first; another machine's processes
// (m-10, whose directory name extends m-1's) are untouched. Once through a
// cgroup per machine, where this host allows it, and once through the
// /proc sweep, always.
func TestTerminateLeavesNothing(t *testing.T) {
	// "cgroup, moved in": the agent is started as where clone3 is refused,
	// and moved into its cgroup once it runs.
	for _, mech := range []string{"cgroup", "cgroup, moved in", "sweep"} {
		t.Run(mech, func(t *testing.T) {
			if mech != "sweep" {
				probe := t.TempDir()
				parent, err := cgroupParent(probe)
				if err != nil {
					t.Skipf("cgroups are not usable on this host (%v); the sweep subtest still runs", err)
				}
				removeCgroupParent(parent)
			}
			for _, agentDead := range []bool{false, true} {
				name := "agent running"
				if agentDead {
					name = "agent SIGKILLed first"
				}
				t.Run(name, func(t *testing.T) {
					testTerminateLeavesNothing(t, func(o *Options) {
						o.NoCgroup = mech == "sweep"
						o.noClone3 = mech == "cgroup, moved in"
					}, agentDead)
				})
			}
		})
	}
}

func testTerminateLeavesNothing(t *testing.T, mech func(*Options), agentDead bool) {
	dir := t.TempDir()
	cleanupMachines(t, dir)
	p := newProvider(t, dir, func(o *Options) {
		o.Env = []string{helperEnv + "=escape"}
		o.TerminateGrace = 300 * time.Millisecond
		mech(o)
	})
	sweep := p.opts.NoCgroup
	ctx := context.Background()
	machines := map[string][]proc{}
	for _, id := range []string{"m-1", "m-10"} {
		if _, err := p.Launch(ctx, provider.LaunchRequest{MachineID: id}); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"m-1", "m-10"} {
		machines[id] = machineOf(t, dir, id)
		p.mu.Lock()
		cg := p.machines[id].Cgroup
		p.mu.Unlock()
		switch {
		case sweep && cg != "":
			t.Fatalf("machine %s has cgroup %s with NoCgroup", id, cg)
		case !sweep && cg == "":
			t.Fatalf("machine %s has no cgroup", id)
		case !sweep:
			// Every process is in the machine's cgroup, sessions of their
			// own notwithstanding.
			want := "/" + cgroupDirName(dir) + "/" + id
			for _, pr := range machines[id] {
				b, err := os.ReadFile("/proc/" + strconv.Itoa(pr.pid) + "/cgroup")
				if err != nil || !strings.Contains(string(b), "0::") || !strings.HasSuffix(strings.TrimSpace(string(b)), want) {
					t.Fatalf("%s of %s: cgroup %q (%v), want …%s", pr.name, id, b, err, want)
				}
			}
		}
		for _, pr := range machines[id][2:] {
			if st, _ := readStat(pr.pid); st.session != pr.pid {
				t.Fatalf("%s of %s: session %d, want its own", pr.name, id, st.session)
			}
		}
	}

	if agentDead {
		agent := machines["m-1"][0]
		if err := syscall.Kill(agent.pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "m-1 stopped", func() bool { return listed(t, p, nil)["m-1"].State == StateStopped })
		for _, pr := range machines["m-1"][2:] {
			if !pr.alive() {
				t.Fatalf("%s died with the agent: nothing left to test", pr.name)
			}
		}
	}
	if err := p.Terminate(ctx, "m-1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "no process of m-1", func() bool {
		for _, pr := range machines["m-1"] {
			if pr.alive() {
				return false
			}
		}
		return true
	})
	for _, pr := range machines["m-10"] {
		if !pr.alive() {
			t.Fatalf("terminating m-1 ended %s of m-10", pr.name)
		}
	}
	if !sweep {
		if _, err := os.Stat(filepath.Join(p.cgParent, "m-1")); !os.IsNotExist(err) {
			t.Fatalf("cgroup of m-1 left: %v", err)
		}
	}

	if err := p.Terminate(ctx, "m-10"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "no process of m-10", func() bool {
		for _, pr := range machines["m-10"] {
			if pr.alive() {
				return false
			}
		}
		return true
	})
	if !sweep {
		if _, err := os.Stat(p.cgParent); !os.IsNotExist(err) {
			t.Fatalf("cgroup %s left after the last machine: %v", p.cgParent, err)
		}
	}
}

func TestWithin(t *testing.T) {
	for _, c := range []struct {
		path, dir string
		want      bool
	}{
		{"/d/machines/m-1", "/d/machines/m-1", true},
		{"/d/machines/m-1/svc", "/d/machines/m-1", true},
		{"/d/machines/m-10", "/d/machines/m-1", false},
		{"/d/machines/m-10/svc", "/d/machines/m-1", false},
		{"/d/machines", "/d/machines/m-1", false},
	} {
		if got := within(c.path, c.dir); got != c.want {
			t.Errorf("within(%q, %q) = %v", c.path, c.dir, got)
		}
	}
}

// TestShellStep: the step for hosts that refuse clone3 moves the very
// process that becomes the agent (same pid) and tells whether it could;
// when it cannot, the agent starts all the same. The agent does not
// inherit the step's reporting pipe.
func TestShellStep(t *testing.T) {
	run := func(dir string) (bool, string, int) {
		t.Helper()
		var out strings.Builder
		cmd := exec.Command("/bin/sh", "-c", `if [ -e /proc/self/fd/3 ]; then echo leaked; else echo agent; fi`)
		cmd.Stdout = &out
		moved, err := (&machineCgroup{dir: dir}).startThroughShell(cmd)
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
		return moved, strings.TrimSpace(out.String()), cmd.Process.Pid
	}
	dir := t.TempDir() // a plain directory: cgroup.procs is a file
	moved, out, pid := run(dir)
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if !moved || out != "agent" || err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(pid) {
		t.Fatalf("moved %v, agent said %q, cgroup.procs %q (%v), pid %d", moved, out, b, err, pid)
	}
	moved, out, _ = run(filepath.Join(dir, "missing"))
	if moved || out != "agent" {
		t.Fatalf("into a missing cgroup: moved %v, agent said %q", moved, out)
	}
}

// TestPruneCgroups: empty machine cgroups older than the cut-off go, and
// their roster-* directory once empty; a populated or a new one stays.
func TestPruneCgroups(t *testing.T) {
	parent, err := cgroupParent(t.TempDir())
	if err != nil {
		t.Skipf("cgroups are not usable on this host: %v", err)
	}
	removeCgroupParent(parent)
	// A private "own" cgroup, so that only this test's cgroups are pruned.
	own := filepath.Join(filepath.Dir(parent), fmt.Sprintf("prune-test-%d", os.Getpid()))
	if err := os.Mkdir(own, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = removeCgroupNow(own) })
	group := filepath.Join(own, "roster-x")
	busy, err := newCgroup(group, "busy")
	if err != nil {
		t.Fatal(err)
	}
	idle, err := newCgroup(group, "idle")
	if err != nil {
		t.Fatal(err)
	}
	idle.release()
	sleep := exec.Command("sleep", "3600")
	sleep.SysProcAttr = &syscall.SysProcAttr{}
	setCgroupFD(sleep.SysProcAttr, busy)
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	busy.release()
	t.Cleanup(func() { _ = sleep.Process.Kill(); _ = sleep.Wait() })

	exists := func(dir string) bool { _, err := os.Stat(dir); return err == nil }
	pruneCgroups(own, time.Now().Add(-time.Hour))
	if !exists(idle.dir) || !exists(busy.dir) {
		t.Fatal("a new cgroup was pruned")
	}
	pruneCgroups(own, time.Now().Add(time.Hour))
	if exists(idle.dir) || !exists(busy.dir) || !exists(group) {
		t.Fatalf("after pruning: idle %v (want gone), busy %v, roster-x %v", exists(idle.dir), exists(busy.dir), exists(group))
	}
	_ = sleep.Process.Kill()
	_ = sleep.Wait()
	waitFor(t, "busy cgroup empty", func() bool { return !cgroupPopulated(busy.dir) })
	pruneCgroups(own, time.Now().Add(time.Hour))
	if exists(group) {
		t.Fatal("empty roster-x left")
	}
}
