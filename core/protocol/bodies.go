package protocol

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"
)

// Queue names. Every name starts with the cluster, so that reconcile can list
// a cluster's queues by prefix. A server's queue carries a unique suffix
// because SQS refuses the name of a queue deleted less than 60 s ago.

// GlobalQueue is where spares wait for commissions.
func GlobalQueue(cluster string) string { return cluster + "-spares" }

// OrchestratorQueue is where every agent sends its reports.
func OrchestratorQueue(cluster string) string { return cluster + "-orchestrator" }

// ServerQueuePrefix is the prefix of every server queue of the cluster.
func ServerQueuePrefix(cluster string) string { return cluster + "-srv-" }

// ServerQueue names the inbox of one server: <cluster>-srv-<server>-<uniq>.
func ServerQueue(cluster, server, uniq string) string {
	return ServerQueuePrefix(cluster) + server + "-" + strings.ToLower(uniq)
}

var nameRE = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,80}$`)

// ValidQueueName says whether name is acceptable to every backend (SQS: 1-80
// of letters, digits, hyphens and underscores).
func ValidQueueName(name string) bool { return nameRE.MatchString(name) }

// Duration is a time.Duration written as a Go duration string in JSON.
type Duration time.Duration

// MarshalJSON writes the duration as a string such as "30s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Value is a typed config value on the wire: its cty type and its value,
// both in go-cty's JSON encoding.
type Value struct {
	Type  json.RawMessage `json:"type"`
	Value json.RawMessage `json:"value"`
}

// EncodeValue encodes a known cty value.
func EncodeValue(v cty.Value) (Value, error) {
	if !v.IsWhollyKnown() {
		return Value{}, fmt.Errorf("config value is not known yet")
	}
	t, err := ctyjson.MarshalType(v.Type())
	if err != nil {
		return Value{}, err
	}
	b, err := ctyjson.Marshal(v, v.Type())
	if err != nil {
		return Value{}, err
	}
	return Value{Type: t, Value: b}, nil
}

// Decode returns the cty value.
func (w Value) Decode() (cty.Value, error) {
	if len(w.Type) == 0 {
		return cty.EmptyObjectVal, nil
	}
	t, err := ctyjson.UnmarshalType(w.Type)
	if err != nil {
		return cty.NilVal, err
	}
	return ctyjson.Unmarshal(w.Value, t)
}

// Peer is a server of some role, with its endpoints.
type Peer struct {
	Name      string            `json:"name"`
	Endpoints map[string]string `json:"endpoints"`
}

// Machine states an agent reports.
const (
	StateSpare         = "spare"
	StateCommissioning = "commissioning"
	StateServing       = "serving"
	StateDraining      = "draining"
	StateTearingDown   = "tearing_down"
	StateHalting       = "halting"
)

// Hello: an agent started (or restarted). A restarted agent that was serving
// says which server it is.
type Hello struct {
	MachineID    string   `json:"machine_id"`
	Provider     string   `json:"provider"`
	Hostname     string   `json:"hostname,omitempty"`
	AgentVersion string   `json:"agent_version"`
	Plugins      []string `json:"plugins,omitempty"`
	State        string   `json:"state"`
	Server       string   `json:"server,omitempty"`
}

// Commission (global queue, recipient "spares"): become a server. It carries
// everything the agent needs; agents never read role files.
type Commission struct {
	Role             string            `json:"role"`
	Server           string            `json:"server"`
	Inbox            string            `json:"inbox"` // the server's queue
	Plugin           string            `json:"plugin"`
	Config           Value             `json:"config"`
	Peers            map[string][]Peer `json:"peers,omitempty"`
	HealthInterval   Duration          `json:"health_interval"`
	HealthTimeout    Duration          `json:"health_timeout"`
	ProvisionTimeout Duration          `json:"provision_timeout"`
	DrainTimeout     Duration          `json:"drain_timeout"`
	Reuse            bool              `json:"reuse"`
	LogDestination   string            `json:"log_destination,omitempty"`
	// Machine, when set, reserves the commission for one machine (a freshly
	// launched one); other spares release it at once.
	Machine string `json:"machine,omitempty"`
}

// Claim: a spare took a commission and waits for the grant on the inbox.
type Claim struct {
	Commission string `json:"commission"` // the commission envelope's id
	Server     string `json:"server"`
	MachineID  string `json:"machine_id"`
}

// Grant (server inbox): the orchestrator chose this machine for the server.
// A spare that claimed the same commission and sees a grant for another
// machine releases the message and goes back to being a spare.
//
// A Grant also refuses a claim for a server another machine holds:
// addressed to the claimant (the envelope's recipient), for the copy it
// claimed (Commission), naming the holder (MachineID). To any agent it is
// a grant for another machine, so the claimant stops waiting at once; the
// claimant deletes it, a machine waiting for a grant puts it back for the
// claimant, and the holder, serving, deletes it as a grant delivered again.
type Grant struct {
	Commission string `json:"commission"`
	Server     string `json:"server"`
	MachineID  string `json:"machine_id"`
}

// KindGrant is the grant order.
const KindGrant Kind = "grant"

// ProgressReport: a step of Provision.
type ProgressReport struct {
	Server   string  `json:"server"`
	Step     string  `json:"step"`
	Message  string  `json:"message"`
	Fraction float64 `json:"fraction"`
}

// Ready: provisioned, serving these endpoints.
type Ready struct {
	Server    string            `json:"server"`
	MachineID string            `json:"machine_id"`
	Endpoints map[string]string `json:"endpoints"`
}

// Heartbeat: periodic report of a machine's state, health and load.
type Heartbeat struct {
	MachineID string             `json:"machine_id"`
	Server    string             `json:"server,omitempty"`
	State     string             `json:"state"`
	Healthy   bool               `json:"healthy"`
	Reason    string             `json:"reason,omitempty"`
	Load      float64            `json:"load"` // normalised system load (load1 / cores)
	Metrics   map[string]float64 `json:"metrics,omitempty"`
}

// Halt (server inbox): drain, tear down, ship logs, then halt or go back to
// being a spare.
type Halt struct {
	Server       string   `json:"server"`
	Reason       string   `json:"reason"`
	DrainTimeout Duration `json:"drain_timeout"`
	Reuse        bool     `json:"reuse"`
}

// Ping (server inbox): report a heartbeat at once.
type Ping struct {
	Server string `json:"server"`
}

// Configure (server inbox): the pools this server's config refers to changed.
// Config is the server's config resolved again; Peers are as in Commission.
type Configure struct {
	Server string            `json:"server"`
	Config Value             `json:"config"`
	Peers  map[string][]Peer `json:"peers,omitempty"`
	// Generation grows with every Configure sent to a server, also across
	// orchestrator restarts; an agent applies a Configure only when its
	// generation is above the last one it applied, so that a late delivery
	// of an older Configure cannot undo a newer one. Zero (an older
	// orchestrator) is always applied.
	Generation uint64 `json:"generation,omitempty"`
}

// Halting: the server drained and tore down; its logs were shipped.
type Halting struct {
	Server    string   `json:"server"`
	MachineID string   `json:"machine_id"`
	Logs      []string `json:"logs,omitempty"` // where they were shipped
	Reuse     bool     `json:"reuse"`          // the machine is a spare again
	Open      int      `json:"open_connections"`
}

// Failed: an order could not be carried out.
type Failed struct {
	Server    string `json:"server,omitempty"`
	MachineID string `json:"machine_id"`
	Order     string `json:"order"` // the order envelope's id
	// Stage is "provision", "halt", "configure", or "claim": a spare that
	// claimed a commission stopped before it could provision it, so that
	// the orchestrator commissions the server again at once.
	Stage string `json:"stage"`
	Error string `json:"error"`
}
