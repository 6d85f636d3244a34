package sdk

import (
	"context"
	"time"
)

// ProtocolVersion is the version of the role protocol this sdk speaks. Core
// negotiates it during the plugin handshake; a later version can be served
// beside this one without breaking old plugins.
const ProtocolVersion = 1

// Role is what a role plugin implements. Core calls Info and ConfigSchema when
// it loads the plugin and when it validates role files; Provision turns a
// machine into a server of the role; HealthCheck runs on every health interval
// while the server serves; Drain and Teardown run when the server is
// decommissioned. Every method takes its context first; a method must return
// promptly when the context is done.
type Role interface {
	// Info describes the plugin.
	Info(ctx context.Context) (Info, error)
	// ConfigSchema declares the HCL schema of the role's `config` block.
	ConfigSchema(ctx context.Context) (Schema, error)
	// Provision makes this machine a server of the role and returns the
	// endpoints it serves. It reports progress through req.Progress.
	Provision(ctx context.Context, req ProvisionRequest) (ProvisionResponse, error)
	// HealthCheck says whether the server is healthy and reports its metrics.
	HealthCheck(ctx context.Context, req HealthCheckRequest) (HealthCheckResponse, error)
	// Drain stops the server taking new work and waits, until req.Deadline at
	// the latest, for the work in flight to end. It returns how many
	// connections are still open, so that the caller can wait or give up.
	Drain(ctx context.Context, req DrainRequest) (DrainResponse, error)
	// Teardown stops everything the role started and returns the log files
	// worth keeping. It must be safe to call after a failed or partial
	// Provision, and twice.
	Teardown(ctx context.Context, req TeardownRequest) (TeardownResponse, error)
}

// Configurer is the optional fifth method. A role whose config refers to
// another role's endpoints (`database = role.db.endpoints.postgres`) is told
// the new values through Configure whenever the referenced pool changes.
// Plugins that do not implement it are simply not called.
type Configurer interface {
	Configure(ctx context.Context, req ConfigureRequest) error
}

// Info describes a role plugin.
type Info struct {
	// Name is the plugin's name, as role files name it in `plugin = "..."`.
	Name string
	// Version is the plugin's own version, free-form (semver recommended).
	Version string
	// ProtocolVersion is the sdk protocol version the plugin was built with;
	// Serve fills it in.
	ProtocolVersion int
	// Description is one line for `roster plugins`.
	Description string
	// Configurable is true when the role implements Configurer; Serve fills it in.
	Configurable bool
	// Stateful roles keep data that a new server of the role does not have
	// (a database primary's rows): replacing a server loses it. The
	// orchestrator refreshes the servers of a role whose plugin or config
	// changed (replaces them one at a time) only when the role file says
	// `refresh = true` for a stateful role; other roles are refreshed unless
	// it says `refresh = false`.
	Stateful bool
}

// Server identifies the server a call concerns.
type Server struct {
	// Role is the role's name from the role file (web).
	Role string
	// Name is the server's name, <role>-<n> (web-3).
	Name string
	// MachineID is the provider's id of the machine the server runs on.
	MachineID string
	// WorkDir is a directory that belongs to this server alone: private
	// configuration, data, pid files and logs go below it.
	WorkDir string
}

// Endpoints are the named addresses a server serves, such as
// {"http": "127.0.0.1:41234", "memcached": "127.0.0.1:41235"}.
type Endpoints map[string]string

// Peer is another server of some role, as the orchestrator knows it.
type Peer struct {
	Name      string
	Endpoints Endpoints
}

// Progress is one step of a long operation.
type Progress struct {
	// Step is a short machine-friendly name: "packages", "fetch", "start".
	Step string
	// Message is a human-readable line.
	Message string
	// Fraction is how far the whole operation has come, 0..1, or a negative
	// number when it is not known.
	Fraction float64
}

// ProgressFunc receives progress reports. It must not block for long.
type ProgressFunc func(Progress)

// ProvisionRequest asks a plugin to make this machine a server of its role.
type ProvisionRequest struct {
	Server Server
	// Config holds the values of the role file's `config` block, decoded
	// against the role's Schema (defaults applied, references resolved).
	Config Config
	// Peers lists the current servers of the roles this server may need,
	// keyed by role name: its own role (for a replica to find its primary)
	// and the roles its config refers to.
	Peers map[string][]Peer
	// Progress receives progress reports; never nil when called by core.
	Progress ProgressFunc
}

// Report sends p to the request's ProgressFunc, if there is one.
func (r ProvisionRequest) Report(step, message string, fraction float64) {
	if r.Progress != nil {
		r.Progress(Progress{Step: step, Message: message, Fraction: fraction})
	}
}

// ProvisionResponse is the result of a successful Provision.
type ProvisionResponse struct {
	Endpoints Endpoints
}

// HealthCheckRequest asks whether a server is healthy.
type HealthCheckRequest struct {
	Server    Server
	Config    Config
	Endpoints Endpoints
}

// HealthCheckResponse reports a server's health and its metrics.
type HealthCheckResponse struct {
	Healthy bool
	// Reason says why the server is unhealthy (or anything worth saying).
	Reason string
	// Metrics are the role's own numbers (busy_workers, busy_ratio,
	// connections…); a role's `scale.metric` may name any of them.
	Metrics map[string]float64
}

// DrainRequest asks a server to stop taking work.
type DrainRequest struct {
	Server    Server
	Config    Config
	Endpoints Endpoints
	// Deadline bounds how long Drain may wait for the work in flight.
	Deadline time.Time
}

// DrainResponse says how much work is left after Drain returned.
type DrainResponse struct {
	// OpenConnections is the number of connections still open.
	OpenConnections int
}

// TeardownRequest asks a server to stop everything it started.
type TeardownRequest struct {
	Server    Server
	Config    Config
	Endpoints Endpoints
}

// LogFile is a file worth keeping after a server is gone.
type LogFile struct {
	// Name is the name it is shipped under (apache/access.log).
	Name string
	// Path is where it is on this machine.
	Path string
}

// TeardownResponse lists the log files worth shipping.
type TeardownResponse struct {
	Logs []LogFile
}

// ConfigureRequest carries new config values after a referenced pool changed.
type ConfigureRequest struct {
	Server    Server
	Config    Config
	Endpoints Endpoints
	Peers     map[string][]Peer
}
