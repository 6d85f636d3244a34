package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/rosterhq/roster/sdk/fsutil"
)

// The durable state is one JSON document, <data_dir>/state.json, replaced
// atomically (write a temporary file, fsync, rename, fsync the directory) on
// every change. Why not SQLite: the state is small (a few hundred bytes per
// server: even 2,000 servers are well under a megabyte), it changes only on
// lifecycle events (never on heartbeats, which are rebuilt after a restart),
// and a whole-document write per change is one fsync — the same as a SQLite
// commit — while keeping the state readable with `cat` and `jq` when
// something has to be debugged by hand.

// StateFile is the state's file name inside data_dir.
const StateFile = "state.json"

// LockFile is the lock an orchestrator holds on its data_dir.
const LockFile = "orchestrator.lock"

// MaxEvents is how many events the state keeps.
const MaxEvents = 1000

// Server states.
const (
	// ServerCommissioning: the queue exists and the commission is on the
	// global queue; no spare has been granted it yet.
	ServerCommissioning = "commissioning"
	// ServerProvisioning: granted to a machine, whose agent runs Provision.
	ServerProvisioning = "provisioning"
	// ServerReady: serving, registered with its balancer.
	ServerReady = "ready"
	// ServerDraining: deregistered; the balancer drains it before the halt.
	ServerDraining = "draining"
	// ServerHalting: the halt order was sent; waiting for the halting report.
	ServerHalting = "halting"
)

// Machine states.
const (
	// MachineLaunching: asked of the provider; its agent has not said hello.
	MachineLaunching = "launching"
	// MachineSpare: idle on the global queue.
	MachineSpare = "spare"
	// MachineServer: granted to a server.
	MachineServer = "server"
	// MachineTerminating: being terminated through the provider.
	MachineTerminating = "terminating"
)

// State is everything the orchestrator must not forget across a restart.
type State struct {
	// Epoch increases on every start; every order carries it.
	Epoch uint64 `json:"epoch"`
	// NextIndex is the next server number per role: names are never reused.
	NextIndex map[string]int      `json:"next_index"`
	Servers   map[string]*Server  `json:"servers"`
	Machines  map[string]*Machine `json:"machines"`
	// LastChange is when the policy last changed each role's pool.
	LastChange map[string]time.Time `json:"last_change"`
	Events     []Event              `json:"events"`
	// EventSeq numbers events so that clients can follow the log.
	EventSeq uint64 `json:"event_seq"`
}

// Server is one server the orchestrator commissioned.
type Server struct {
	Name  string `json:"name"`
	Role  string `json:"role"`
	State string `json:"state"`
	// Queue is the server's inbox.
	Queue string `json:"queue"`
	// Commissions are the envelope ids of the commission orders sent for
	// this server (one, plus one per restart that re-sent it); a claim for
	// any of them is a claim for the server.
	Commissions []string `json:"commissions,omitempty"`
	// Machine is the machine the server was granted to.
	Machine   string            `json:"machine,omitempty"`
	Endpoints map[string]string `json:"endpoints,omitempty"`
	// Registered is true once the balancer has the server.
	Registered bool `json:"registered,omitempty"`
	// Replaces names the server this one was commissioned to replace.
	Replaces string `json:"replaces,omitempty"`
	// Reason says why the server is draining or halting.
	Reason string `json:"reason,omitempty"`
	// Halt is the envelope id of the halt order, once sent.
	Halt string `json:"halt,omitempty"`
	// ConfigSum identifies the config and referenced peers the server was
	// last given (by its commission or a Configure); ConfigGeneration is
	// the generation of the last Configure sent to it.
	ConfigSum        string `json:"config_sum,omitempty"`
	ConfigGeneration uint64 `json:"config_generation,omitempty"`
	// Spec is the role's spec (plugin and config as written) when the
	// server was commissioned: a ready server whose role's spec differs
	// now is refreshed (refresh.go).
	Spec string `json:"spec,omitempty"`
	// LostAfter is the role's health.lost_after when the server was
	// commissioned. Its agent heartbeats at the interval it was
	// commissioned with, so a reload that shortens lost_after (with the
	// interval) must not take it for lost: the longer of the two applies.
	LostAfter time.Duration `json:"lost_after_ns,omitempty"`

	CreatedAt  time.Time `json:"created_at"`
	GrantedAt  time.Time `json:"granted_at,omitempty"`
	ReadyAt    time.Time `json:"ready_at,omitempty"`
	DrainingAt time.Time `json:"draining_at,omitempty"`
	HaltedAt   time.Time `json:"halt_sent_at,omitempty"`
}

// Machine is one machine the orchestrator launched or adopted.
type Machine struct {
	ID         string `json:"id"`
	State      string `json:"state"`
	Server     string `json:"server,omitempty"`
	ProviderID string `json:"provider_id,omitempty"`
	// Launched is true when this orchestrator launched the machine through
	// the provider (false: it adopted an agent that said hello), so that
	// only launched machines are expected in the provider's list.
	Launched   bool      `json:"launched"`
	LaunchedAt time.Time `json:"launched_at"`
	// SpareSince is when the machine last became a spare.
	SpareSince time.Time `json:"spare_since,omitempty"`
}

// Event is one decision of the orchestrator, with its reason.
type Event struct {
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time"`
	Kind    string    `json:"kind"`
	Role    string    `json:"role,omitempty"`
	Server  string    `json:"server,omitempty"`
	Machine string    `json:"machine,omitempty"`
	Message string    `json:"message"`
}

func newState() *State {
	return &State{
		NextIndex:  map[string]int{},
		Servers:    map[string]*Server{},
		Machines:   map[string]*Machine{},
		LastChange: map[string]time.Time{},
	}
}

// store reads and writes the state document.
type store struct {
	path string
}

func (s *store) load() (*State, error) {
	b, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return newState(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state %s: %w", s.path, err)
	}
	st := newState()
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("state %s is damaged: %w", s.path, err)
	}
	if st.NextIndex == nil {
		st.NextIndex = map[string]int{}
	}
	if st.Servers == nil {
		st.Servers = map[string]*Server{}
	}
	if st.Machines == nil {
		st.Machines = map[string]*Machine{}
	}
	if st.LastChange == nil {
		st.LastChange = map[string]time.Time{}
	}
	return st, nil
}

// save replaces the state document atomically and durably.
func (s *store) save(st *State) error {
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	if err := fsutil.WriteFileAtomic(s.path, b, 0o600); err != nil {
		return fmt.Errorf("write state %s: %w", s.path, err)
	}
	return nil
}

// lockDataDir takes the exclusive lock on <dir>/orchestrator.lock, waiting
// (and saying so once) while another orchestrator holds it. The lock goes
// with the process: a killed orchestrator never leaves it behind.
func lockDataDir(ctx context.Context, dir string, log hclog.Logger) (*os.File, error) {
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	said := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			if said {
				log.Info("took the lock", "path", path)
			}
			_ = f.Truncate(0)
			_, _ = f.WriteAt([]byte(fmt.Sprintf("%d\n", os.Getpid())), 0)
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if !said {
			log.Info("another orchestrator holds the lock on this data_dir; waiting", "path", path)
			said = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
