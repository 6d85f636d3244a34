package rolekit

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// RunAs looks up the user a daemon (or its workers) runs as when the plugin
// runs as root, since most daemons refuse to serve as root; nil without an
// error when the plugin is not root, and nothing is switched.
func RunAs(name string) (*user.User, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("user %s: %w", name, err)
	}
	return u, nil
}

// CheckReachable fails, naming the first directory, when u cannot pass
// through every directory above dir (by its uid and primary gid, as
// sdk/process starts daemons without supplementary groups). what names dir
// in the message ("the document root"). Changing those directories is not
// a role's business: the operator is told which.
func CheckReachable(dir, what string, u *user.User) error {
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		perm := fi.Mode().Perm()
		canPass := perm&0o001 != 0 ||
			ok && int(st.Uid) == uid && perm&0o100 != 0 ||
			ok && int(st.Gid) == gid && perm&0o010 != 0
		if !canPass {
			return fmt.Errorf("user %s cannot reach %s: %s is mode %04o (give it o+x, as most directories have)", u.Username, what, d, perm)
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}
