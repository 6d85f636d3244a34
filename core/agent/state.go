package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/rosterhq/roster/core/protocol"
	"github.com/rosterhq/roster/sdk/fsutil"
)

// StateFile is the name of the agent's state file in its work directory.
const StateFile = "agent-state.json"

// stateVersion is the version of the state file's layout.
const stateVersion = 1

// StateHalted is the agent's final state when a halt did not return the
// machine to the spares: the agent exits and the provider reclaims the
// machine. It is never reported (the orchestrator got Halting).
const StateHalted = "halted"

// How many applied order ids are remembered, and for how long. An order
// older than the codec's replay window is refused anyway, so an hour is
// ample; the count bounds the file.
const (
	maxApplied = 512
	appliedTTL = time.Hour
)

// state is everything the agent must remember across a restart. It is
// written atomically on every transition.
type state struct {
	Version   int    `json:"version"`
	MachineID string `json:"machine_id"`
	State     string `json:"state"`
	// Epoch is the highest orchestrator epoch seen; orders from a lower one
	// are refused.
	Epoch uint64 `json:"epoch"`

	// Commission is set from the grant until the machine is a spare again.
	Commission *commissionState `json:"commission,omitempty"`
	// Endpoints are what Provision returned; set from serving on.
	Endpoints map[string]string `json:"endpoints,omitempty"`
	// ReadyReported says the orchestrator was sent Ready, so that a
	// restarted agent neither provisions again nor forgets to report.
	ReadyReported bool `json:"ready_reported,omitempty"`
	// Halt is set from the halt order until the machine is a spare again
	// or halted.
	Halt *haltState `json:"halt,omitempty"`

	// Applied are the ids of the orders applied, so that a redelivered
	// order changes nothing, also after a restart.
	Applied []appliedOrder `json:"applied,omitempty"`

	UpdatedAt time.Time `json:"updated_at"`
}

type commissionState struct {
	ID      string              `json:"id"`       // the commission envelope's id
	GrantID string              `json:"grant_id"` // the grant envelope's id
	Body    protocol.Commission `json:"body"`
	// ConfigGeneration is the generation of the last Configure applied
	// (Body holds its config and peers); an older one is ignored.
	ConfigGeneration uint64 `json:"config_generation,omitempty"`
}

type haltState struct {
	OrderID  string    `json:"order_id"`
	Reason   string    `json:"reason,omitempty"`
	Deadline time.Time `json:"deadline"`
	Reuse    bool      `json:"reuse"`
	Open     int       `json:"open_connections"`
	Logs     []string  `json:"logs,omitempty"`
	// TornDown says Teardown ran and the logs were shipped.
	TornDown bool `json:"torn_down,omitempty"`
}

type appliedOrder struct {
	ID string    `json:"id"`
	At time.Time `json:"at"`
}

func (s *state) server() string {
	if s.Commission == nil {
		return ""
	}
	return s.Commission.Body.Server
}

func (s *state) applied(id string) bool {
	for _, a := range s.Applied {
		if a.ID == id {
			return true
		}
	}
	return false
}

// markApplied remembers id and forgets ids that no redelivery can bring
// back (older than appliedTTL, or beyond maxApplied).
func (s *state) markApplied(id string, now time.Time) {
	if s.applied(id) {
		return
	}
	keep := s.Applied[:0]
	for _, a := range s.Applied {
		if now.Sub(a.At) < appliedTTL {
			keep = append(keep, a)
		}
	}
	keep = append(keep, appliedOrder{ID: id, At: now})
	if len(keep) > maxApplied {
		keep = keep[len(keep)-maxApplied:]
	}
	s.Applied = keep
}

// toSpare forgets the server; the applied orders and the epoch stay.
func (s *state) toSpare() {
	s.State = protocol.StateSpare
	s.Commission = nil
	s.Endpoints = nil
	s.ReadyReported = false
	s.Halt = nil
}

// loadState reads the state file; a missing file is a new spare.
func loadState(path, machineID string) (*state, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &state{Version: stateVersion, MachineID: machineID, State: protocol.StateSpare}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("agent state file %s: %w", path, err)
	}
	var s state
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("agent state file %s: %w", path, err)
	}
	if s.Version != stateVersion {
		return nil, fmt.Errorf("agent state file %s: version %d, want %d", path, s.Version, stateVersion)
	}
	if s.MachineID != "" && s.MachineID != machineID {
		return nil, fmt.Errorf("agent state file %s belongs to machine %q, not %q", path, s.MachineID, machineID)
	}
	s.MachineID = machineID
	switch s.State {
	case protocol.StateSpare, protocol.StateCommissioning, protocol.StateServing,
		protocol.StateDraining, protocol.StateTearingDown, protocol.StateHalting, StateHalted:
	default:
		return nil, fmt.Errorf("agent state file %s: unknown state %q", path, s.State)
	}
	if s.State != protocol.StateSpare && s.State != StateHalted && s.Commission == nil {
		return nil, fmt.Errorf("agent state file %s: state %q without a commission", path, s.State)
	}
	return &s, nil
}

// saveState writes the state file atomically: a crash leaves either the
// old file or the new one, never a torn one.
func saveState(path string, s *state) error {
	s.Version = stateVersion
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("agent state file %s: %w", path, err)
	}
	if err := fsutil.WriteFileAtomic(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("agent state file %s: %w", path, err)
	}
	return nil
}
