// Package process runs the daemons of a role (apache, memcached, postgres…)
// as private instances: started from a configuration under the server's work
// directory, never through the system's service manager, each the leader of
// its own session and process group, with stdout and stderr going straight
// to log files.
//
// A Supervisor keeps one small state file per daemon (pid, process group and
// the kernel's start time of the process) in its directory, so that a plugin
// process that was restarted finds its daemons again with Find; the start
// time guards against a recycled pid. Daemons must run in the foreground
// (apache2 -DFOREGROUND, memcached without -d, postgres rather than pg_ctl
// start): a daemon that forks into a new session escapes the group that Stop
// accounts for.
//
// Stop sends the stop signal (or runs the stop command), waits for the whole
// process group to exit until a deadline, then SIGKILLs the group and
// verifies that no process of it remains.
package process

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/rosterhq/roster/sdk"
	"github.com/rosterhq/roster/sdk/fsutil"
)

// Spec describes a daemon to start.
type Spec struct {
	// Name names the daemon within its Supervisor ("apache", "memcached");
	// it names the state file and the default log files. Letters, digits,
	// '.', '_' and '-' only.
	Name string
	// Path is the executable; a bare name is looked up in PATH.
	Path string
	// Args are the arguments, without the program name.
	Args []string
	// Env is added to the plugin's own environment.
	Env []string
	// Dir is the working directory; the Supervisor's directory when empty.
	Dir string
	// Stdout and Stderr are log files the daemon's output is appended to;
	// <dir>/<name>.out.log and <dir>/<name>.err.log when empty. One path
	// for both is fine.
	Stdout, Stderr string
	// StopSignal asks the daemon to stop; SIGTERM when zero.
	StopSignal syscall.Signal
	// StopCommand, when set, is run instead of sending StopSignal (such as
	// pg_ctl stop -m fast). Stop still waits for the group to exit.
	StopCommand []string
	// User, when set, runs the daemon as this user and its primary group,
	// with HOME, USER and LOGNAME to match: for daemons that refuse to run
	// as root (postgres). Switching users needs root; the log files are
	// opened before the switch, so they may belong to root; Dir must be
	// one the user may enter.
	User string
	// Descendants also counts as the daemon's the processes it starts that
	// leave its process group, as PostgreSQL's children do (each calls
	// setsid()). They are found by parent pid while the leader runs and
	// remembered by pid and start time, so that Members lists them and Stop
	// waits for them and SIGKILLs them at the deadline, even once the
	// leader exited (when they are no longer its children). A daemon found
	// again by a relaunched plugin after its leader exited has no memory of
	// them.
	Descendants bool
}

// State is what a Supervisor records of a running daemon.
type State struct {
	Name string `json:"name"`
	Pid  int    `json:"pid"`
	// StartTime is the start time of the process in clock ticks since boot,
	// from /proc/<pid>/stat; with Pid it names the process uniquely.
	StartTime   uint64         `json:"start_time"`
	Path        string         `json:"path"`
	Args        []string       `json:"args"`
	Stdout      string         `json:"stdout"`
	Stderr      string         `json:"stderr"`
	StopSignal  syscall.Signal `json:"stop_signal"`
	StopCommand []string       `json:"stop_command,omitempty"`
	User        string         `json:"user,omitempty"`
	Descendants bool           `json:"descendants,omitempty"`
	StartedAt   time.Time      `json:"started_at"`
}

// Errors of this package; both wrap the sdk's typed errors.
var (
	// ErrNotRunning: no daemon of that name was started, or it has exited
	// and left no process behind.
	ErrNotRunning = fmt.Errorf("%w: daemon not running", sdk.ErrNotFound)
	// ErrAlreadyRunning: Start was asked for a daemon that still runs.
	ErrAlreadyRunning = fmt.Errorf("%w: daemon already running", sdk.ErrFailedPrecondition)
)

