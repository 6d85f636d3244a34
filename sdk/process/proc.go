package process

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// procStat is what the supervisor needs from /proc/<pid>/stat.
type procStat struct {
	pid       int
	state     byte
	ppid      int
	pgrp      int
	session   int
	startTime uint64 // clock ticks since boot: with pid, names a process uniquely
}

// procRoot is where proc(5) is mounted; tests leave it alone.
const procRoot = "/proc"

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(procRoot + "/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	return parseStat(pid, string(b))
}

// parseStat parses a stat line. The command name is in parentheses and may
// itself hold spaces and parentheses, so the fields are counted from the
// last ')'.
func parseStat(pid int, s string) (procStat, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("process: malformed stat of pid %d", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); starttime is field 22.
	if len(f) < 20 || len(f[0]) != 1 {
		return procStat{}, fmt.Errorf("process: malformed stat of pid %d", pid)
	}
	st := procStat{pid: pid, state: f[0][0]}
	var errs [4]error
	st.ppid, errs[0] = strconv.Atoi(f[1])
	st.pgrp, errs[1] = strconv.Atoi(f[2])
	st.session, errs[2] = strconv.Atoi(f[3])
	st.startTime, errs[3] = strconv.ParseUint(f[19], 10, 64)
	if err := errors.Join(errs[:]...); err != nil {
		return procStat{}, fmt.Errorf("process: malformed stat of pid %d: %w", pid, err)
	}
	return st, nil
}

// dead says whether a stat describes a process that has exited but not yet
// been reaped: it holds no resources any more and does no work.
func (s procStat) dead() bool { return s.state == 'Z' || s.state == 'X' }

// listProcs reads the stat of every process, dead or alive, by pid.
func listProcs() (map[int]procStat, error) {
	ents, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, fmt.Errorf("process: listing %s: %w", procRoot, err)
	}
	procs := make(map[int]procStat, len(ents))
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := readStat(pid); err == nil { // else it exited while we looked
			procs[pid] = st
		}
	}
	return procs, nil
}
