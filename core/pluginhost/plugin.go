package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/hashicorp/go-plugin/runner"
	"github.com/rosterhq/roster/sdk"
	"github.com/rosterhq/roster/sdk/rolehost"
)

// instance is one running plugin process.
type instance struct {
	client  *plugin.Client
	role    rolehost.Role
	run     *procRunner
	digest  string // "" when the file was not hashed
	started time.Time
}

// stop ends the process (gracefully first, as go-plugin does), cleans up
// after it, and kills whatever is left of its process group.
func (i *instance) stop() {
	i.client.Kill()
	i.run.sweep()
}

// start launches src and dispenses its role. When the plugin is pinned, or
// hash is set, the executable is opened, hashed and executed through that
// same open file.
func (h *Host) start(ctx context.Context, src source, hash bool) (*instance, error) {
	var exe *os.File
	digest := ""
	pin := h.pins[src.name]
	if pin != "" || hash {
		f, err := os.Open(src.execPath)
		if err != nil {
			return nil, fmt.Errorf("plugin %q: %w", src.name, err)
		}
		defer f.Close()
		if digest, err = digestOf(f); err != nil {
			return nil, fmt.Errorf("plugin %q: %w", src.name, err)
		}
		if pin != "" && digest != pin {
			return nil, sdk.Errorf(sdk.ErrChecksumMismatch,
				"plugin %q: refusing to launch %s: expected %s, actual %s", src.name, src.path, pin, digest)
		}
		exe = f
	}

	log := keepModule(h.logger.Named("plugin"))
	cmd := &exec.Cmd{Path: src.execPath, Args: append([]string{src.path}, src.args...)}
	var (
		runMu     sync.Mutex
		run       *procRunner
		cancelled bool
	)
	cfg := rolehost.ClientConfig(nil, log)
	cfg.Cmd = nil
	cfg.SkipHostEnv = true
	cfg.StartTimeout = h.opts.StartTimeout
	cfg.PluginLogBufferSize = h.opts.LogLineMax
	// After Serve, a plugin's os.Stdout and os.Stderr travel over gRPC.
	cfg.SyncStdout = newLineLogger(log.Named(src.name), hclog.Debug, h.opts.LogLineMax)
	cfg.SyncStderr = newLineLogger(log.Named(src.name), hclog.Info, h.opts.LogLineMax)
	cfg.RunnerFunc = func(_ hclog.Logger, gp *exec.Cmd, _ string) (runner.Runner, error) {
		// gp.Env holds go-plugin's handshake, port, socket and mTLS
		// variables; nothing of the host's own environment (SkipHostEnv).
		fixed := append(append([]string{}, gp.Env...), sdk.LogLevelEnv+"="+levelName(h.logger))
		cmd.Env = pluginEnv(hostEnviron(), h.opts.ExtraEnv, fixed)
		runMu.Lock()
		defer runMu.Unlock()
		if cancelled {
			return nil, ctx.Err()
		}
		r, err := newProcRunner(src.name, cmd, exe)
		if err != nil {
			return nil, err
		}
		run = r
		return r, nil
	}
	client := plugin.NewClient(cfg)

	type result struct {
		role rolehost.Role
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		r, err := rolehost.Dispense(client)
		ch <- result{r, err}
	}()
	var res result
	select {
	case res = <-ch:
	case <-ctx.Done():
		// go-plugin's Kill waits for Start to finish; killing the process
		// makes Start give up at once.
		runMu.Lock()
		cancelled = true
		if run != nil {
			_ = run.Kill(context.Background())
		}
		runMu.Unlock()
		<-ch
		res = result{err: ctx.Err()}
	}
	if res.err != nil {
		client.Kill()
		runMu.Lock()
		if run != nil {
			run.sweep()
		}
		runMu.Unlock()
		return nil, fmt.Errorf("plugin %q (%s): %w", src.name, src.path, res.err)
	}
	h.logger.Named("pluginhost").Debug("plugin process started", "plugin", src.name, "pid", run.pid, "path", src.path, "digest", digest)
	return &instance{client: client, role: res.role, run: run, digest: digest, started: time.Now()}, nil
}

func levelName(l hclog.Logger) string {
	switch l.GetLevel() {
	case hclog.Trace:
		return "trace"
	case hclog.Debug:
		return "debug"
	case hclog.Warn:
		return "warn"
	case hclog.Error, hclog.Off:
		return "error"
	}
	return "info"
}

// EventKind says what happened to a supervised plugin.
type EventKind string

// The kinds of Event.
const (
	// EventStarted: a plugin process started (first launch or relaunch).
	EventStarted EventKind = "started"
	// EventExited: a plugin process died on its own; a relaunch follows
	// after Event.Backoff.
	EventExited EventKind = "exited"
	// EventRestartFailed: a relaunch failed; another follows after
	// Event.Backoff.
	EventRestartFailed EventKind = "restart_failed"
	// EventClosed: Close stopped the plugin for good.
	EventClosed EventKind = "closed"
)

