// Package rolekit is the plumbing that role plugins which run daemons share:
// the calls about one server serialised by work directory, a state file a
// relaunched plugin reads again, the HTTP health probe, the common schema
// attributes, a rate from a growing counter, and the user checks for daemons
// that drop root. It imports only sdk, its helper packages and public
// libraries, so that third-party plugins may use it too; the built-in roles
// (plugins/web, db, tomcat, static) do.
package rolekit

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/rosterhq/roster/sdk"
	"github.com/rosterhq/roster/sdk/process"
)

// Meta answers Info and ConfigSchema for a role that embeds it.
type Meta struct {
	// About is what Info answers.
	About sdk.Info
	// Schema returns the role's config schema.
	Schema func() sdk.Schema
}

// Info returns m.About.
func (m Meta) Info(context.Context) (sdk.Info, error) { return m.About, nil }

// ConfigSchema returns m.Schema().
func (m Meta) ConfigSchema(context.Context) (sdk.Schema, error) { return m.Schema(), nil }

// Servers holds one E per server, told apart by absolute work directory
// (one plugin process may serve several servers), with a mutex that
// serialises the calls about one server: Lock for those that change it
// (Provision, Drain, Teardown), Get for those that only look (a
// HealthCheck that must not wait behind a long Provision). The zero value
// is ready to use.
type Servers[E any] struct {
	// Role prefixes error messages ("web: server …"); none when empty.
	Role string

	mu sync.Mutex
	m  map[string]*slot[E]
}

type slot[E any] struct {
	mu sync.Mutex
	e  E
}

// Get returns the server's E, made on first use, without locking it. A
// server without a work directory is an sdk.ErrInvalidConfig.
func (s *Servers[E]) Get(srv sdk.Server) (*E, error) {
	sl, err := s.slot(srv)
	if err != nil {
		return nil, err
	}
	return &sl.e, nil
}

// Lock returns the server's E once no other call holds it, and the function
// that lets the next one in.
func (s *Servers[E]) Lock(srv sdk.Server) (*E, func(), error) {
	sl, err := s.slot(srv)
	if err != nil {
		return nil, nil, err
	}
	sl.mu.Lock()
	return &sl.e, sl.mu.Unlock, nil
}

func (s *Servers[E]) slot(srv sdk.Server) (*slot[E], error) {
	prefix := ""
	if s.Role != "" {
		prefix = s.Role + ": "
	}
	if srv.WorkDir == "" {
		return nil, sdk.Errorf(sdk.ErrInvalidConfig, "%sserver %q has no work directory", prefix, srv.Name)
	}
	dir, err := filepath.Abs(srv.WorkDir)
	if err != nil {
		return nil, sdk.Errorf(sdk.ErrInvalidConfig, "%swork directory %q: %v", prefix, srv.WorkDir, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]*slot[E]{}
	}
	sl := s.m[dir]
	if sl == nil {
		sl = &slot[E]{}
		s.m[dir] = sl
	}
	return sl, nil
}

// WithDeadline bounds ctx by deadline when it is set, as a DrainRequest's
// may not be.
func WithDeadline(ctx context.Context, deadline time.Time) (context.Context, context.CancelFunc) {
	if deadline.IsZero() {
		return context.WithCancel(ctx)
	}
	return context.WithDeadline(ctx, deadline)
}

// Supervisor returns a process.Supervisor keeping its state in dir that
// looks again every poll, logging to the call's logger.
func Supervisor(ctx context.Context, dir string, poll time.Duration) (*process.Supervisor, error) {
	sup, err := process.NewSupervisor(dir, sdk.Logger(ctx))
	if err != nil {
		return nil, err
	}
	sup.PollInterval = poll
	return sup, nil
}

// Teardown is the body of a Teardown of a role whose daemons a
// process.Supervisor keeps in runDir: when a supervisor was ever made there,
// stop stops the daemons (each within its deadline, then by SIGKILL); then
// the log files among logs that exist are returned, also when stopping
// failed. It is safe after a failed or partial Provision, and twice. Errors
// and the log line name role.
func Teardown(ctx context.Context, role, runDir string, poll time.Duration,
	stop func(context.Context, *process.Supervisor) error, logs ...sdk.LogFile) (sdk.TeardownResponse, error) {
	var stopErr error
	if _, err := os.Stat(runDir); err == nil {
		sup, err := Supervisor(ctx, runDir, poll)
		if err != nil {
			return sdk.TeardownResponse{}, err
		}
		stopErr = stop(ctx, sup)
	}
	resp := sdk.TeardownResponse{Logs: process.ExistingLogs(logs...)}
	if stopErr != nil {
		return resp, fmt.Errorf("%s: %w", role, stopErr)
	}
	sdk.Logger(ctx).Named(role).Info("torn down", "logs", len(resp.Logs))
	return resp, nil
}
