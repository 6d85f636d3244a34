package db

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/rosterhq/roster/sdk"
	"github.com/rosterhq/roster/sdk/fsutil"
	"github.com/rosterhq/roster/sdk/process"
)

// pgRoot is where Debian installs the PostgreSQL server binaries, one
// directory per major version. A variable so that tests on other layouts
// could point it elsewhere.
var pgRoot = "/usr/lib/postgresql"

// Role names the db role uses in every cluster.
const (
	superuser       = "postgres"
	replicationUser = "replicator"
)

// maxSocketPath is the longest path of a Unix socket (sun_path less its
// terminating NUL); PostgreSQL refuses longer ones.
const maxSocketPath = 107

// layout is where a server's files live, under <work dir>/db.
type layout struct {
	Dir       string // <work dir>/db, mode 0711: postgres may pass, not list
	Data      string // the cluster: owned by postgres, 0700
	Socket    string // unix_socket_directories: owned by postgres, 0700
	Run       string // the supervisor's state files
	Logs      string
	Artifacts string // the fetched schema and dump
	State     string
	PGLog     string // postgres' stderr: logging_collector stays off
	Stats     string // the previous pg_stat_database sample
}

func layoutOf(workDir string) layout {
	d := filepath.Join(workDir, subdir)
	if abs, err := filepath.Abs(d); err == nil {
		d = abs
	}
	l := layout{
		Dir:       d,
		Data:      filepath.Join(d, "data"),
		Socket:    filepath.Join(d, "socket"),
		Run:       filepath.Join(d, "run"),
		Logs:      filepath.Join(d, "logs"),
		Artifacts: filepath.Join(d, "artifacts"),
		State:     filepath.Join(d, "state.json"),
	}
	// ".s.PGSQL.65535.lock" is the longest name PostgreSQL puts there. A
	// work directory too deep for a socket gets one under the system's
	// temporary directory instead, named after the work directory so that
	// a relaunched plugin finds it again.
	if len(l.Socket)+len("/.s.PGSQL.65535.lock") > maxSocketPath {
		sum := sha256.Sum256([]byte(d))
		l.Socket = filepath.Join(os.TempDir(), "roster-db-"+hex.EncodeToString(sum[:8]))
	}
	l.PGLog = filepath.Join(l.Logs, "postgres.log")
	l.Stats = filepath.Join(l.Run, "stats.json")
	return l
}

// socketOutside says whether the socket directory is outside the work
// directory (so Teardown removes it).
func (l layout) socketOutside() bool {
	return !strings.HasPrefix(l.Socket, l.Dir+string(filepath.Separator))
}

// account is the operating-system user the cluster runs as: postgres when
// the plugin runs as root (initdb and postgres refuse root), else the
// plugin's own user, with no switch.
type account struct {
	Name     string // "" when there is no switch
	UID, GID int
	Home     string
}

func (a account) switches() bool { return a.Name != "" }

func clusterAccount() (account, error) {
	if os.Geteuid() != 0 {
		return account{UID: os.Geteuid(), GID: os.Getegid()}, nil
	}
	u, err := user.Lookup(superuser)
	if err != nil {
		return account{}, sdk.Errorf(sdk.ErrNotFound, "db: the %s user, which PostgreSQL runs as when the agent is root: %v (the postgresql package creates it)", superuser, err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err := errors.Join(err1, err2); err != nil {
		return account{}, fmt.Errorf("db: user %s: %w", superuser, err)
	}
	return account{Name: u.Username, UID: uid, GID: gid, Home: u.HomeDir}, nil
}

// mkdirOwned makes dir with mode perm, owned by a.
func (a account) mkdirOwned(dir string, perm fs.FileMode) error {
	if err := os.MkdirAll(dir, perm); err != nil {
		return err
	}
	if err := os.Chmod(dir, perm); err != nil {
		return err
	}
	if a.switches() {
		return os.Lchown(dir, a.UID, a.GID)
	}
	return nil
}

// chownTree gives every file below root to a.
func (a account) chownTree(root string) error {
	if !a.switches() {
		return nil
	}
	return filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, a.UID, a.GID)
	})
}