var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// Supervisor starts, finds and stops the daemons of one server.
type Supervisor struct {
	dir    string
	logger hclog.Logger
	// PollInterval is how often Stop and WaitReady look again; 10ms when
	// zero.
	PollInterval time.Duration
}

// NewSupervisor returns a Supervisor that keeps its state files (and default
// log files) in dir, creating it. A Supervisor made later with the same dir,
// in another process, finds the same daemons.
func NewSupervisor(dir string, logger hclog.Logger) (*Supervisor, error) {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("process: supervisor directory: %w", err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("process: supervisor directory: %w", err)
	}
	return &Supervisor{dir: abs, logger: logger.Named("process")}, nil
}

// Dir returns the directory the Supervisor keeps its state in.
func (s *Supervisor) Dir() string { return s.dir }

func (s *Supervisor) interval() time.Duration {
	if s.PollInterval > 0 {
		return s.PollInterval
	}
	return 10 * time.Millisecond
}

func (s *Supervisor) statePath(name string) string {
	return filepath.Join(s.dir, name+".state.json")
}

// PidFile returns the path of the plain pid file the Supervisor writes for a
// daemon, for people and shell tools.
func (s *Supervisor) PidFile(name string) string {
	return filepath.Join(s.dir, name+".pid")
}

// Start starts the daemon and records it. It returns as soon as the process
// runs: use Process.WaitReady to wait until it answers. The daemon outlives
// the plugin process; only Stop ends it.
func (s *Supervisor) Start(ctx context.Context, spec Spec) (*Process, error) {
	if !validName.MatchString(spec.Name) {
		return nil, fmt.Errorf("process: bad daemon name %q", spec.Name)
	}
	if p, err := s.Find(spec.Name); err == nil {
		if members, _ := p.Members(); len(members) > 0 {
			return nil, fmt.Errorf("%w: %s (pid %d)", ErrAlreadyRunning, spec.Name, p.Pid)
		}
	}
	path, err := exec.LookPath(spec.Path)
	if err != nil {
		return nil, sdk.Errorf(sdk.ErrNotFound, "daemon %s: executable %s: %v", spec.Name, spec.Path, err)
	}
	if spec.Stdout == "" {
		spec.Stdout = filepath.Join(s.dir, spec.Name+".out.log")
	}
	if spec.Stderr == "" {
		spec.Stderr = filepath.Join(s.dir, spec.Name+".err.log")
	}
	if spec.StopSignal == 0 {
		spec.StopSignal = syscall.SIGTERM
	}
	stdout, err := openLog(spec.Stdout)
	if err != nil {
		return nil, fmt.Errorf("process: daemon %s: %w", spec.Name, err)
	}
	defer stdout.Close()
	stderr := stdout
	if spec.Stderr != spec.Stdout {
		if stderr, err = openLog(spec.Stderr); err != nil {
			return nil, fmt.Errorf("process: daemon %s: %w", spec.Name, err)
		}
		defer stderr.Close()
	}

	// Not exec.CommandContext: the daemon must outlive the call that
	// started it.
	cmd := exec.Command(path, spec.Args...)
	cmd.Env = append(os.Environ(), spec.Env...)
	cmd.Dir = spec.Dir
	if cmd.Dir == "" {
		cmd.Dir = s.dir
	}
	cmd.Stdin = nil
	// The files themselves, not pipes, so that output keeps flowing when the
	// plugin process is gone.
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// A new session makes the daemon a process group leader, out of reach of
	// signals sent to the plugin's group and of its terminal.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if spec.User != "" {
		cred, env, err := credentialOf(spec.User)
		if err != nil {
			return nil, sdk.Errorf(sdk.ErrNotFound, "daemon %s: %v", spec.Name, err)
		}
		cmd.SysProcAttr.Credential = cred
		cmd.Env = append(cmd.Env, env...)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("process: starting %s: %w", spec.Name, err)
	}
	done := make(chan struct{})
	p := &Process{sup: s, done: done}
	go func() {
		// Reap the child so that it does not linger as a zombie; Stop and
		// Alive look at /proc, which works for daemons found again too.
		err := cmd.Wait()
		p.mu.Lock()
		p.exitErr = err
		p.mu.Unlock()
		close(done)
	}()
	st, err := readStat(cmd.Process.Pid)
	if err != nil {
		// It exited already; its start time no longer matters.
		st = procStat{pid: cmd.Process.Pid}
	}
	p.State = State{
		Name:        spec.Name,
		Pid:         cmd.Process.Pid,
		StartTime:   st.startTime,
		Path:        path,
		Args:        spec.Args,
		Stdout:      spec.Stdout,
		Stderr:      spec.Stderr,
		StopSignal:  spec.StopSignal,
		StopCommand: spec.StopCommand,
		User:        spec.User,
		Descendants: spec.Descendants,
		StartedAt:   time.Now().UTC(),
	}
	if err := s.writeState(p.State); err != nil {
		_ = syscall.Kill(-p.Pid, syscall.SIGKILL)
		return nil, err
	}
	s.logger.Debug("daemon started", "name", spec.Name, "pid", p.Pid, "path", path)
	return p, nil
}

