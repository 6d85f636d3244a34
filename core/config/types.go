package config

import (
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"

	"github.com/rosterhq/roster/sdk"
)

// Orchestrator is a decoded roster.hcl with its role files.
type Orchestrator struct {
	// File is the path roster.hcl was read from; relative paths in the
	// config (data_dir, role globs, plugin_dir, file:// URLs) are relative
	// to its directory.
	File string

	Cluster   string        // prefixes queue names, tags machines
	DataDir   string        // absolute after Load
	Spares    int           // idle machines kept warm
	PluginDir string        // third-party plugins: roster-role-<name>; absolute after Load
	RoleGlobs []string      // as written
	Plugins   []PluginPin   // plugin "name" { checksum = "sha256:…" }
	Queue     Queue         // queue "local" {} or queue "sqs" {…}
	Provider  Provider      // provider "local" {} or provider "ec2" {…}
	Balancers []Balancer    // balancer "haproxy" "front" {…}
	Logs      Logs          // logs { destination = "…" }
	API       API           // api { address = "127.0.0.1:7070" }
	Roles     []*Role       // from the role files, in file order
	Agent     AgentSettings // agent { spare_heartbeat = "30s" }
	// RoleFiles are the files the role globs matched, in load order,
	// joined to roster.hcl's directory as written (not made absolute).
	RoleFiles []string
}

// Role returns the role with the given name, or nil.
func (o *Orchestrator) Role(name string) *Role {
	for _, r := range o.Roles {
		if r.Name == name {
			return r
		}
	}
	return nil
}

// Balancer returns the balancer with the given name, or nil.
func (o *Orchestrator) Balancer(name string) *Balancer {
	for i := range o.Balancers {
		if o.Balancers[i].Name == name {
			return &o.Balancers[i]
		}
	}
	return nil
}

// PluginPin pins a plugin executable to a digest.
type PluginPin struct {
	Name     string
	Checksum string // "sha256:<hex>"
	Range    hcl.Range
}

// Queue selects and configures the queue backend.
type Queue struct {
	Type     string // "local" (default) or "sqs"
	Region   string // sqs
	Endpoint string // sqs: override for local servers
	Range    hcl.Range
}

// Provider selects where machines come from.
type Provider struct {
	Type string // "local" (default) or "ec2"
	// Local provider.
	BootDelay   time.Duration // simulates a cloud machine's boot time
	MaxMachines int           // 0: no limit
	// Body holds the provider block for providers that decode their own
	// settings (ec2).
	Body  hcl.Body
	Range hcl.Range
}

// Balancer is one declared balancer.
type Balancer struct {
	Type string // "haproxy", "file", "none"
	Name string // the label roles refer to in register { balancer = … }
	// Body holds the block for the balancer to decode its own settings.
	Body  hcl.Body
	Range hcl.Range
}

// Logs says where the logs of torn-down servers are shipped.
type Logs struct {
	Destination string // file://… or s3://bucket/prefix; default file://<data_dir>/logs
}

// API is the orchestrator's HTTP API.
type API struct {
	Address string // default 127.0.0.1:7070
}

// AgentSettings apply to every agent the orchestrator starts.
type AgentSettings struct {
	// SpareHeartbeat is how often a spare reports (default 30s).
	SpareHeartbeat time.Duration
}

// Role is one decoded role block.
type Role struct {
	Name   string
	Plugin string
	File   string // the role file
	Reuse  bool   // a decommissioned machine goes back to being a spare
	// Refresh is the role file's `refresh`: whether servers whose plugin or
	// config changed are replaced one at a time; nil when not set (see
	// Refreshes).
	Refresh *bool
	// Stateful is what the role's plugin says of itself (sdk.Info): its
	// servers keep data a new server does not have. Set when the loader's
	// PluginSchemas also answers RoleInfo.
	Stateful bool

	Count     Count
	Scale     *Scale // nil: the pool stays at count.min
	Health    Health
	Provision Provision
	Drain     Drain
	Register  *Register // nil: not registered with a balancer

	// Config is the `config` block decoded against the plugin's schema,
	// with references to other roles' endpoints unknown (cty.UnknownVal).
	Config cty.Value
	// ConfigBody is kept so that the block can be decoded again with the
	// referenced roles' endpoints known, when a server is provisioned.
	ConfigBody hcl.Body
	// References lists the roles this role's config refers to (role.db…),
	// sorted, each once.
	References []string
	// Schema is the plugin's declared schema of the config block; its
	// Sensitive attributes are what RedactedConfig hides.
	Schema sdk.Schema

	Range hcl.Range // the role block's header

	spec          hcldec.Spec     // Schema as an hcldec spec, for ResolveConfig
	refs          []hcl.Traversal // the role.<name>… traversals in ConfigBody
	sensitive     []hcl.Range     // the sensitive attributes in ConfigBody
	registerRange hcl.Range       // register.balancer's expression
	scaleRange    hcl.Range       // the scale block's header
}

// Refreshes reports whether the orchestrator replaces the role's servers
// when its plugin or config changes: as the role file says, else unless
// the plugin is stateful (replacing a database primary loses its data).
func (r *Role) Refreshes() bool {
	if r.Refresh != nil {
		return *r.Refresh
	}
	return !r.Stateful
}

// Count bounds the pool.
type Count struct {
	Min int
	Max int
}

// Scale is the scaling policy: threshold (UpAbove/DownBelow) or target
// tracking (Target > 0).
type Scale struct {
	Metric       string  // "load" or a metric the plugin reports
	UpAbove      float64 // threshold mode
	DownBelow    float64 // threshold mode
	Target       float64 // target-tracking mode when > 0
	Tolerance    float64 // target mode: no change within ±Tolerance of Target (fraction, default 0.1)
	Window       time.Duration
	CooldownUp   time.Duration
	CooldownDown time.Duration
}

// Health governs health checks and loss detection.
type Health struct {
	Interval       time.Duration // default 5s
	Timeout        time.Duration // default 2s
	UnhealthyAfter int           // default 3
	LostAfter      time.Duration // default 3 × interval
}

// Provision bounds provisioning.
type Provision struct {
	Timeout time.Duration // default 10m
}

// Drain bounds draining.
type Drain struct {
	Timeout time.Duration // default 60s
}

// Register says where a ready server is registered.
type Register struct {
	Balancer string // a declared balancer's name
	Endpoint string // which of the server's endpoints
}