// canEnter says whether a may search (pass through) a directory, as the
// kernel decides for a process with a's uid and primary gid only (sdk/process
// starts daemons without supplementary groups).
func (a account) canEnter(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || a.UID == 0 {
		return true
	}
	m := fi.Mode().Perm()
	switch {
	case int(st.Uid) == a.UID:
		return m&0o100 != 0
	case int(st.Gid) == a.GID:
		return m&0o010 != 0
	default:
		return m&0o001 != 0
	}
}

// prepare makes the server's directories and checks that the cluster's
// user can reach them: <work dir> and <work dir>/db get the search bit for
// others (not the read bit: nobody else may list them); a directory above
// the work directory that the user cannot pass is an error naming it, since
// changing it is not the role's business.
func (l layout) prepare(a account, workDir string) error {
	if err := os.MkdirAll(l.Dir, 0o711); err != nil {
		return fmt.Errorf("db: %w", err)
	}
	if a.switches() {
		work, err := filepath.Abs(workDir)
		if err != nil {
			return fmt.Errorf("db: %w", err)
		}
		for _, d := range []string{work, l.Dir} {
			fi, err := os.Stat(d)
			if err != nil {
				return fmt.Errorf("db: %w", err)
			}
			if !a.canEnter(fi) {
				if err := os.Chmod(d, fi.Mode().Perm()|0o001); err != nil {
					return fmt.Errorf("db: %w", err)
				}
			}
		}
		for d := filepath.Dir(work); ; d = filepath.Dir(d) {
			fi, err := os.Stat(d)
			if err != nil {
				return fmt.Errorf("db: %w", err)
			}
			if !a.canEnter(fi) {
				return sdk.Errorf(sdk.ErrInvalidConfig,
					"db: the %s user cannot pass through %s (mode %v), above the server's work directory %s: allow it (chmod o+x %s) or use a work directory it can reach",
					a.Name, d, fi.Mode().Perm(), work, d)
			}
			if d == filepath.Dir(d) {
				break
			}
		}
	}
	for _, d := range []string{l.Run, l.Logs} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("db: %w", err)
		}
	}
	if err := a.mkdirOwned(l.Socket, 0o700); err != nil {
		return fmt.Errorf("db: socket directory: %w", err)
	}
	return nil
}

// freshData empties the data directory for initdb or pg_basebackup.
func (l layout) freshData(a account) error {
	if err := os.RemoveAll(l.Data); err != nil {
		return fmt.Errorf("db: removing the old cluster: %w", err)
	}
	if err := a.mkdirOwned(l.Data, 0o700); err != nil {
		return fmt.Errorf("db: data directory: %w", err)
	}
	return nil
}

// binaries finds the PostgreSQL binaries of a major version, or of the
// newest one installed when version is 0.
func binaries(version int) (string, error) {
	if version > 0 {
		dir := filepath.Join(pgRoot, strconv.Itoa(version), "bin")
		if _, err := os.Stat(filepath.Join(dir, "postgres")); err != nil {
			return "", sdk.Errorf(sdk.ErrNotFound, "db: PostgreSQL %d is not installed (%s): apt-get install -y postgresql-%d", version, dir, version)
		}
		return dir, nil
	}
	m, _ := filepath.Glob(filepath.Join(pgRoot, "*", "bin", "postgres"))
	best := -1
	for _, p := range m {
		v, err := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(p))))
		if err == nil && v > best {
			best = v
		}
	}
	if best < 0 {
		return "", sdk.Errorf(sdk.ErrNotFound, "db: no PostgreSQL server under %s: apt-get install -y postgresql", pgRoot)
	}
	return filepath.Join(pgRoot, strconv.Itoa(best), "bin"), nil
}

// majorOf reads the major version of a cluster from its PG_VERSION file.
func majorOf(data string) int {
	b, err := os.ReadFile(filepath.Join(data, "PG_VERSION"))
	if err != nil {
		return 0
	}
	v, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return v
}

// majorOfBin is the major version of a bin directory (/usr/lib/postgresql/15/bin).
func majorOfBin(bin string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(bin)))
	return v
}

