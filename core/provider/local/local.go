// Package local is the machine provider of one host: each machine is a
// `roster agent` process with its own work directory,
// <data_dir>/machines/<id>. It imitates a cloud's machines closely enough
// for the orchestrator not to tell the difference:
//
//   - a machine boots after BootDelay (it exists, "pending", meanwhile);
//   - a launch token makes Launch idempotent, across restarts too;
//   - machines outlive the orchestrator: each agent runs in its own session
//     (setsid), so a SIGKILLed orchestrator's process group does not take
//     them along, and a new orchestrator on the same data_dir re-adopts them
//     from the machine file;
//   - Terminate ends every process of the machine (the agent, its plugins
//     and the services they started, in sessions of their own too):
//     SIGTERM, then SIGKILL after a grace period, as a cloud's terminate
//     leaves nothing of the instance running;
//   - a machine whose agent died shows as "stopped" until terminated; what
//     the agent started may still run until then, as on a cloud machine
//     whose agent crashed.
//
// Which processes are the machine's: where this host allows it (Linux,
// a writable cgroup v2 hierarchy), each machine is a cgroup,
// <own cgroup>/roster-<hash of data_dir>/<id>, that its agent is born in
// and that no descendant can leave, and Terminate ends with cgroup.kill.
// Elsewhere Terminate sweeps /proc for the agent's session, the processes
// whose working directory or standard streams lie under the work
// directory, and their descendants (see machineProcs for its limits).
package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/rosterhq/roster/core/provider"
	"github.com/rosterhq/roster/sdk/fsutil"
)

// Machine states, as List reports them.
const (
	StatePending    = "pending"    // launched, booting (BootDelay)
	StateRunning    = "running"    // the agent process runs
	StateStopped    = "stopped"    // the agent process died; not yet terminated
	StateTerminated = "terminated" // gone; kept for the launch token, not listed
)

// MachinesFile is the file under the data directory that lists the
// machines, so that an orchestrator restart finds them.
const MachinesFile = "provider-local.json"

// AgentLog is the agent's output file in its machine's work directory.
const AgentLog = "agent.log"

// Defaults of Options.
const (
	DefaultTerminateGrace = 10 * time.Second
	// terminatedTTL is how long a terminated machine's record (and so its
	// launch token) is kept.
	terminatedTTL = 24 * time.Hour
)

// Options configure the local provider.
type Options struct {
	// Exe is the roster executable; empty means os.Executable().
	Exe string
	// DataDir holds the machine file and the machines' work directories.
	DataDir string
	// AgentArgs returns the arguments the agent of a machine is started
	// with (after Exe); the orchestrator supplies them.
	AgentArgs func(machineID string) []string
	// Env is added to the agent's environment (which is the orchestrator's).
	Env []string
	// BootDelay simulates a cloud machine's boot time: the agent starts
	// this long after Launch.
	BootDelay time.Duration
	// MaxMachines bounds the pending and running machines; 0 means no
	// bound. Past it Launch returns provider.ErrCapacity.
	MaxMachines int
	// TerminateGrace is how long Terminate waits after SIGTERM before
	// SIGKILL; zero means 10 s.
	TerminateGrace time.Duration
	// KeepTerminated keeps a terminated machine's work directory (its
	// agent.log), for debugging; a cloud would wipe it.
	KeepTerminated bool
	// NoCgroup makes Terminate sweep /proc for a machine's processes even
	// where a cgroup per machine is possible (tests of the sweep; a host
	// whose cgroups another manager owns).
	NoCgroup bool
	Logger   hclog.Logger

	// noClone3 starts agents as if clone3 were refused (tests).
	noClone3 bool
}

// Provider is the local machine provider; it implements provider.Provider.
type Provider struct {
	opts Options
	log  hclog.Logger
	path string
	// cgParent is the cgroup the machines' cgroups are made in; empty
	// when cgroups are not used.
	cgParent string

	mu       sync.Mutex
	machines map[string]*record
	boots    map[string]*time.Timer
	closed   bool
}

var _ provider.Provider = (*Provider)(nil)

