package local

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// A machine's cgroup (cgroup v2) is <own>/roster-<hash of data_dir>/<id>,
// where <own> is the cgroup of the process that runs the provider: a
// subtree this process may write to (a container's, a delegated systemd
// unit's). The agent is born in it (clone3 CLONE_INTO_CGROUP), and every
// process it starts stays in it, whatever its session or process group.

// cgroupDirName is the directory of one data_dir's machines under the
// provider's own cgroup: two data directories (two clusters, two tests)
// never share one.
func cgroupDirName(dataDir string) string {
	sum := sha256.Sum256([]byte(dataDir))
	return "roster-" + hex.EncodeToString(sum[:6])
}

// machineCgroup is a machine's cgroup while its agent is started.
type machineCgroup struct {
	dir string
	fd  *os.File
}

// newCgroup makes the cgroup of machine id under parent. A cgroup left
// there by an earlier machine of that id (whose record is gone) is not
// this machine's: what runs in it is killed.
func newCgroup(parent, id string) (*machineCgroup, error) {
	dir := filepath.Join(parent, id)
	var err error
	// Another provider may prune the parent while it is empty: try again.
	for range 3 {
		if err = os.Mkdir(parent, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("cgroup %s: %w", parent, err)
		}
		if err = os.Mkdir(dir, 0o755); !errors.Is(err, fs.ErrNotExist) {
			break
		}
	}
	if errors.Is(err, fs.ErrExist) {
		if err := removeCgroupNow(dir); err != nil {
			return nil, err
		}
		err = os.Mkdir(dir, 0o755)
		if err != nil {
			return nil, fmt.Errorf("cgroup %s: %w", dir, err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("cgroup %s: %w", dir, err)
	}
	fd, err := os.OpenFile(dir, os.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		_ = os.Remove(dir)
		return nil, fmt.Errorf("cgroup %s: %w", dir, err)
	}
	return &machineCgroup{dir: dir, fd: fd}, nil
}

// shellStep is the script of startThroughShell: $1 is the cgroup.procs
// file, the rest the agent's command line. fd 3 is closed before the exec,
// so the provider reads the outcome to EOF without waiting on the agent.
const shellStep = `if echo $$ > "$1"; then echo ok >&3; fi; exec 3>&-; shift; exec "$@"`

// startThroughShell starts cmd (not yet started) through /bin/sh, which
// moves itself into the cgroup and then executes cmd's program in its
// place (same pid): the way in where clone3 is refused, without a moment
// in which the agent could fork outside. It says whether the move worked;
// when it did not the agent runs all the same, outside the cgroup.
func (c *machineCgroup) startThroughShell(cmd *exec.Cmd) (bool, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return false, err
	}
	defer r.Close()
	cmd.Args = append([]string{"/bin/sh", "-c", shellStep, "roster-cgroup", filepath.Join(c.dir, "cgroup.procs"), cmd.Path}, cmd.Args[1:]...)
	cmd.Path = "/bin/sh"
	cmd.ExtraFiles = []*os.File{w}
	err = cmd.Start()
	w.Close()
	if err != nil {
		return false, err
	}
	_ = r.SetReadDeadline(time.Now().Add(10 * time.Second))
	out, _ := io.ReadAll(r)
	return string(out) == "ok\n", nil
}

// release closes the directory; the cgroup stays.
func (c *machineCgroup) release() { _ = c.fd.Close() }

// discard removes the cgroup of an agent that did not start.
func (c *machineCgroup) discard() {
	c.release()
	_ = os.Remove(c.dir)
}

// cgroupPopulated says whether a live process is in the cgroup or below
// it. A cgroup that is gone holds none.
func cgroupPopulated(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.events"))
	if errors.Is(err, fs.ErrNotExist) {
		return false
	}
	if err != nil {
		return true // unknown: the caller's deadline decides
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("populated ")); ok {
			return string(v) != "0"
		}
	}
	return true
}

// cgroupProcs lists the processes in the cgroup itself (not below it).
func cgroupProcs(dir string) []int {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range bytes.Fields(b) {
		if pid, err := strconv.Atoi(string(f)); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// signalCgroup sends sig to the processes of the cgroup and of the
// cgroups below it. Each process is opened (a pidfd) before the cgroup is
// listed again, and signalled only if it is still listed: a pid reused
// meanwhile by a process outside the cgroup is left alone.
func signalCgroup(dir string, sig syscall.Signal) {
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		opened := map[int]*os.Process{}
		for _, pid := range cgroupProcs(path) {
			if proc, err := os.FindProcess(pid); err == nil {
				opened[pid] = proc
			}
		}
		for _, pid := range cgroupProcs(path) {
			if proc, ok := opened[pid]; ok {
				_ = proc.Signal(sig)
			}
		}
		for _, proc := range opened {
			_ = proc.Release()
		}
		return nil
	})
}

// killCgroup SIGKILLs every process of the cgroup and below: at once
// through cgroup.kill (Linux 5.14), so that nothing forks past it, or one
// by one on older kernels (the caller repeats until the cgroup is empty).
func killCgroup(dir string) error {
	err := os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0)
	if errors.Is(err, fs.ErrNotExist) {
		if _, serr := os.Stat(dir); serr != nil {
			return nil // the cgroup itself is gone
		}
		signalCgroup(dir, syscall.SIGKILL)
		return nil
	}
	return err
}

// removeCgroup removes the cgroup, once empty, and the cgroups below it
// (a service may have made some). rmdir answers EBUSY for a moment after
// the last process exits, while the kernel finishes with it.
func removeCgroup(dir string) error {
	var dirs []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, path)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("cgroup %s: %w", dir, err)
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		deadline := time.Now().Add(2 * time.Second)
		for {
			err := os.Remove(dirs[i])
			if err == nil || errors.Is(err, fs.ErrNotExist) {
				break
			}
			if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
				return fmt.Errorf("cgroup %s: %w", dirs[i], err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return nil
}

// removeCgroupNow kills what runs in the cgroup and removes it.
func removeCgroupNow(dir string) error {
	deadline := time.Now().Add(killWait)
	for cgroupPopulated(dir) {
		if err := killCgroup(dir); err != nil {
			return fmt.Errorf("cgroup %s: %w", dir, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes of cgroup %s survive SIGKILL: %v", dir, cgroupProcs(dir))
		}
		time.Sleep(20 * time.Millisecond)
	}
	return removeCgroup(dir)
}

// removeCgroupParent removes the data directory's cgroup once no machine
// cgroup is left in it; while one is, rmdir fails, and that is fine.
func removeCgroupParent(parent string) {
	if parent != "" {
		_ = os.Remove(parent)
	}
}

// pruneCgroups removes the empty machine cgroups, and then the empty
// roster-* directories, that roster left under own and that are older
// than before: machines whose processes were killed without Terminate (a
// test harness's SIGKILL). An empty cgroup holds nothing to terminate;
// the age keeps a cgroup that a provider just made for an agent it is
// starting.
func pruneCgroups(own string, before time.Time) {
	parents, _ := filepath.Glob(filepath.Join(own, "roster-*"))
	for _, parent := range parents {
		ents, err := os.ReadDir(parent)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if !e.IsDir() {
				continue
			}
			dir := filepath.Join(parent, e.Name())
			if fi, err := os.Stat(dir); err == nil && fi.ModTime().Before(before) && !cgroupPopulated(dir) {
				_ = os.Remove(dir)
			}
		}
		if fi, err := os.Stat(parent); err == nil && fi.ModTime().Before(before) {
			_ = os.Remove(parent) // fails while a machine's cgroup is in it
		}
	}
}
