package local

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// killWait bounds how long a SIGKILLed machine may take to be gone.
const killWait = 5 * time.Second

// target names what Terminate stops: a snapshot of the machine's record.
type target struct {
	id        string
	pid       int
	startTime uint64
	cgroup    string
	workDir   string
}

// stopMachine ends every process of the machine: SIGTERM to all of them,
// SIGKILL to what is left after TerminateGrace. A machine with a cgroup
// is the cgroup's content; one without is found by a /proc sweep.
func (p *Provider) stopMachine(ctx context.Context, t target) error {
	if t.cgroup != "" {
		return p.stopCgroup(ctx, t)
	}
	return p.stopSwept(ctx, t)
}

// stopCgroup stops the machine's cgroup: whatever a process did (setsid,
// double fork, a new process group), it cannot leave the cgroup, and
// cgroup.kill kills every member in one step, so nothing forks past it.
func (p *Provider) stopCgroup(ctx context.Context, t target) error {
	log := p.log.With("machine_id", t.id, "cgroup", t.cgroup)
	if _, err := os.Stat(t.cgroup); os.IsNotExist(err) {
		return nil
	}
	signalCgroup(t.cgroup, syscall.SIGTERM)
	empty := func() bool { return !cgroupPopulated(t.cgroup) }
	ok, err := waitUntil(ctx, p.opts.TerminateGrace, 50*time.Millisecond, empty)
	if err != nil {
		return err
	}
	if !ok {
		log.Warn("machine did not stop on SIGTERM, killing it", "grace", p.opts.TerminateGrace)
		ok, err = waitUntil(ctx, killWait, 20*time.Millisecond, func() bool {
			if empty() {
				return true
			}
			if err := killCgroup(t.cgroup); err != nil {
				log.Warn("cgroup not killed", "error", err)
			}
			return false
		})
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("processes of cgroup %s survive SIGKILL: %v", t.cgroup, cgroupProcs(t.cgroup))
		}
	}
	return removeCgroup(t.cgroup)
}

// stopSwept stops a machine without a cgroup: its processes are those
// machineProcs finds, looked for again on every round, so that a service
// that forks while it stops is not missed.
func (p *Provider) stopSwept(ctx context.Context, t target) error {
	dirs := []string{t.workDir}
	if real, err := filepath.EvalSymlinks(t.workDir); err == nil && real != t.workDir {
		dirs = append(dirs, real)
	}
	find := func() map[int]uint64 { return machineProcs(t.pid, t.startTime, dirs) }
	termed := map[int]uint64{}
	term := func() bool {
		procs := find()
		for pid, start := range procs {
			if termed[pid] != start {
				termed[pid] = start
				signalVerified(pid, start, syscall.SIGTERM)
			}
		}
		return len(procs) == 0
	}
	if term() {
		return nil
	}
	ok, err := waitUntil(ctx, p.opts.TerminateGrace, 50*time.Millisecond, term)
	if ok || err != nil {
		return err
	}
	p.log.Warn("machine did not stop on SIGTERM, killing it", "machine_id", t.id, "grace", p.opts.TerminateGrace)
	var left map[int]uint64
	ok, err = waitUntil(ctx, killWait, 20*time.Millisecond, func() bool {
		left = find()
		for pid, start := range left {
			signalVerified(pid, start, syscall.SIGKILL)
		}
		return len(left) == 0
	})
	if err == nil && !ok {
		err = fmt.Errorf("processes %v of machine %s survive SIGKILL", pids(left), t.id)
	}
	return err
}

// machineProcs lists the live processes of a machine that has no cgroup,
// pid → start time: the members of the agent's session; the processes
// whose working directory, stdin, stdout or stderr lie under one of dirs
// (the work directory: a role's daemons run there, or log there, and
// setsid does not change that); and the descendants of all of these. The
// caller is never listed.
//
// The session counts only while its id cannot belong to another: the
// agent (sid, started at start) is alive, or no process has pid sid (a
// pid that names a session is not reused while the session has members).
func machineProcs(sid int, start uint64, dirs []string) map[int]uint64 {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	stats := map[int]procStat{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readStat(pid)
		if err != nil || st.state == 'Z' || st.state == 'X' {
			continue
		}
		stats[pid] = st
	}
	if st, ok := stats[sid]; ok && (st.session != sid || start != 0 && st.startTime != start) {
		sid = 0 // the pid is another process's now
	}
	self := os.Getpid()
	out := map[int]uint64{}
	children := map[int][]int{}
	for pid, st := range stats {
		children[st.ppid] = append(children[st.ppid], pid)
		if pid == self || pid == 1 {
			continue
		}
		if (sid > 0 && st.session == sid) || usesDir(pid, dirs) {
			out[pid] = st.startTime
		}
	}
	queue := pids(out)
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		for _, c := range children[pid] {
			if _, ok := out[c]; !ok && c != self {
				out[c] = stats[c].startTime
				queue = append(queue, c)
			}
		}
	}
	return out
}

// usesDir says whether pid's working directory or one of its standard
// streams lies under one of dirs. Other open files are not looked at: an
// operator's `tail -f agent.log` is not the machine's.
func usesDir(pid int, dirs []string) bool {
	base := "/proc/" + strconv.Itoa(pid) + "/"
	for _, l := range []string{"cwd", "fd/0", "fd/1", "fd/2"} {
		target, err := os.Readlink(base + l)
		if err != nil {
			continue
		}
		for _, d := range dirs {
			if within(target, d) {
				return true
			}
		}
	}
	return false
}

// within says whether path is dir or lies below it (m-1 is not below
// m-10's directory, nor m-10 below m-1's).
func within(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, dir+"/")
}

// signalVerified sends sig to pid if it is still the process that started
// at start. The process is opened first (a pidfd on Linux) and checked
// after: while it lives its pid is its own, and should it die in between,
// the signal goes to the dead process, never to a successor of its pid.
func signalVerified(pid int, start uint64, sig syscall.Signal) {
	proc, err := os.FindProcess(pid)
	if err != nil {
		return
	}
	defer proc.Release()
	if st, err := readStat(pid); err != nil || st.startTime != start {
		return
	}
	_ = proc.Signal(sig)
}

// waitUntil polls cond every so often until it holds (true), d has passed
// (false) or ctx ends (its error).
func waitUntil(ctx context.Context, d, every time.Duration, cond func() bool) (bool, error) {
	deadline := time.Now().Add(d)
	t := time.NewTicker(every)
	defer t.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			return false, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-t.C:
		}
	}
	return true, nil
}

func pids(m map[int]uint64) []int {
	out := make([]int, 0, len(m))
	for pid := range m {
		out = append(out, pid)
	}
	sort.Ints(out)
	return out
}