// credentialOf returns the credential and environment of a user.
func credentialOf(name string) (*syscall.Credential, []string, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, nil, err
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, nil, fmt.Errorf("user %s: uid %q", name, u.Uid)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, nil, fmt.Errorf("user %s: gid %q", name, u.Gid)
	}
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
	return cred, []string{"HOME=" + u.HomeDir, "USER=" + u.Username, "LOGNAME=" + u.Username}, nil
}

func openLog(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
}

func (s *Supervisor) writeState(st State) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(s.statePath(st.Name), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("process: recording %s: %w", st.Name, err)
	}
	if err := fsutil.WriteFileAtomic(s.PidFile(st.Name), fmt.Appendf(nil, "%d\n", st.Pid), 0o644); err != nil {
		return fmt.Errorf("process: recording %s: %w", st.Name, err)
	}
	return nil
}

// Find returns the daemon recorded under name, whether or not it still
// runs (see Alive and Members), or an error wrapping ErrNotRunning when
// nothing is recorded.
func (s *Supervisor) Find(name string) (*Process, error) {
	if !validName.MatchString(name) {
		return nil, fmt.Errorf("process: bad daemon name %q", name)
	}
	b, err := os.ReadFile(s.statePath(name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotRunning, name)
	}
	if err != nil {
		return nil, fmt.Errorf("process: reading state of %s: %w", name, err)
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("process: state file %s: %w", s.statePath(name), err)
	}
	return &Process{State: st, sup: s}, nil
}

// Names lists the daemons recorded in the Supervisor's directory.
func (s *Supervisor) Names() ([]string, error) {
	m, err := filepath.Glob(filepath.Join(s.dir, "*.state.json"))
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(m))
	for _, p := range m {
		names = append(names, strings.TrimSuffix(filepath.Base(p), ".state.json"))
	}
	return names, nil
}

// Stop stops the daemon recorded under name (see Process.Stop). A daemon
// that is not recorded is already stopped: Stop returns nil, so that
// Teardown may call it twice.
func (s *Supervisor) Stop(ctx context.Context, name string, timeout time.Duration) error {
	p, err := s.Find(name)
	if errors.Is(err, ErrNotRunning) {
		return nil
	}
	if err != nil {
		return err
	}
	return p.Stop(ctx, timeout)
}

// Process is a daemon started or found by a Supervisor.
type Process struct {
	State
	sup *Supervisor
	// done is closed when this process reaped the daemon; nil for a daemon
	// found again.
	done    chan struct{}
	mu      sync.Mutex
	exitErr error
	// tracked are the descendants seen outside the group (Spec.Descendants),
	// by pid, with their start times.
	tracked map[int]uint64
}

