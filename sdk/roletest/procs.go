package roletest

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/rosterhq/roster/sdk/process"
)

// WorkDir returns a fresh server work directory whose parent others may
// traverse (0711), as an agent's is. t.TempDir's own parent is private
// (0700), which would stop a role's services that drop to their own users
// (postgres, www-data, tomcat) from reaching their files.
func WorkDir(t testing.TB) string {
	t.Helper()
	d := t.TempDir()
	if err := os.Chmod(filepath.Dir(d), 0o711); err != nil {
		t.Fatal(err)
	}
	return d
}

// ProcessesMentioning returns the live processes (zombies excluded, this
// process too) whose command line contains s, such as a server's work
// directory: what a Teardown must leave none of.
func ProcessesMentioning(s string) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || len(b) == 0 || !alive(pid) {
			continue
		}
		if strings.Contains(strings.ReplaceAll(string(b), "\x00", " "), s) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// AssertExited fails the test for every pid that is still running; a
// zombie waiting for its parent to reap it counts as exited.
func AssertExited(t testing.TB, pids []int) {
	t.Helper()
	for _, pid := range pids {
		if alive(pid) {
			b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
			t.Errorf("process %d outlived Teardown: %q", pid, strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
}

// alive says whether pid exists and is not a zombie.
func alive(pid int) bool {
	st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(st), ')')
	return !(i >= 0 && len(st) > i+2 && st[i+2] == 'Z')
}

// DaemonPids returns the pids of every process of the named daemons that a
// process.Supervisor keeps in runDir (each daemon's group and the
// descendants that left it): what a role's Teardown must stop. A daemon
// that is not running contributes none.
func DaemonPids(t testing.TB, runDir string, names ...string) []int {
	t.Helper()
	sup, err := process.NewSupervisor(runDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, n := range names {
		p, err := sup.Find(n)
		if err != nil || !p.Alive() {
			continue
		}
		m, err := p.Members()
		if err != nil {
			t.Fatal(err)
		}
		pids = append(pids, m...)
	}
	return pids
}
