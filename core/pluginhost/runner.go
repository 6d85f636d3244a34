package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-plugin/runner"
)

// pipeGrace bounds how long the plugin's stdout and stderr may stay open after
// the plugin process is gone (a grandchild that inherited them). go-plugin
// waits for both to close before it reports the exit, and Kill waits for
// that, so without a bound one stray daemon could wedge Close for good.
const pipeGrace = 5 * time.Second

// exitInfo is how a plugin process ended.
type exitInfo struct {
	Pid   int
	State *os.ProcessState // nil when Wait itself failed
	Err   error
}

// Status renders the exit for logs and errors: "exit status 2", "signal: killed".
func (e exitInfo) Status() string {
	if e.State != nil {
		return e.State.String()
	}
	if e.Err != nil {
		return e.Err.Error()
	}
	return "unknown"
}

// procRunner is the go-plugin runner for a role plugin. go-plugin's own
// runner is internal and would start the process on whatever OS thread the
// caller happens to run on, which breaks Pdeathsig (see startOnLockedThread),
// inherit the agent's stdin, and only notice an exit once the plugin's
// stdout and stderr have closed. This one starts the process in its own
// process group on the launcher thread, reaps it at once, and tells the
// supervisor through exited.
type procRunner struct {
	name string // the plugin's name; go-plugin names the log sub-logger after it
	cmd  *exec.Cmd

	stdoutR, stderrR *os.File
	closePipes       sync.Once
	// stdinW is held by the host alone: the plugin reads EOF on its stdin the
	// moment the host is gone, however it went.
	stdinW *os.File
	// childEnds are the ends the child inherits; the host closes its copies
	// once the child has started.
	childEnds []*os.File

	pid int
	// killEarly records a Kill that came before Start (a launch whose
	// context ended): Start then kills what it started at once.
	killEarly bool
	exited    chan struct{}
	exit      exitInfo
	mu        sync.Mutex
	reaped    bool
}

var _ runner.Runner = (*procRunner)(nil)

// newProcRunner prepares cmd. exe, when not nil, is the open, already hashed
// executable: the child execs that very file through /proc/self/fd, so that a
// file swapped in under the same name after hashing is never run.
func newProcRunner(name string, cmd *exec.Cmd, exe *os.File) (*procRunner, error) {
	r := &procRunner{name: name, cmd: cmd, exited: make(chan struct{})}
	var err error
	var stdoutW, stderrW, stdinR *os.File
	if r.stdoutR, stdoutW, err = os.Pipe(); err != nil {
		return nil, err
	}
	if r.stderrR, stderrW, err = os.Pipe(); err != nil {
		r.closeAll(stdoutW)
		return nil, err
	}
	if stdinR, r.stdinW, err = os.Pipe(); err != nil {
		r.closeAll(stdoutW, stderrW)
		return nil, err
	}
	// Passing *os.File values (not StdoutPipe) keeps exec.Cmd.Wait from
	// closing our read ends while go-plugin still drains them.
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdinR, stdoutW, stderrW
	r.childEnds = []*os.File{stdinR, stdoutW, stderrW}
	if exe != nil {
		// ExtraFiles[0] is fd 3 in the child; execve resolves the path in
		// the child, where fd 3 is our hashed file.
		cmd.ExtraFiles = append([]*os.File{exe}, cmd.ExtraFiles...)
		cmd.Path = "/proc/self/fd/3"
		r.childEnds = append(r.childEnds, exe)
	}
	cmd.SysProcAttr = sysProcAttr()
	return r, nil
}

func (r *procRunner) closeAll(fs ...*os.File) {
	for _, f := range fs {
		if f != nil {
			_ = f.Close()
		}
	}
	for _, f := range []*os.File{r.stdoutR, r.stderrR, r.stdinW} {
		if f != nil {
			_ = f.Close()
		}
	}
}

