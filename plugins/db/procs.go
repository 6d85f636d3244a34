package db

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rosterhq/roster/sdk"
	"github.com/rosterhq/roster/sdk/process"
)

// Every child of the postmaster (backends, checkpointer, walwriter,
// walsenders…) calls setsid() as it starts (InitPostmasterChild), so it is
// not in the postmaster's process group, which is all sdk/process accounts
// for. After a fast shutdown the postmaster exits last, so nothing is left;
// but after the supervisor's SIGKILL of the group the children live on
// until they notice the postmaster is gone (a backend in a long query may
// not for a while). stopPostgres therefore notes the children first and
// makes sure they are gone too.

// procInfo is what stopPostgres needs of /proc/<pid>/stat.
type procInfo struct {
	ppid      int
	startTime uint64
	dead      bool
}

func readProc(pid int) (procInfo, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procInfo{}, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procInfo{}, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return procInfo{}, false
	}
	ppid, err1 := strconv.Atoi(f[1])
	start, err2 := strconv.ParseUint(f[19], 10, 64)
	if err1 != nil || err2 != nil {
		return procInfo{}, false
	}
	return procInfo{ppid: ppid, startTime: start, dead: f[0] == "Z" || f[0] == "X"}, true
}

// children returns the live children of pid with their start times.
func children(pid int) map[int]uint64 {
	out := map[int]uint64{}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	for _, e := range ents {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pi, ok := readProc(c); ok && pi.ppid == pid && !pi.dead {
			out[c] = pi.startTime
		}
	}
	return out
}

// alive keeps the processes that still run with the start time noted, so
// that a recycled pid is never touched.
func alive(procs map[int]uint64) []int {
	var out []int
	for pid, start := range procs {
		if pi, ok := readProc(pid); ok && !pi.dead && pi.startTime == start {
			out = append(out, pid)
		}
	}
	return out
}

// clusterPids returns the postmaster and its children, for tests and logs.
func clusterPids(sup *process.Supervisor) []int {
	p, err := sup.Find(postgresName)
	if err != nil || !p.Alive() {
		return nil
	}
	pids := []int{p.Pid}
	for c := range children(p.Pid) {
		pids = append(pids, c)
	}
	return pids
}

// stopPostgres stops the cluster: a fast shutdown (SIGINT), then SIGKILL
// of the postmaster's group past stopTimeout, then SIGKILL of any child
// that outlived it.
func stopPostgres(ctx context.Context, sup *process.Supervisor) error {
	p, err := sup.Find(postgresName)
	if errors.Is(err, process.ErrNotRunning) {
		return nil
	}
	if err != nil {
		return err
	}
	kids := map[int]uint64{}
	if p.Alive() {
		kids = children(p.Pid)
	}
	stopErr := p.Stop(ctx, stopTimeout)
	left := alive(kids)
	if len(left) == 0 {
		return stopErr
	}
	sdk.Logger(ctx).Named("db").Warn("postgres children outlived the postmaster, killing them", "pids", left)
	for _, pid := range left {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(alive(kids)) > 0 && time.Now().Before(deadline) {
		time.Sleep(pollInterval)
	}
	if left := alive(kids); len(left) > 0 {
		return errors.Join(stopErr, sdk.Errorf(sdk.ErrTimeout, "db: postgres processes %v survived SIGKILL", left))
	}
	return stopErr
}