// record is one machine in the machine file.
type record struct {
	ID         string            `json:"id"`
	Token      string            `json:"token,omitempty"`
	Tags       map[string]string `json:"tags,omitempty"`
	State      string            `json:"state"`
	WorkDir    string            `json:"work_dir"`
	LaunchedAt time.Time         `json:"launched_at"`
	BootAt     time.Time         `json:"boot_at"`
	Pid        int               `json:"pid,omitempty"`
	// StartTime is the process's start time from /proc/<pid>/stat, in
	// clock ticks since boot: with the pid it names the process, so that a
	// reused pid is not taken for the agent.
	StartTime uint64 `json:"start_time,omitempty"`
	// Cgroup is the machine's cgroup directory; empty for a machine whose
	// processes Terminate finds by a /proc sweep.
	Cgroup       string    `json:"cgroup,omitempty"`
	TerminatedAt time.Time `json:"terminated_at,omitzero"`
}

type machineFile struct {
	Version  int       `json:"version"`
	Machines []*record `json:"machines"`
}

var idRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// New opens the provider on opts.DataDir, re-adopting the machines of the
// machine file: running agents are found by pid and start time, and
// machines still booting resume their boot.
func New(opts Options) (*Provider, error) {
	if opts.DataDir == "" {
		return nil, errors.New("local provider: data directory is required")
	}
	if opts.AgentArgs == nil {
		return nil, errors.New("local provider: agent arguments are required")
	}
	if opts.Exe == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("local provider: find the roster executable: %w", err)
		}
		opts.Exe = exe
	}
	if opts.TerminateGrace <= 0 {
		opts.TerminateGrace = DefaultTerminateGrace
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	dir, err := filepath.Abs(opts.DataDir)
	if err != nil {
		return nil, fmt.Errorf("local provider: data directory %s: %w", opts.DataDir, err)
	}
	opts.DataDir = dir
	if err := mkdirTraversable(dir, filepath.Join(dir, "machines")); err != nil {
		return nil, fmt.Errorf("local provider: %w", err)
	}
	p := &Provider{
		opts:     opts,
		log:      opts.Logger.Named("provider_local"),
		path:     filepath.Join(dir, MachinesFile),
		machines: map[string]*record{},
		boots:    map[string]*time.Timer{},
	}
	if !opts.NoCgroup {
		cg, err := cgroupParent(dir)
		if err != nil {
			p.log.Info("no cgroup per machine, terminate sweeps /proc for a machine's processes", "reason", err)
		} else {
			p.cgParent = cg
			p.log.Debug("a cgroup per machine", "cgroup", cg)
		}
	}
	if err := p.load(); err != nil {
		removeCgroupParent(p.cgParent)
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refreshLocked()
	for _, r := range p.machines {
		if r.State == StatePending {
			p.scheduleLocked(r)
		}
	}
	return p, p.saveLocked()
}

// Name implements provider.Provider.
func (p *Provider) Name() string { return "local" }

// Launch implements provider.Provider.
func (p *Provider) Launch(ctx context.Context, req provider.LaunchRequest) (provider.Machine, error) {
	if !idRE.MatchString(req.MachineID) {
		return provider.Machine{}, fmt.Errorf("local provider: machine id %q: use 1-64 letters, digits, '.', '_' or '-'", req.MachineID)
	}
	if len(req.Token) > 64 {
		return provider.Machine{}, fmt.Errorf("local provider: launch token of machine %s is longer than 64 characters", req.MachineID)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return provider.Machine{}, errors.New("local provider is closed")
	}
	p.refreshLocked()
	if req.Token != "" {
		for _, r := range p.machines {
			if r.Token == req.Token {
				return r.machine(), nil
			}
		}
	}
	if _, ok := p.machines[req.MachineID]; ok {
		return provider.Machine{}, fmt.Errorf("local provider: machine %s exists (launched with another token)", req.MachineID)
	}
	if p.opts.MaxMachines > 0 {
		n := 0
		for _, r := range p.machines {
			if r.State == StatePending || r.State == StateRunning {
				n++
			}
		}
		if n >= p.opts.MaxMachines {
			return provider.Machine{}, fmt.Errorf("local provider: %d machines of %d: %w", n, p.opts.MaxMachines, provider.ErrCapacity)
		}
	}
	now := time.Now().UTC()
	tags := map[string]string{}
	for k, v := range req.Tags {
		tags[k] = v
	}
	tags[provider.TagMachine] = req.MachineID
	r := &record{
		ID:         req.MachineID,
		Token:      req.Token,
		Tags:       tags,
		State:      StatePending,
		WorkDir:    filepath.Join(p.opts.DataDir, "machines", req.MachineID),
		LaunchedAt: now,
		BootAt:     now.Add(p.opts.BootDelay),
	}
	// A directory left by a machine of the same id is not this machine's.
	if err := os.RemoveAll(r.WorkDir); err != nil {
		return provider.Machine{}, fmt.Errorf("local provider: machine %s: %w", r.ID, err)
	}
	if err := mkdirTraversable(r.WorkDir); err != nil {
		return provider.Machine{}, fmt.Errorf("local provider: machine %s: %w", r.ID, err)
	}
	p.machines[r.ID] = r
	if p.opts.BootDelay <= 0 {
		p.bootLocked(r)
	}
	if err := p.saveLocked(); err != nil {
		return provider.Machine{}, err
	}
	if r.State == StatePending {
		p.scheduleLocked(r)
	}
	p.log.Info("machine launched", "machine_id", r.ID, "state", r.State, "boot_delay", p.opts.BootDelay)
	return r.machine(), nil
}

// scheduleLocked boots r at its boot time.
func (p *Provider) scheduleLocked(r *record) {
	if _, ok := p.boots[r.ID]; ok || p.closed {
		return
	}
	id := r.ID
	p.boots[id] = time.AfterFunc(time.Until(r.BootAt), func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		delete(p.boots, id)
		r, ok := p.machines[id]
		if p.closed || !ok || r.State != StatePending {
			return
		}
		p.bootLocked(r)
		if err := p.saveLocked(); err != nil {
			p.log.Error("machine file not saved", "error", err)
		}
	})
}