// run runs a PostgreSQL tool as the cluster's user with sdk/process.Run:
// its output appended to logFile (and to onLine, line by line, when set),
// in its own process group so that a cancelled ctx ends it and every child
// it forked. A failure quotes the end of the output.
func (a account) run(ctx context.Context, l layout, logFile string, onLine func(string), env []string, path string, args ...string) error {
	_, err := process.Run(ctx, process.Command{
		Path: path, Args: args,
		BaseEnv: a.env(nil), Env: env,
		Dir: l.Dir, User: a.Name,
		Log: logFile, OnLine: onLine,
	})
	if err != nil {
		return fmt.Errorf("db: %w", err)
	}
	return nil
}

// env is the plugin's environment for a tool run as a, less the libpq
// variables that would point it elsewhere, with HOME and USER to match.
func (a account) env(extra []string) []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "PG") || (a.switches() && (k == "HOME" || k == "USER" || k == "LOGNAME")) {
			continue
		}
		out = append(out, kv)
	}
	if a.switches() {
		out = append(out, "HOME="+a.Home, "USER="+a.Name, "LOGNAME="+a.Name)
	}
	return append(out, extra...)
}

// tailFrom returns the end (at most n bytes) of what was appended to a file
// after offset start.
func tailFrom(path string, start, n int64) string {
	b, err := os.ReadFile(path)
	if err != nil || int64(len(b)) < start {
		return ""
	}
	b = b[start:]
	if int64(len(b)) > n {
		b = b[int64(len(b))-n:]
	}
	return strings.TrimSpace(string(b))
}

// initdb creates a new cluster in l.Data: local (socket) connections are
// trusted, which only root and the cluster's user can make since the socket
// directory is theirs alone (0700); TCP connections need a SCRAM password.
func (a account) initdb(ctx context.Context, l layout, bin string) error {
	return a.run(ctx, l, filepath.Join(l.Logs, "initdb.log"), nil, nil, filepath.Join(bin, "initdb"),
		"-D", l.Data, "-U", superuser, "--auth-local=trust", "--auth-host=scram-sha-256",
		"--encoding=UTF8", "--locale=C.UTF-8")
}

// includeLine makes postgresql.conf read the role's own file last, so that
// initdb's defaults (locale, time zone) stay and the role's settings win;
// postgresql.auto.conf (ALTER SYSTEM, primary_conninfo) still wins over
// both, as PostgreSQL reads it after.
const includeLine = "include_if_exists = 'roster.conf'"

// conf holds what roster.conf and pg_hba.conf say.
type conf struct {
	settings
	Server      string
	Port        int
	Socket      string
	Draining    bool
	Replication bool // the replicator role may connect
}

// writeConf writes roster.conf, makes postgresql.conf include it, and
// writes pg_hba.conf. Files are given to the cluster's user.
func (a account) writeConf(l layout, c conf) error {
	pgConf := filepath.Join(l.Data, "postgresql.conf")
	b, err := os.ReadFile(pgConf)
	if err != nil {
		return fmt.Errorf("db: %w", err)
	}
	if !bytes.Contains(b, []byte(includeLine)) {
		b = append(b, []byte("\n# Added by the roster db role: its settings come last.\n"+includeLine+"\n")...)
		if err := a.writeFile(pgConf, b, 0o600); err != nil {
			return err
		}
	}
	if err := a.writeFile(filepath.Join(l.Data, "roster.conf"), renderConf(c), 0o600); err != nil {
		return err
	}
	return a.writeFile(filepath.Join(l.Data, "pg_hba.conf"), renderHBA(c), 0o600)
}

// writeFile writes a file of the cluster atomically, owned by a.
func (a account) writeFile(path string, data []byte, perm fs.FileMode) error {
	var opts []fsutil.Option
	if a.switches() {
		opts = append(opts, fsutil.WithOwner(a.UID, a.GID))
	}
	if err := fsutil.WriteFileAtomic(path, data, perm, opts...); err != nil {
		return fmt.Errorf("db: %w", err)
	}
	return nil
}