// Start starts the process on the launcher thread.
func (r *procRunner) Start(_ context.Context) error {
	err := startOnLockedThread(r.cmd)
	for _, f := range r.childEnds {
		_ = f.Close()
	}
	r.childEnds = nil
	if err != nil {
		_ = r.stdoutR.Close()
		_ = r.stderrR.Close()
		_ = r.stdinW.Close()
		return fmt.Errorf("starting plugin %q (%s): %w", r.name, r.cmd.Args[0], err)
	}
	r.mu.Lock()
	r.pid = r.cmd.Process.Pid
	if r.killEarly {
		killGroup(r.pid)
		_ = r.cmd.Process.Kill()
	}
	r.mu.Unlock()
	go r.wait()
	return nil
}

func (r *procRunner) wait() {
	err := r.cmd.Wait()
	r.mu.Lock()
	r.reaped = true
	r.exit = exitInfo{Pid: r.pid, State: r.cmd.ProcessState, Err: err}
	r.mu.Unlock()
	_ = r.stdinW.Close()
	close(r.exited)
	time.AfterFunc(pipeGrace, r.closeReaders)
}

func (r *procRunner) closeReaders() {
	r.closePipes.Do(func() {
		_ = r.stdoutR.Close()
		_ = r.stderrR.Close()
	})
}

// Wait waits for the process to be reaped. go-plugin calls it once it has
// read the plugin's stdout and stderr to the end.
func (r *procRunner) Wait(_ context.Context) error {
	<-r.exited
	r.closeReaders()
	return r.exit.Err
}

// Kill kills the plugin and whatever it started in its process group.
func (r *procRunner) Kill(_ context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pid == 0 {
		r.killEarly = true
		return nil
	}
	if r.reaped {
		return nil
	}
	killGroup(r.pid)
	if err := r.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	return nil
}

// sweep kills what is left of the plugin's process group after the plugin
// itself is gone. The group's id cannot be handed to a new process while any
// member lives, so this cannot hit a stranger in practice.
func (r *procRunner) sweep() {
	if r.pid != 0 {
		killGroup(r.pid)
	}
}

// Stdout is where go-plugin reads the handshake line, with a bufio.Scanner
// whose lines may not pass 64 KiB: past that it stops reading, and a
// grandchild that inherited stdout and writes a long line would block on a
// full pipe for good. Cutting lines at 32 KiB keeps the scanner going.
func (r *procRunner) Stdout() io.ReadCloser {
	return &capLines{ReadCloser: r.stdoutR, max: 32 << 10}
}
func (r *procRunner) Stderr() io.ReadCloser { return r.stderrR }
func (r *procRunner) Name() string          { return r.name }
func (r *procRunner) ID() string {
	if r.pid == 0 {
		return ""
	}
	return strconv.Itoa(r.pid)
}

// Diagnose explains the usual reasons a plugin fails its handshake.
func (r *procRunner) Diagnose(_ context.Context) string {
	return fmt.Sprintf("plugin %q (%s) did not complete the role-plugin handshake: is it a role plugin built with the roster sdk for this OS and architecture, and executable?", r.name, r.cmd.Args[0])
}

func (r *procRunner) PluginToHost(n, a string) (string, string, error) { return n, a, nil }
func (r *procRunner) HostToPlugin(n, a string) (string, string, error) { return n, a, nil }

func killGroup(pgid int) {
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

// capLines inserts a newline into any line longer than max bytes.
type capLines struct {
	io.ReadCloser
	max       int
	run       int
	pendingNL bool
}

func (c *capLines) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if c.pendingNL {
		p[0] = '\n'
		c.pendingNL, c.run = false, 0
		return 1, nil
	}
	if room := c.max - c.run; len(p) > room {
		p = p[:room]
	}
	n, err := c.ReadCloser.Read(p)
	for _, b := range p[:n] {
		if b == '\n' {
			c.run = 0
		} else {
			c.run++
		}
	}
	if c.run >= c.max {
		c.pendingNL = true
	}
	return n, err
}