// bootLocked starts the machine's agent process in a session of its own,
// and in the machine's cgroup where there is one.
func (p *Provider) bootLocked(r *record) {
	log := p.log.With("machine_id", r.ID)
	out, err := os.OpenFile(filepath.Join(r.WorkDir, AgentLog), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		log.Error("machine did not boot", "error", err)
		r.State = StateStopped
		return
	}
	defer out.Close()
	command := func() *exec.Cmd {
		cmd := exec.Command(p.opts.Exe, p.opts.AgentArgs(r.ID)...)
		cmd.Dir = r.WorkDir
		cmd.Env = append(os.Environ(), p.opts.Env...)
		cmd.Stdout, cmd.Stderr = out, out
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		return cmd
	}
	var cg *machineCgroup
	if p.cgParent != "" {
		if cg, err = newCgroup(p.cgParent, r.ID); err != nil {
			log.Warn("machine has no cgroup, terminate will sweep /proc for its processes", "error", err)
		}
	}
	cmd := command()
	switch {
	case cg == nil:
		err = cmd.Start()
	case p.opts.noClone3:
		err = errors.New("clone3 not tried (test)")
	default:
		setCgroupFD(cmd.SysProcAttr, cg)
		err = cmd.Start()
	}
	if err != nil && cg != nil {
		// clone3 refused (a seccomp filter, a kernel before 5.7): a shell
		// moves itself in, then becomes the agent.
		log.Debug("agent not born in its cgroup, moving it in through /bin/sh", "error", err)
		cmd = command()
		var moved bool
		if moved, err = cg.startThroughShell(cmd); err != nil {
			cmd = command()
			err = cmd.Start()
		}
		if !moved {
			log.Warn("machine has no cgroup, terminate will sweep /proc for its processes", "cgroup", cg.dir)
			cg.discard()
			cg = nil
		}
	}
	if err != nil {
		if cg != nil {
			cg.discard()
		}
		log.Error("machine did not boot", "error", err)
		r.State = StateStopped
		return
	}
	if cg != nil {
		cg.release()
		r.Cgroup = cg.dir
	}
	r.Pid = cmd.Process.Pid
	if st, err := readStat(r.Pid); err == nil {
		r.StartTime = st.startTime
	}
	r.State = StateRunning
	log.Info("machine booted", "pid", r.Pid, "cgroup", r.Cgroup)
	// Reap the child while this process lives; after an orchestrator
	// restart the agent is init's child, and init reaps it.
	pid := r.Pid
	go func() {
		_ = cmd.Wait()
		p.mu.Lock()
		defer p.mu.Unlock()
		if r, ok := p.machines[r.ID]; ok && r.Pid == pid && r.State == StateRunning && !p.closed {
			r.State = StateStopped
			p.log.Info("machine stopped", "machine_id", r.ID, "pid", pid, "status", cmd.ProcessState.String())
			if err := p.saveLocked(); err != nil {
				p.log.Error("machine file not saved", "error", err)
			}
		}
	}()
}

