// Package agent is the state machine that runs on every machine: a spare
// long-polls the global queue for a commission; a commissioned machine runs
// its role plugin's Provision, then serves (heartbeats with the plugin's
// health and metrics, orders from its own inbox) until it is halted, when it
// drains, tears down, ships its logs and either exits or becomes a spare
// again.
//
// Every transition is written to a state file in the work directory before
// it takes effect, so that an agent killed at any moment and started again
// resumes rather than provisioning twice; every order id applied is
// remembered there too, so a redelivered order changes nothing.
//
// The agent is single-threaded on purpose: one loop per state receives,
// decides and acts, and the state is touched by that loop alone. Only the
// forwarding of provisioning progress runs beside it.
package agent

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/rosterhq/roster/core/protocol"
	"github.com/rosterhq/roster/core/queue"
	"github.com/rosterhq/roster/sdk"
)

// Defaults of Config's durations.
const (
	DefaultSpareHeartbeat   = 30 * time.Second
	DefaultGrantWait        = 10 * time.Second
	DefaultProgressInterval = 250 * time.Millisecond
	DefaultTeardownTimeout  = 5 * time.Minute
	DefaultHealthInterval   = 5 * time.Second
	DefaultHealthTimeout    = 2 * time.Second
	DefaultProvisionTimeout = 10 * time.Minute
	DefaultDrainTimeout     = 60 * time.Second
)

// Launcher starts role plugins. pluginhost's Host is one (through
// LauncherFunc); tests use an in-process role.
type Launcher interface {
	// Launch starts the named plugin, or returns the running one.
	Launch(ctx context.Context, name string) (sdk.Role, error)
}

// LauncherFunc adapts a function to Launcher.
type LauncherFunc func(ctx context.Context, name string) (sdk.Role, error)

// Launch implements Launcher.
func (f LauncherFunc) Launch(ctx context.Context, name string) (sdk.Role, error) { return f(ctx, name) }

// Config configures an Agent.
type Config struct {
	Cluster   string
	MachineID string
	// WorkDir belongs to this machine's agent: the state file and the
	// servers' work directories (servers/<server>) live below it.
	WorkDir string
	Queue   queue.Queue
	// Codec opens orders and seals reports; agents hold only the order
	// public key and the fleet key.
	Codec   *protocol.Codec
	Plugins Launcher
	// LogShippers returns the shipper of a log destination; nil means
	// NewLogShipper (file:// only).
	LogShippers LogShipperFunc
	// SpareHeartbeat is how often a spare reports; zero means 30 s.
	SpareHeartbeat time.Duration
	Logger         hclog.Logger
	// Provider names where the machine came from ("local", "ec2"), for hello.
	Provider string
	// Version is the agent's version, for hello.
	Version string
	// PluginNames are the plugins this machine can run, for hello.
	PluginNames []string

	// PollWait is the longest long-poll; zero means queue.MaxWait (20 s).
	PollWait time.Duration
	// GrantWait bounds the wait for a grant after a claim; zero means 10 s.
	GrantWait time.Duration
	// ProgressInterval is the least time between two progress reports;
	// zero means 250 ms. The last progress is always sent.
	ProgressInterval time.Duration
	// TeardownTimeout bounds Teardown; zero means 5 min.
	TeardownTimeout time.Duration
}

// Agent is one machine's agent.
type Agent struct {
	cfg       Config
	log       hclog.Logger
	statePath string
	st        *state
	epoch     atomic.Uint64 // mirrors st.Epoch for the progress goroutine
	rejected  atomic.Uint64

	// resumed is true while the first state after a restart runs.
	resumed bool
	// role is the launched plugin, while the machine is a server.
	role sdk.Role
	// opened caches the envelopes opened, by queue message id, so that a
	// message this agent released (or failed to act on) and receives again
	// is not refused by the codec as a replay of itself.
	opened map[string]openedMsg
	// helloSent says the orchestrator has this state's hello.
	helloSent bool
	// stopHeartbeats ends the heartbeats sent while commissioning.
	stopHeartbeats func()
}

type openedMsg struct {
	sum [sha256.Size]byte
	env *protocol.Envelope
	at  time.Time
}