// Alive says whether the daemon's leader process still runs: the pid exists,
// is not a zombie, and has the start time recorded, so a recycled pid does
// not count.
func (p *Process) Alive() bool {
	if p.done != nil {
		select {
		case <-p.done:
			return false
		default:
		}
	}
	st, err := readStat(p.Pid)
	if err != nil || st.dead() {
		return false
	}
	return p.StartTime == 0 || st.startTime == p.StartTime
}

// Members returns the pids of every live process of the daemon's process
// group: the leader and every child it started (apache's workers, a CGI
// script), even after the leader itself exited; with Spec.Descendants, also
// the descendants that left the group. Sorted.
func (p *Process) Members() ([]int, error) {
	group, others, err := p.members()
	return append(group, others...), err
}

// members returns the live members of the group and, apart, the other
// descendants tracked (Spec.Descendants), each sorted.
func (p *Process) members() (group, others []int, err error) {
	procs, err := listProcs()
	if err != nil {
		return nil, nil, err
	}
	// A recycled pid, and with it the group id, is not ours.
	st, found := procs[p.Pid]
	ours := !found || st.dead() || p.StartTime == 0 || st.startTime == p.StartTime
	if ours {
		for pid, st := range procs {
			if st.pgrp == p.Pid && st.session == p.Pid && !st.dead() {
				group = append(group, pid)
			}
		}
		sort.Ints(group)
	}
	if p.Descendants {
		others = p.descendants(procs, group, ours)
	}
	return group, others, nil
}

// descendants notes the live descendants of the leader and of the group's
// members, and returns those noted (now or before) that still run and are
// not in the group.
func (p *Process) descendants(procs map[int]procStat, group []int, ours bool) []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tracked == nil {
		p.tracked = map[int]uint64{}
	}
	if ours {
		children := map[int][]int{}
		for pid, st := range procs {
			if !st.dead() {
				children[st.ppid] = append(children[st.ppid], pid)
			}
		}
		seen := map[int]bool{}
		for queue := append([]int{p.Pid}, group...); len(queue) > 0; queue = queue[1:] {
			if seen[queue[0]] {
				continue
			}
			seen[queue[0]] = true
			for _, c := range children[queue[0]] {
				p.tracked[c] = procs[c].startTime
				queue = append(queue, c)
			}
		}
	}
	inGroup := make(map[int]bool, len(group))
	for _, pid := range group {
		inGroup[pid] = true
	}
	var out []int
	for pid, start := range p.tracked {
		st, ok := procs[pid]
		if !ok || st.dead() || st.startTime != start {
			delete(p.tracked, pid)
			continue
		}
		if !inGroup[pid] {
			out = append(out, pid)
		}
	}
	sort.Ints(out)
	return out
}

// Signal sends sig to the daemon's leader, if it is alive.
func (p *Process) Signal(sig syscall.Signal) error {
	if !p.Alive() {
		return fmt.Errorf("%w: %s (pid %d)", ErrNotRunning, p.Name, p.Pid)
	}
	if err := syscall.Kill(p.Pid, sig); err != nil {
		return fmt.Errorf("process: signalling %s (pid %d): %w", p.Name, p.Pid, err)
	}
	return nil
}

// signalGroup sends sig to every member of the group, and to the
// descendants tracked outside it.
func (p *Process) signalGroup(sig syscall.Signal) error {
	group, others, err := p.members()
	if err != nil {
		return err
	}
	if len(group) > 0 {
		if err := syscall.Kill(-p.Pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("process: signalling group of %s (pgid %d): %w", p.Name, p.Pid, err)
		}
	}
	for _, pid := range others {
		if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("process: signalling pid %d of %s: %w", pid, p.Name, err)
		}
	}
	return nil
}