// Event reports a change in a supervised plugin's life.
type Event struct {
	Plugin string
	Kind   EventKind
	Pid    int
	// ExitStatus is how the process ended ("signal: killed", "exit status
	// 2"), for EventExited.
	ExitStatus string
	// Restarts counts the relaunches so far.
	Restarts int
	// Backoff is the wait before the next relaunch.
	Backoff time.Duration
	Err     error
}

// Plugin is a launched, supervised role plugin. It implements sdk.Role and
// sdk.Configurer by handing each call to the plugin process of the moment.
// While the process is down (between its death and its relaunch) calls fail
// at once with an error wrapping sdk.ErrUnavailable.
type Plugin struct {
	host *Host
	src  source
	log  hclog.Logger

	mu       sync.Mutex
	cur      *instance
	closed   bool
	restarts int
	lastExit string

	closeCh chan struct{}
	done    chan struct{}
}

var (
	_ sdk.Role       = (*Plugin)(nil)
	_ sdk.Configurer = (*Plugin)(nil)
)

// Launch starts the named plugin and supervises it until Close: a process
// that dies is relaunched with exponential backoff, and reported through
// the log and Options.OnEvent. The first start is not retried: its error is
// returned (wrapping sdk.ErrNotFound for a plugin that does not exist, and
// sdk.ErrChecksumMismatch for one that differs from its pin).
func (h *Host) Launch(ctx context.Context, name string) (*Plugin, error) {
	src, err := h.find(name)
	if err != nil {
		return nil, err
	}
	inst, err := h.start(ctx, src, false)
	if err != nil {
		return nil, err
	}
	p := &Plugin{
		host:    h,
		src:     src,
		log:     h.logger.Named("pluginhost").With("plugin", name),
		cur:     inst,
		closeCh: make(chan struct{}),
		done:    make(chan struct{}),
	}
	h.emit(Event{Plugin: name, Kind: EventStarted, Pid: inst.run.pid})
	go p.supervise(inst)
	return p, nil
}

func (h *Host) emit(e Event) {
	if h.opts.OnEvent != nil {
		h.opts.OnEvent(e)
	}
}

func (p *Plugin) supervise(inst *instance) {
	defer close(p.done)
	b := p.host.opts.Backoff
	delay := b.Initial
	for {
		select {
		case <-inst.run.exited:
		case <-p.closeCh:
			return
		}
		ex := inst.run.exit
		ranFor := time.Since(inst.started)
		// The rest of the plugin's process group goes now, while its id
		// still cannot belong to anyone else. Cleaning up may wait for
		// stray holders of the plugin's pipes: not on this goroutine.
		inst.run.sweep()
		go inst.stop()
		if ranFor >= b.StableAfter {
			delay = b.Initial
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return
		}
		p.cur = nil
		p.lastExit = ex.Status()
		restarts := p.restarts
		p.mu.Unlock()
		p.log.Error("plugin exited", "pid", ex.Pid, "exit_status", ex.Status(), "restarts", restarts,
			"ran_for", ranFor.Round(time.Millisecond), "next_restart_in", delay)
		p.host.emit(Event{Plugin: p.src.name, Kind: EventExited, Pid: ex.Pid, ExitStatus: ex.Status(),
			Restarts: restarts, Backoff: delay})

		for {
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-p.closeCh:
				t.Stop()
				return
			}
			delay = min(2*delay, b.Max)
			var err error
			inst, err = p.relaunch()
			if err == nil {
				break
			}
			if inst == nil && errors.Is(err, errClosed) {
				return
			}
			p.log.Error("plugin relaunch failed", "error", err, "restarts", p.Restarts(), "next_restart_in", delay)
			p.host.emit(Event{Plugin: p.src.name, Kind: EventRestartFailed, Restarts: p.Restarts(), Backoff: delay, Err: err})
		}
	}
}

var errClosed = errors.New("plugin closed")

func (p *Plugin) relaunch() (*instance, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-p.closeCh:
			cancel()
		case <-ctx.Done():
		}
	}()
	inst, err := p.host.start(ctx, p.src, false)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.restarts++
	if p.closed {
		if inst != nil {
			// Close is waiting for the supervisor: stop it before that ends.
			p.mu.Unlock()
			inst.stop()
			p.mu.Lock()
		}
		return nil, errClosed
	}
	if err != nil {
		return nil, err
	}
	p.cur = inst
	p.log.Info("plugin relaunched", "pid", inst.run.pid, "restarts", p.restarts)
	p.host.emit(Event{Plugin: p.src.name, Kind: EventStarted, Pid: inst.run.pid, Restarts: p.restarts})
	return inst, nil
}