// quoteConf quotes a postgresql.conf value.
func quoteConf(v string) string {
	return "'" + strings.ReplaceAll(strings.ReplaceAll(v, `\`, `\\`), "'", "''") + "'"
}

func renderConf(c conf) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Written by the roster db role for server %s; rewritten on every Provision.\n", c.Server)
	b.WriteString("# Change settings through the role file's config block, not here.\n\n")
	// The operator's extra settings first, so that the role's own, which
	// it refuses in settings anyway, can never be overridden by them.
	keys := sortedKeys(c.Settings)
	if len(keys) > 0 {
		b.WriteString("# settings\n")
		for _, k := range keys {
			fmt.Fprintf(&b, "%s = %s\n", k, quoteConf(c.Settings[k]))
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "listen_addresses = %s\n", quoteConf(c.Listen))
	fmt.Fprintf(&b, "port = %d\n", c.Port)
	fmt.Fprintf(&b, "unix_socket_directories = %s\n", quoteConf(c.Socket))
	b.WriteString("unix_socket_permissions = 0700\n")
	fmt.Fprintf(&b, "max_connections = %d\n", c.MaxConnections)
	fmt.Fprintf(&b, "shared_buffers = %s\n", quoteConf(c.SharedBuffers))
	fmt.Fprintf(&b, "cluster_name = %s\n", quoteConf(clusterName(c.Server)))
	b.WriteString("password_encryption = 'scram-sha-256'\n")
	b.WriteString("# Logs go to stderr, which the role sends to logs/postgres.log.\n")
	b.WriteString("logging_collector = off\nlog_destination = 'stderr'\n")
	if _, ok := c.Settings["log_line_prefix"]; !ok {
		b.WriteString("log_line_prefix = '%m [%p] %q%u@%d '\n")
	}
	b.WriteString("# Streaming replicas (replica_of) need these on the primary.\n")
	for _, kv := range [][2]string{{"wal_level", "replica"}, {"max_wal_senders", "10"}, {"wal_keep_size", "'256MB'"}, {"hot_standby", "on"}} {
		if _, ok := c.Settings[kv[0]]; !ok {
			fmt.Fprintf(&b, "%s = %s\n", kv[0], kv[1])
		}
	}
	return b.Bytes()
}

// clusterName is what ps shows in PostgreSQL's process titles: ASCII only.
func clusterName(server string) string {
	var b strings.Builder
	for _, r := range server {
		if r >= 0x20 && r < 0x7f && r != '\'' {
			b.WriteRune(r)
		}
	}
	if b.Len() == 0 {
		return "roster-db"
	}
	return b.String()
}

// renderHBA writes pg_hba.conf. The first matching line decides, so the
// order matters: the socket (root and the cluster's user only) is trusted,
// so that the role's own checks, Drain and Teardown work in every state;
// replication comes next so that replicas keep streaming while a primary
// drains; while draining, every other TCP connection is rejected.
func renderHBA(c conf) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Written by the roster db role for server %s; rewritten on every Provision and Drain.\n", c.Server)
	b.WriteString("# TYPE  DATABASE     USER        ADDRESS                 METHOD\n")
	b.WriteString("local   all          all                                 trust\n")
	if c.Replication {
		method := "scram-sha-256"
		if c.ReplicationPassword == "" {
			// Loopback only (decode refuses wider ranges without a
			// password): any local user could stream a copy of the data.
			method = "trust"
		}
		for _, cidr := range c.ReplicationCIDRs {
			fmt.Fprintf(&b, "host    replication  %-11s %-23s %s\n", replicationUser, cidr, method)
		}
	}
	if c.Draining {
		b.WriteString("# Draining: no new client connections.\n")
		b.WriteString("host    all          all         all                     reject\n")
		return b.Bytes()
	}
	cidrs := append([]string(nil), c.ClientCIDRs...)
	sort.Strings(cidrs)
	for _, cidr := range cidrs {
		fmt.Fprintf(&b, "host    all          all         %-23s scram-sha-256\n", cidr)
	}
	return b.Bytes()
}