// WaitExited waits until no process of the daemon's group remains, or ctx
// is done; it returns the pids left.
func (p *Process) WaitExited(ctx context.Context) ([]int, error) {
	t := time.NewTicker(p.sup.interval())
	defer t.Stop()
	done := p.done
	for {
		members, err := p.Members()
		if err != nil || len(members) == 0 {
			return members, err
		}
		select {
		case <-ctx.Done():
			return members, nil
		case <-t.C:
		case <-done:
			// Once: what outlives the leader is polled for.
			done = nil
		}
	}
}

// Stop asks the daemon to stop (its StopCommand, or its StopSignal to the
// leader), waits up to timeout for its whole process group to exit, then
// SIGKILLs whatever remains of the group and verifies that nothing does.
// It removes the state file once the group is gone. Stopping a daemon that
// has exited already is not an error.
func (p *Process) Stop(ctx context.Context, timeout time.Duration) error {
	log := p.sup.logger.With("name", p.Name, "pid", p.Pid)
	members, err := p.Members()
	if err != nil {
		return err
	}
	if len(members) > 0 {
		gctx, cancel := context.WithTimeout(ctx, timeout)
		if len(p.StopCommand) > 0 {
			if out, err := runStopCommand(gctx, p.StopCommand); err != nil {
				log.Warn("stop command failed", "error", err, "output", strings.TrimSpace(string(out)))
			}
		} else if err := p.Signal(p.StopSignal); err != nil && !errors.Is(err, ErrNotRunning) {
			log.Warn("stop signal failed", "error", err)
		}
		left, err := p.WaitExited(gctx)
		cancel()
		if err != nil {
			return err
		}
		if len(left) > 0 {
			log.Warn("daemon did not stop in time, killing its process group", "timeout", timeout, "pids", left)
			if err := p.signalGroup(syscall.SIGKILL); err != nil {
				return err
			}
			// SIGKILL cannot be caught: give the kernel a moment, bounded
			// even when ctx is not.
			kctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			left, err = p.WaitExited(kctx)
			cancel()
			if err != nil {
				return err
			}
			if len(left) > 0 {
				return sdk.Errorf(sdk.ErrTimeout, "daemon %s: processes %v survived SIGKILL", p.Name, left)
			}
		}
		log.Debug("daemon stopped")
	}
	if p.done != nil {
		// Collect the exit status so the reaper goroutine is finished.
		select {
		case <-p.done:
		case <-time.After(time.Second):
		}
	}
	for _, f := range []string{p.sup.statePath(p.Name), p.sup.PidFile(p.Name)} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("process: %w", err)
		}
	}
	return nil
}

func runStopCommand(ctx context.Context, argv []string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.Bytes(), err
}

// ExitError returns how the daemon exited, when this process started and
// reaped it; nil otherwise or while it runs.
func (p *Process) ExitError() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exitErr
}

// ProbeFunc answers nil when the daemon is ready to serve.
type ProbeFunc func(ctx context.Context) error

// WaitReady calls probe until it answers nil, the daemon exits, or ctx is
// done. When the daemon exits the error quotes the end of its stderr log,
// which is usually the reason; when ctx ends it wraps sdk.ErrTimeout and the
// probe's last error.
func (p *Process) WaitReady(ctx context.Context, probe ProbeFunc) error {
	t := time.NewTicker(p.sup.interval())
	defer t.Stop()
	for {
		err := probe(ctx)
		if err == nil {
			return nil
		}
		if !p.Alive() {
			// It may have answered just before it exited; it still failed.
			return sdk.Errorf(sdk.ErrUnavailable, "daemon %s exited while starting (%v): %s",
				p.Name, p.ExitError(), Tail(p.Stderr, 2048))
		}
		select {
		case <-ctx.Done():
			return sdk.Errorf(sdk.ErrTimeout, "daemon %s not ready: %v", p.Name, err)
		case <-t.C:
		case <-p.done:
		}
	}
}

// Tail returns at most the last n bytes of a file, trimmed, for error
// messages; "" when it cannot be read.
func Tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(fi.Size()-n, 0)
	b, err := io.ReadAll(io.NewSectionReader(f, off, fi.Size()-off))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