// Name is the plugin's name.
func (p *Plugin) Name() string { return p.src.name }

// Path is the plugin's executable (the roster binary for a built-in).
func (p *Plugin) Path() string { return p.src.path }

// Builtin says whether the roster binary serves the plugin.
func (p *Plugin) Builtin() bool { return p.src.builtin }

// Pid is the process id of the plugin process of the moment, 0 while it is
// down.
func (p *Plugin) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur == nil {
		return 0
	}
	return p.cur.run.pid
}

// Restarts counts the relaunches so far.
func (p *Plugin) Restarts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.restarts
}

// Close stops the plugin for good (gracefully, then by force) together with
// its process group. It is safe to call twice.
func (p *Plugin) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.done
		return nil
	}
	p.closed = true
	inst := p.cur
	p.cur = nil
	close(p.closeCh)
	p.mu.Unlock()
	<-p.done
	pid := 0
	if inst != nil {
		pid = inst.run.pid
		inst.stop()
	}
	p.log.Debug("plugin closed", "pid", pid)
	p.host.emit(Event{Plugin: p.src.name, Kind: EventClosed, Pid: pid, Restarts: p.Restarts()})
	return nil
}

// current returns the running instance, or an ErrUnavailable error.
func (p *Plugin) current() (*instance, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, sdk.Errorf(sdk.ErrUnavailable, "plugin %q is closed", p.src.name)
	}
	if p.cur == nil {
		return nil, sdk.Errorf(sdk.ErrUnavailable, "plugin %q is down (%s), relaunch %d pending",
			p.src.name, p.lastExit, p.restarts+1)
	}
	return p.cur, nil
}

// callErr makes sure a call that failed because the process died says so
// with sdk.ErrUnavailable, whatever the transport made of it.
func (p *Plugin) callErr(inst *instance, call string, err error) error {
	if err == nil || errors.Is(err, sdk.ErrUnavailable) {
		return err
	}
	select {
	case <-inst.run.exited:
		return fmt.Errorf("plugin %q died during %s: %w: %w", p.src.name, call, sdk.ErrUnavailable, err)
	default:
		return err
	}
}

// Info asks the plugin to describe itself.
func (p *Plugin) Info(ctx context.Context) (sdk.Info, error) {
	inst, err := p.current()
	if err != nil {
		return sdk.Info{}, err
	}
	r, err := inst.role.Info(ctx)
	return r, p.callErr(inst, "Info", err)
}

// ConfigSchema asks the plugin for its config schema.
func (p *Plugin) ConfigSchema(ctx context.Context) (sdk.Schema, error) {
	inst, err := p.current()
	if err != nil {
		return sdk.Schema{}, err
	}
	r, err := inst.role.ConfigSchema(ctx)
	return r, p.callErr(inst, "ConfigSchema", err)
}

// Provision calls the plugin's Provision.
func (p *Plugin) Provision(ctx context.Context, req sdk.ProvisionRequest) (sdk.ProvisionResponse, error) {
	inst, err := p.current()
	if err != nil {
		return sdk.ProvisionResponse{}, err
	}
	r, err := inst.role.Provision(ctx, req)
	return r, p.callErr(inst, "Provision", err)
}

// HealthCheck calls the plugin's HealthCheck.
func (p *Plugin) HealthCheck(ctx context.Context, req sdk.HealthCheckRequest) (sdk.HealthCheckResponse, error) {
	inst, err := p.current()
	if err != nil {
		return sdk.HealthCheckResponse{}, err
	}
	r, err := inst.role.HealthCheck(ctx, req)
	return r, p.callErr(inst, "HealthCheck", err)
}

// Drain calls the plugin's Drain.
func (p *Plugin) Drain(ctx context.Context, req sdk.DrainRequest) (sdk.DrainResponse, error) {
	inst, err := p.current()
	if err != nil {
		return sdk.DrainResponse{}, err
	}
	r, err := inst.role.Drain(ctx, req)
	return r, p.callErr(inst, "Drain", err)
}

// Teardown calls the plugin's Teardown.
func (p *Plugin) Teardown(ctx context.Context, req sdk.TeardownRequest) (sdk.TeardownResponse, error) {
	inst, err := p.current()
	if err != nil {
		return sdk.TeardownResponse{}, err
	}
	r, err := inst.role.Teardown(ctx, req)
	return r, p.callErr(inst, "Teardown", err)
}

// Configure calls the plugin's Configure; it wraps sdk.ErrUnimplemented
// when the plugin has none.
func (p *Plugin) Configure(ctx context.Context, req sdk.ConfigureRequest) error {
	inst, err := p.current()
	if err != nil {
		return err
	}
	return p.callErr(inst, "Configure", inst.role.Configure(ctx, req))
}
