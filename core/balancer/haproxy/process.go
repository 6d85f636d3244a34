package haproxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"

	"github.com/rosterhq/roster/sdk/fsutil"
)

// Files of a managed haproxy, in <data_dir>/balancers/<name>/.
const (
	configFile = "haproxy.cfg"
	pidFile    = "haproxy.pid"
	socketFile = "admin.sock"
	logFile    = "haproxy.log"
	stateFile  = "state.json"
)

// maxSocketPath is the longest path a unix socket can have on Linux.
const maxSocketPath = 107

// managedTemplate is the managed haproxy's configuration. Servers are
// rendered only when a running haproxy is replaced by one with a new
// configuration: they are otherwise added at run time (`add server`), and a
// dynamic server lives only as long as the process that added it.
var managedTemplate = template.Must(template.New("haproxy.cfg").Parse(`# Rendered by roster for balancer "{{.Name}}"; roster rewrites it on start.
global
    stats socket {{.Socket}} mode 600 level admin expose-fd listeners
    stats timeout 30s
    pidfile {{.PIDFile}}
    maxconn {{.MaxConn}}

defaults
    mode {{.Mode}}
    option redispatch
    retries 3
    timeout connect {{.Connect}}
    timeout client {{.Client}}
    timeout server {{.Server}}
    timeout check {{.Check}}

frontend {{.FrontendName}}
    bind {{.Bind}}
    default_backend {{.Backend}}

backend {{.Backend}}
    balance {{.Balance}}
{{- if .CheckPath}}
    option httpchk
    http-check send meth GET uri {{.CheckPath}} ver HTTP/1.1 hdr Host localhost
{{- end}}
{{- range .Servers}}
    server {{.Name}} {{.ConfigAddr}} {{$.ServerArgs}}
{{- end}}
`))

// renderData is what managedTemplate renders.
type renderData struct {
	Name, Socket, PIDFile          string
	MaxConn                        int
	Mode                           string
	Connect, Client, Server, Check string
	FrontendName, Bind, Backend    string
	Balance, CheckPath             string
	ServerArgs                     string
	Servers                        []serverState
}

// managed is the haproxy process a managed balancer runs.
type managed struct {
	dir string
	bin string
}

func (m managed) path(name string) string { return filepath.Join(m.dir, name) }

// state is what a managed balancer keeps on disk besides haproxy's files.
type state struct {
	// Role is the role the backend serves, once one registered.
	Role string `json:"role,omitempty"`
	// ConfigSHA256 is the digest of the configuration (without servers)
	// that the running haproxy was started with.
	ConfigSHA256 string `json:"config_sha256,omitempty"`
}

func (m managed) loadState() (state, error) {
	var st state
	data, err := os.ReadFile(m.path(stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return st, fmt.Errorf("%s: %w", m.path(stateFile), err)
	}
	return st, nil
}

func (m managed) saveState(st state) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(m.path(stateFile), append(data, '\n'), 0o600)
}

// findBinary returns the haproxy executable to run.
func findBinary(configured string) (string, error) {
	if configured != "" {
		p, err := exec.LookPath(configured)
		if err != nil {
			return "", fmt.Errorf("haproxy executable %q: %w", configured, err)
		}
		return p, nil
	}
	if p, err := exec.LookPath("haproxy"); err == nil {
		return p, nil
	}
	// root's PATH has /usr/sbin, other users' often not.
	if _, err := os.Stat("/usr/sbin/haproxy"); err == nil {
		return "/usr/sbin/haproxy", nil
	}
	return "", errors.New("haproxy executable not found on PATH nor at /usr/sbin/haproxy (install the haproxy package, or set haproxy = \"/path/to/haproxy\")")
}

// running returns the pid of the managed haproxy when it runs and answers
// on its socket, or 0.
func (m managed) running(ctx context.Context) int {
	pid, err := (runtimeAPI{socket: m.path(socketFile)}).ping(ctx)
	if err != nil || !alive(pid) {
		return 0
	}
	return pid
}

// start runs haproxy in the background on the configuration file; with
// oldPID it replaces that process, taking over its listening sockets so that
// no connection is refused meanwhile.
func (m managed) start(ctx context.Context, oldPID int) error {
	args := []string{"-D", "-f", m.path(configFile), "-p", m.path(pidFile)}
	if oldPID > 0 {
		args = append(args, "-x", m.path(socketFile), "-sf", strconv.Itoa(oldPID))
	} else {
		// A socket left by a haproxy that died would make bind fail.
		_ = os.Remove(m.path(socketFile))
	}
	logf, err := os.OpenFile(m.path(logFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	off, _ := logf.Seek(0, io.SeekEnd)
	// -D forks and returns once the listeners are bound, so an error
	// (a port in use, a bad line) comes back here. The daemon keeps the log
	// file as stderr; a pipe would keep Run waiting for it.
	cmd := exec.CommandContext(ctx, m.bin, args...)
	cmd.Dir = m.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own session: the orchestrator's Ctrl-C or exit must not reach
	// haproxy, which keeps serving while the orchestrator restarts.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("starting %s: %w: %s", strings.Join(cmd.Args, " "), err, tail(m.path(logFile), off))
	}
	api := runtimeAPI{socket: m.path(socketFile)}
	deadline := time.Now().Add(10 * time.Second)
	for {
		pid, err := api.ping(ctx)
		if err == nil && pid != oldPID {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("haproxy started but does not answer on %s: %v", api.socket, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop stops the managed haproxy: a soft stop first (it stops listening
// and lets open sessions end), then SIGTERM and SIGKILL when ctx is done.
func (m managed) stop(ctx context.Context) error {
	pids := map[int]bool{}
	if pid := m.running(ctx); pid > 0 {
		pids[pid] = true
	}
	if data, err := os.ReadFile(m.path(pidFile)); err == nil {
		for f := range strings.FieldsSeq(string(data)) {
			if pid, err := strconv.Atoi(f); err == nil && isHAProxy(pid) {
				pids[pid] = true
			}
		}
	}
	for pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGUSR1)
	}
	// After ctx, SIGTERM; 2s later SIGKILL; 2s later give up.
	escalate := []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL}
	done := ctx.Done()
	for {
		left := 0
		for pid := range pids {
			if alive(pid) {
				left++
			}
		}
		if left == 0 {
			_ = os.Remove(m.path(pidFile))
			_ = os.Remove(m.path(socketFile))
			return nil
		}
		select {
		case <-done:
			if len(escalate) == 0 {
				return fmt.Errorf("haproxy %v does not stop", pids)
			}
			for pid := range pids {
				_ = syscall.Kill(pid, escalate[0])
			}
			escalate = escalate[1:]
			grace := make(chan struct{})
			time.AfterFunc(2*time.Second, func() { close(grace) })
			done = grace
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// alive reports whether pid is a live (not zombie) process.
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return syscall.Kill(pid, 0) == nil
	}
	// The state follows the parenthesised command name.
	s := string(data)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z' && s[i+2] != 'X'
	}
	return true
}

// isHAProxy guards against signalling a process that reused a stale pid.
func isHAProxy(pid int) bool {
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return err == nil && strings.TrimSpace(string(comm)) == "haproxy" && alive(pid)
}

// tail returns the end of a file from offset off, for error messages.
func tail(path string, off int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	_, _ = f.Seek(off, io.SeekStart)
	data, _ := io.ReadAll(io.LimitReader(f, 1<<20))
	data = bytes.TrimSpace(data)
	if len(data) > 2000 {
		data = data[len(data)-2000:]
	}
	return string(data)
}

func digest(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// ms renders a duration the way haproxy reads it.
func ms(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) + "ms" }
