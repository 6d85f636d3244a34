package agent

import (
	"bytes"
	"os"
	"runtime"
	"strconv"
)

// systemLoad returns the one-minute load average divided by the number of
// CPUs, so that 1.0 means every core busy on any machine. Where
// /proc/loadavg cannot be read it returns 0: a missing number must not
// scale a pool.
func systemLoad() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := bytes.Fields(b)
	if len(f) == 0 {
		return 0
	}
	l, err := strconv.ParseFloat(string(f[0]), 64)
	if err != nil {
		return 0
	}
	return l / float64(runtime.NumCPU())
}
