//go:build linux

package local

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cgroupParent makes (or finds) the directory of dataDir's machine
// cgroups below this process's own cgroup in the cgroup v2 hierarchy, and
// says why it cannot when cgroups are not usable here: no cgroup2 mount
// (a v1-only host), a cgroup this process may not write below (a user
// session scope), or a cgroup namespace that hides it.
func cgroupParent(dataDir string) (string, error) {
	own, err := ownCgroup()
	if err != nil {
		return "", err
	}
	pruneCgroups(own, time.Now().Add(-time.Minute))
	parent := filepath.Join(own, cgroupDirName(dataDir))
	if err := os.Mkdir(parent, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("cgroup %s: %w", parent, err)
	}
	if _, err := os.Stat(filepath.Join(parent, "cgroup.procs")); err != nil {
		return "", fmt.Errorf("cgroup %s is not a cgroup v2 directory: %w", parent, err)
	}
	return parent, nil
}

// ownCgroup is the directory of this process's cgroup v2: the cgroup2
// mount (/sys/fs/cgroup, or /sys/fs/cgroup/unified on a hybrid host) plus
// the path /proc/self/cgroup gives on its "0::" line.
func ownCgroup() (string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	var path string
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			path = p
		}
	}
	if path == "" || strings.Contains(path, "/..") || strings.HasSuffix(path, " (deleted)") {
		return "", fmt.Errorf("no usable cgroup v2 in /proc/self/cgroup: %q", strings.TrimSpace(string(b)))
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		// proc(5): id parent major:minor root mount_point options [optional…] - fstype source super_options
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok || !strings.HasPrefix(post, "cgroup2 ") {
			continue
		}
		fields := strings.Fields(pre)
		if len(fields) < 5 {
			continue
		}
		root, mnt := unescapeMount(fields[3]), unescapeMount(fields[4])
		rel, ok := strings.CutPrefix(path, root)
		if root == "/" {
			rel, ok = path, true
		} else if ok && rel != "" && !strings.HasPrefix(rel, "/") {
			ok = false
		}
		if !ok {
			continue
		}
		return filepath.Join(mnt, rel), nil
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", errors.New("no cgroup2 file system mounted")
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// setCgroupFD makes the process that attr starts be born in the cgroup
// (clone3 with CLONE_INTO_CGROUP, Linux 5.7): there is no moment in which
// it could fork outside.
func setCgroupFD(attr *syscall.SysProcAttr, c *machineCgroup) {
	attr.UseCgroupFD = true
	attr.CgroupFD = int(c.fd.Fd())
}
