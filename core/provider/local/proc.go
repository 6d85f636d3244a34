package local

import (
	"bytes"
	"errors"
	"os"
	"sort"
	"strconv"

	"github.com/rosterhq/roster/core/provider"
)

// procStat is what the provider needs of /proc/<pid>/stat.
type procStat struct {
	state     byte
	ppid      int
	session   int
	startTime uint64 // clock ticks after boot
}

// readStat reads /proc/<pid>/stat (proc(5)). The command name, field 2, may
// hold spaces and parentheses, so the fields are counted from its last ')'.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, errors.New("malformed stat")
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3 (state), so field n is f[n-3].
	if len(f) < 20 || len(f[0]) != 1 {
		return procStat{}, errors.New("malformed stat")
	}
	ppid, err := strconv.Atoi(string(f[4-3]))
	if err != nil {
		return procStat{}, err
	}
	sid, err := strconv.Atoi(string(f[6-3]))
	if err != nil {
		return procStat{}, err
	}
	start, err := strconv.ParseUint(string(f[22-3]), 10, 64)
	if err != nil {
		return procStat{}, err
	}
	return procStat{state: f[0][0], ppid: ppid, session: sid, startTime: start}, nil
}

// alive says whether pid is a live process started at start (when start
// is known): a zombie is dead, a reused pid is another process.
func alive(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	st, err := readStat(pid)
	if err != nil || st.state == 'Z' || st.state == 'X' {
		return false
	}
	return start == 0 || st.startTime == start
}

func sortMachines(ms []provider.Machine) {
	sort.Slice(ms, func(i, j int) bool { return ms[i].ID < ms[j].ID })
}

func sortRecords(rs []*record) {
	sort.Slice(rs, func(i, j int) bool { return rs[i].ID < rs[j].ID })
}