// New checks cfg and returns an agent; Run starts it.
func New(cfg Config) (*Agent, error) {
	switch {
	case cfg.Cluster == "":
		return nil, errors.New("agent: cluster is required")
	case cfg.MachineID == "":
		return nil, errors.New("agent: machine id is required")
	case cfg.WorkDir == "":
		return nil, errors.New("agent: work directory is required")
	case cfg.Queue == nil:
		return nil, errors.New("agent: queue is required")
	case cfg.Codec == nil:
		return nil, errors.New("agent: codec is required")
	case cfg.Plugins == nil:
		return nil, errors.New("agent: plugin launcher is required")
	}
	if !protocol.ValidQueueName(protocol.GlobalQueue(cfg.Cluster)) || !protocol.ValidQueueName(protocol.OrchestratorQueue(cfg.Cluster)) {
		return nil, fmt.Errorf("agent: cluster name %q does not make valid queue names", cfg.Cluster)
	}
	if cfg.LogShippers == nil {
		cfg.LogShippers = NewLogShipper
	}
	if cfg.SpareHeartbeat <= 0 {
		cfg.SpareHeartbeat = DefaultSpareHeartbeat
	}
	if cfg.PollWait <= 0 || cfg.PollWait > queue.MaxWait {
		cfg.PollWait = queue.MaxWait
	}
	if cfg.GrantWait <= 0 {
		cfg.GrantWait = DefaultGrantWait
	}
	if cfg.ProgressInterval <= 0 {
		cfg.ProgressInterval = DefaultProgressInterval
	}
	if cfg.TeardownTimeout <= 0 {
		cfg.TeardownTimeout = DefaultTeardownTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	abs, err := filepath.Abs(cfg.WorkDir)
	if err != nil {
		return nil, fmt.Errorf("agent: work directory %s: %w", cfg.WorkDir, err)
	}
	cfg.WorkDir = abs
	return &Agent{
		cfg:       cfg,
		log:       cfg.Logger.Named("agent").With("machine_id", cfg.MachineID),
		statePath: filepath.Join(abs, StateFile),
		opened:    map[string]openedMsg{},
	}, nil
}

// State returns the agent's current state; for tests and status lines. It
// is safe to call only when Run is not running.
func (a *Agent) State() string {
	if a.st == nil {
		return ""
	}
	return a.st.State
}

// Rejected returns how many messages failed verification and were deleted.
func (a *Agent) Rejected() uint64 { return a.rejected.Load() }

// Run runs the agent until ctx is done (a graceful stop: the state is kept
// and a restart resumes) or the machine halts (nil, State() is "halted").
// A step in progress when ctx is done — a Provision, a Drain — is finished
// first, bounded by its own timeout.
func (a *Agent) Run(ctx context.Context) error {
	if err := mkdirTraversable(a.cfg.WorkDir); err != nil {
		return fmt.Errorf("agent: work directory: %w", err)
	}
	st, err := loadState(a.statePath, a.cfg.MachineID)
	if err != nil {
		return err
	}
	a.st = st
	a.epoch.Store(st.Epoch)
	a.cfg.Codec.SetMinEpoch(st.Epoch)
	a.resumed = st.State != protocol.StateSpare
	if a.resumed && st.State != StateHalted {
		a.log.Info("resuming", "state", st.State, "server", st.server())
		// The orchestrator learns at once which server this machine is.
		a.hello(ctx)
	}
	defer a.releasePlugin()

	for ctx.Err() == nil {
		before := a.st.State
		var err error
		switch a.st.State {
		case protocol.StateSpare:
			err = a.spare(ctx)
		case protocol.StateCommissioning:
			err = a.commissioning(ctx)
		case protocol.StateServing:
			err = a.serving(ctx)
		case protocol.StateDraining:
			err = a.draining(ctx)
		case protocol.StateTearingDown:
			err = a.tearingDown(ctx)
		case protocol.StateHalting:
			err = a.halting(ctx)
		case StateHalted:
			a.log.Info("halted")
			return nil
		}
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			return err
		}
		if a.st.State != before {
			a.resumed = false
			a.helloSent = false
		}
	}
	a.log.Info("stopping", "state", a.st.State, "server", a.st.server())
	return nil
}

// transition records the new state durably before it takes effect.
func (a *Agent) transition(to string) error {
	from := a.st.State
	a.st.State = to
	if err := a.save(); err != nil {
		return err
	}
	a.log.Info("state", "from", from, "to", to, "server", a.st.server())
	return nil
}

func (a *Agent) save() error {
	a.st.UpdatedAt = time.Now().UTC()
	return saveState(a.statePath, a.st)
}

// serverDir is the work directory of the server this machine is.
func (a *Agent) serverDir() string {
	return filepath.Join(a.cfg.WorkDir, "servers", a.st.server())
}

func (a *Agent) sdkServer() sdk.Server {
	c := a.st.Commission.Body
	return sdk.Server{Role: c.Role, Name: c.Server, MachineID: a.cfg.MachineID, WorkDir: a.serverDir()}
}

// mkdirTraversable creates each directory (and missing parents, 0711) and
// makes sure users other than the owner may traverse it, without listing
// it: a role's services drop privileges (postgres, www-data) and must reach
// their files below a server's work directory, <work_dir>/servers/<server>.
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

// sleep waits d or until ctx is done; false means ctx is done.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func durationOr(d protocol.Duration, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return time.Duration(d)
}