// Terminate implements provider.Provider: SIGTERM to every process of the
// machine, SIGKILL after TerminateGrace to what is left; its agent may
// have died already.
func (p *Provider) Terminate(ctx context.Context, id string) error {
	p.mu.Lock()
	r, ok := p.machines[id]
	if !ok || r.State == StateTerminated {
		p.mu.Unlock()
		return nil
	}
	if t, ok := p.boots[id]; ok {
		t.Stop()
		delete(p.boots, id)
	}
	t := target{id: id, pid: r.Pid, startTime: r.StartTime, cgroup: r.Cgroup, workDir: r.WorkDir}
	p.mu.Unlock()

	// A machine that never booted ran nothing.
	if t.pid > 0 || t.cgroup != "" {
		if err := p.stopMachine(ctx, t); err != nil {
			return fmt.Errorf("local provider: terminate machine %s: %w", id, err)
		}
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	if t.cgroup != "" {
		// Under the lock: a machine booting now makes the parent again.
		removeCgroupParent(filepath.Dir(t.cgroup))
	}
	r.State = StateTerminated
	r.TerminatedAt = time.Now().UTC()
	if !p.opts.KeepTerminated {
		if err := os.RemoveAll(r.WorkDir); err != nil {
			p.log.Warn("machine work directory not removed", "machine_id", id, "error", err)
		}
	}
	p.log.Info("machine terminated", "machine_id", id)
	return p.saveLocked()
}

// List implements provider.Provider; terminated machines are not listed.
func (p *Provider) List(ctx context.Context, tags map[string]string) ([]provider.Machine, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.refreshLocked() {
		if err := p.saveLocked(); err != nil {
			return nil, err
		}
	}
	var out []provider.Machine
next:
	for _, r := range p.machines {
		if r.State == StateTerminated {
			continue
		}
		for k, v := range tags {
			if r.Tags[k] != v {
				continue next
			}
		}
		out = append(out, r.machine())
	}
	sortMachines(out)
	return out, nil
}

// Close implements provider.Provider: it stops the boot timers (a new
// provider on the data directory resumes them); machines keep running.
func (p *Provider) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for id, t := range p.boots {
		t.Stop()
		delete(p.boots, id)
	}
	removeCgroupParent(p.cgParent)
	return nil
}

// refreshLocked marks as stopped the running machines whose agent is gone,
// and forgets machines terminated long ago; it says whether anything
// changed.
func (p *Provider) refreshLocked() bool {
	changed := false
	now := time.Now()
	for id, r := range p.machines {
		switch r.State {
		case StateRunning:
			if !alive(r.Pid, r.StartTime) {
				r.State = StateStopped
				changed = true
			}
		case StateTerminated:
			if now.Sub(r.TerminatedAt) > terminatedTTL {
				delete(p.machines, id)
				changed = true
			}
		}
	}
	return changed
}

func (r *record) machine() provider.Machine {
	m := provider.Machine{
		ID:         r.ID,
		State:      r.State,
		Address:    "127.0.0.1",
		LaunchedAt: r.LaunchedAt,
		Tags:       map[string]string{},
	}
	if r.Pid > 0 {
		m.ProviderID = "pid:" + strconv.Itoa(r.Pid)
	}
	for k, v := range r.Tags {
		m.Tags[k] = v
	}
	return m
}

func (p *Provider) load() error {
	b, err := os.ReadFile(p.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("local provider: machine file %s: %w", p.path, err)
	}
	var f machineFile
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("local provider: machine file %s: %w", p.path, err)
	}
	if f.Version != 1 {
		return fmt.Errorf("local provider: machine file %s: version %d, want 1", p.path, f.Version)
	}
	for _, r := range f.Machines {
		p.machines[r.ID] = r
	}
	return nil
}

func (p *Provider) saveLocked() error {
	f := machineFile{Version: 1}
	for _, r := range p.machines {
		f.Machines = append(f.Machines, r)
	}
	sortRecords(f.Machines)
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(p.path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("local provider: machine file: %w", err)
	}
	return nil
}

// mkdirTraversable creates each directory (missing parents too, 0711) and
// makes sure users other than the owner may traverse it, without listing
// it: the services a role runs under their own users (postgres, www-data)
// reach their files below a machine's work directory,
// <data_dir>/machines/<id>/servers/<server>.
func mkdirTraversable(dirs ...string) error {
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return err
		}
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		// A restrictive umask, or a directory made by an older version.
		if m := fi.Mode().Perm(); m&0o011 != 0o011 {
			if err := os.Chmod(d, m|0o011); err != nil {
				return err
			}
		}
	}
	return nil
}
