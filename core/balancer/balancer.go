// Package balancer is where ready servers are registered and deregistered.
// The orchestrator registers a server's endpoint when it reports ready, and
// before halting a server it drains it (no new sessions, wait for the open
// ones to end) and deregisters it. Reconcile compares List with the servers it
// knows, so a balancer's own state never has to be trusted across restarts.
//
// Implementations: `none` (this package: remembers, routes nothing). The
// `haproxy` and `file` balancers live in their own packages and are opened by
// Open from the decoded config.
package balancer

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2"

	"github.com/rosterhq/roster/core/config"
)

// ErrUnknownType is returned by Open for a balancer type it cannot build.
var ErrUnknownType = errors.New("unknown balancer type")

// Backend is one server as a balancer routes to it.
type Backend struct {
	Role     string `json:"role"`
	Server   string `json:"server"`
	Endpoint string `json:"endpoint"` // host:port
	// Draining is true once Drain began: no new sessions go to it.
	Draining bool `json:"draining,omitempty"`
	// Sessions is the number of open sessions, where the balancer knows it
	// (-1 when it does not).
	Sessions int `json:"sessions"`
}

// Balancer routes traffic to the ready servers of roles. Every method is
// idempotent: registering a registered server or deregistering an unknown one
// is not an error, because the orchestrator repeats its actions after a
// restart.
type Balancer interface {
	// Name is the balancer's name from the config (balancer "haproxy" "front").
	Name() string
	// Type is the balancer's type: "none", "haproxy", "file".
	Type() string
	// Register adds server, reachable at endpoint (host:port), to role's pool.
	Register(ctx context.Context, role, server, endpoint string) error
	// Drain stops sending new sessions to server and waits until its open
	// sessions end or ctx is done; it returns ctx's error in that case, and
	// the server stays in drain.
	Drain(ctx context.Context, role, server string) error
	// Deregister removes server from role's pool at once.
	Deregister(ctx context.Context, role, server string) error
	// List returns the servers registered for role, sorted by server name.
	List(ctx context.Context, role string) ([]Backend, error)
	// Close releases the balancer's resources; it leaves its routes as they
	// are, so that traffic keeps flowing while the orchestrator restarts.
	Close() error
}

// Opener builds a balancer of one type from its config block.
type Opener func(ctx context.Context, cfg config.Balancer, opts Options) (Balancer, error)

// Options are what every balancer gets besides its block.
type Options struct {
	// DataDir is the orchestrator's data directory; a balancer that writes
	// files (haproxy's config, the file balancer's list) puts them below it.
	DataDir string
	Logger  hclog.Logger
}

var (
	openersMu  sync.RWMutex
	openers    = map[string]Opener{"none": openNone}
	validators = map[string]Validator{"none": validateNone}
)

// Validator checks the body of one balancer type's block without side
// effects (no process started, no file read), every mistake a diagnostic
// with its range. `roster validate` runs it; core/config cannot, because
// the balancer packages import core/config.
type Validator func(body hcl.Body) hcl.Diagnostics

// RegisterValidator makes Validate check blocks of typ with v.
func RegisterValidator(typ string, v Validator) {
	openersMu.Lock()
	defer openersMu.Unlock()
	validators[typ] = v
}

// Validate checks a balancer block's body with its type's validator. A type
// without a validator is not checked here (core/config reports unknown
// types); Open reports what is wrong with it.
func Validate(cfg config.Balancer) hcl.Diagnostics {
	openersMu.RLock()
	v, ok := validators[cfg.Type]
	openersMu.RUnlock()
	if !ok || cfg.Body == nil {
		return nil
	}
	return v(cfg.Body)
}

// validateNone refuses any setting in a `none` block: it has none.
func validateNone(body hcl.Body) hcl.Diagnostics {
	_, diags := body.Content(&hcl.BodySchema{})
	return diags
}

// Stopper is a balancer that runs a process of its own (a managed haproxy).
// Close leaves it running so that traffic flows while an orchestrator
// restarts; Stop ends it. `roster up` stops its balancers when it exits,
// `roster orchestrator` never does.
type Stopper interface {
	Stop(ctx context.Context) error
}

// RegisterType makes Open build balancers of typ with open. Balancer packages
// call it from init, so that core/balancer does not import them.
func RegisterType(typ string, open Opener) {
	openersMu.Lock()
	defer openersMu.Unlock()
	openers[typ] = open
}

// Open builds the balancer a config block declares.
func Open(ctx context.Context, cfg config.Balancer, opts Options) (Balancer, error) {
	openersMu.RLock()
	open, ok := openers[cfg.Type]
	openersMu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("balancer %q: %w %q", cfg.Name, ErrUnknownType, cfg.Type)
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	return open(ctx, cfg, opts)
}

// None is the `none` balancer: it routes nothing and only remembers what was
// registered, so that the orchestrator's bookkeeping is the same whatever the
// balancer. Drain returns at once: there are no sessions to wait for.
type None struct {
	name string
	mu   sync.Mutex
	// pools maps role -> server -> backend.
	pools map[string]map[string]Backend
}

// NewNone returns a `none` balancer with the given name.
func NewNone(name string) *None {
	return &None{name: name, pools: map[string]map[string]Backend{}}
}

func openNone(_ context.Context, cfg config.Balancer, _ Options) (Balancer, error) {
	return NewNone(cfg.Name), nil
}

// Name is the balancer's name.
func (n *None) Name() string { return n.name }

// Type is "none".
func (n *None) Type() string { return "none" }

// Register remembers the server.
func (n *None) Register(_ context.Context, role, server, endpoint string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	p := n.pools[role]
	if p == nil {
		p = map[string]Backend{}
		n.pools[role] = p
	}
	p[server] = Backend{Role: role, Server: server, Endpoint: endpoint, Sessions: 0}
	return nil
}

// Drain marks the server draining; it has no sessions to wait for.
func (n *None) Drain(ctx context.Context, role, server string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if b, ok := n.pools[role][server]; ok {
		b.Draining = true
		n.pools[role][server] = b
	}
	return ctx.Err()
}

// Deregister forgets the server.
func (n *None) Deregister(_ context.Context, role, server string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.pools[role], server)
	return nil
}

// List returns the remembered servers of role.
func (n *None) List(_ context.Context, role string) ([]Backend, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]Backend, 0, len(n.pools[role]))
	for _, b := range n.pools[role] {
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Server < out[j].Server })
	return out, nil
}

// Close does nothing.
func (n *None) Close() error { return nil }
