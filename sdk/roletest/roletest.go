// Package roletest is the harness a role plugin's author calls from a plain
// `go test` to run the role through its whole life as core would: Info →
// ConfigSchema (validated) → the config decoded against that schema →
// Provision (progress collected) → HealthCheck → Configure → Drain →
// Teardown (twice, as the contract allows).
//
//	func TestHello(t *testing.T) {
//		roletest.Run(t, &helloRole{}, roletest.Case{
//			Config:        map[string]any{"greeting": "hi"},
//			WantEndpoints: []string{"http"},
//		})
//	}
//
//	func TestHelloBinary(t *testing.T) {
//		roletest.RunBinary(t, roletest.Build(t, "."), roletest.Case{...})
//	}
//
// Run serves the role in the test's process over a real gRPC connection, so
// that the sdk's transport runs exactly as it would across the process
// boundary; RunBinary launches the built plugin binary the way core does.
// The lower-level pieces (InProcess, Binary, Build, Exercise, DecodeHCL,
// DecodeMap) serve tests of their own.
package roletest

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/rosterhq/roster/sdk"
	"github.com/rosterhq/roster/sdk/rolehost"
)

// Case is one run of a role through its life.
type Case struct {
	// Config holds the config values as plain Go values (see DecodeMap).
	// ConfigHCL, when set, is used instead: the body of a role file's
	// `config` block.
	Config    map[string]any
	ConfigHCL string

	// WantConfigError, when set, expects decoding the config against the
	// schema to fail with a diagnostic containing this text; the run ends
	// there.
	WantConfigError string

	// Server is the server the calls concern. Empty fields are filled in:
	// Role from Info's name, Name as <role>-1, MachineID "roletest" and
	// WorkDir a fresh temporary directory.
	Server sdk.Server
	// Peers is handed to Provision and Configure.
	Peers map[string][]sdk.Peer

	// WantEndpoints names the endpoints Provision must return.
	WantEndpoints []string
	// WantProvisionError, when set, expects Provision to fail with an error
	// that errors.Is this one (sdk.ErrInvalidConfig…); Teardown is then run
	// (it must be safe after a failed Provision) and the run ends.
	WantProvisionError error
	// WantUnhealthy expects the HealthCheck after Provision to say unhealthy.
	WantUnhealthy bool

	// Check, when set, runs after the HealthCheck while the server is up:
	// the place for assertions of your own (an HTTP GET of an endpoint…).
	Check func(t testing.TB, r *Result)

	// Timeout bounds each call; 2 minutes when zero.
	Timeout time.Duration
	// DrainTimeout is the Drain deadline from now; 10 seconds when zero.
	DrainTimeout time.Duration
}

// Result is what a run saw.
type Result struct {
	// Role is the role under test, as the host sees it.
	Role      rolehost.Role
	Info      sdk.Info
	Schema    sdk.Schema
	Config    sdk.Config
	Server    sdk.Server
	Progress  []sdk.Progress
	Endpoints sdk.Endpoints
	Health    sdk.HealthCheckResponse
	Drain     sdk.DrainResponse
	Teardown  sdk.TeardownResponse
}

// Run runs c against role served in-process over gRPC.
func Run(t testing.TB, role sdk.Role, c Case) *Result {
	t.Helper()
	return Exercise(t, InProcess(t, role), c)
}

// RunBinary runs c against the role plugin binary at path (see Build).
func RunBinary(t testing.TB, path string, c Case) *Result {
	t.Helper()
	return Exercise(t, Binary(t, path), c)
}

// Exercise runs c against any host-side role: one from InProcess, Binary, or
// rolehost itself. It fails t at the first broken expectation and makes sure
// Teardown runs even then.
func Exercise(t testing.TB, role rolehost.Role, c Case) *Result {
	t.Helper()
	r := &Result{Role: role}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	call := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(t.Context(), timeout)
	}

	ctx, cancel := call()
	info, err := role.Info(ctx)
	cancel()
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	r.Info = info
	if info.Name == "" {
		t.Errorf("Info: the name is empty")
	}
	if info.ProtocolVersion != sdk.ProtocolVersion {
		t.Errorf("Info: protocol version %d, want %d", info.ProtocolVersion, sdk.ProtocolVersion)
	}

	ctx, cancel = call()
	schema, err := role.ConfigSchema(ctx)
	cancel()
	if err != nil {
		t.Fatalf("ConfigSchema: %v", err)
	}
	r.Schema = schema
	if err := schema.Validate(); err != nil {
		t.Fatalf("ConfigSchema: the schema is not valid:\n%v", err)
	}

	var cfg sdk.Config
	var diags hcl.Diagnostics
	if c.ConfigHCL != "" {
		cfg, diags = DecodeHCL(schema, c.ConfigHCL)
	} else {
		cfg, diags = DecodeMap(schema, c.Config)
	}
	if c.WantConfigError != "" {
		if !diags.HasErrors() {
			t.Fatalf("config: decoded without error, want an error containing %q", c.WantConfigError)
		}
		if !strings.Contains(diags.Error(), c.WantConfigError) {
			t.Fatalf("config: %s\nwant an error containing %q", diags.Error(), c.WantConfigError)
		}
		return r
	}
	if diags.HasErrors() {
		t.Fatalf("config does not fit the role's schema: %s", diags.Error())
	}
	r.Config = cfg

	srv := c.Server
	if srv.Role == "" {
		srv.Role = info.Name
	}
	if srv.Name == "" {
		srv.Name = srv.Role + "-1"
	}
	if srv.MachineID == "" {
		srv.MachineID = "roletest"
	}
	if srv.WorkDir == "" {
		srv.WorkDir = t.TempDir()
	}
	r.Server = srv

	// Whatever happens from here, the role's processes must not outlive
	// the test: Teardown runs at cleanup unless the run got that far.
	tornDown := false
	t.Cleanup(func() {
		if tornDown {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		if _, err := role.Teardown(ctx, sdk.TeardownRequest{Server: srv, Config: cfg, Endpoints: r.Endpoints}); err != nil {
			t.Errorf("Teardown at cleanup: %v", err)
		}
	})

	var mu sync.Mutex // a role served directly may report from any goroutine
	var collected []sdk.Progress
	ctx, cancel = call()
	resp, err := role.Provision(ctx, sdk.ProvisionRequest{
		Server: srv, Config: cfg, Peers: c.Peers,
		Progress: func(p sdk.Progress) {
			mu.Lock()
			collected = append(collected, p)
			mu.Unlock()
		},
	})
	cancel()
	mu.Lock()
	r.Progress = append([]sdk.Progress(nil), collected...)
	mu.Unlock()
	for _, p := range r.Progress {
		if p.Fraction > 1 {
			t.Errorf("Provision: progress %q has fraction %v, above 1", p.Step, p.Fraction)
		}
	}
	if c.WantProvisionError != nil {
		if err == nil {
			t.Fatalf("Provision succeeded, want an error that is %v", c.WantProvisionError)
		}
		if !errors.Is(err, c.WantProvisionError) {
			t.Fatalf("Provision: %v, want an error that is %v", err, c.WantProvisionError)
		}
		r.Teardown = teardown(t, role, call, srv, cfg, nil, &tornDown)
		return r
	}
	if err != nil {
		t.Fatalf("Provision: %v", err)
	}
	r.Endpoints = resp.Endpoints
	for _, name := range c.WantEndpoints {
		if resp.Endpoints[name] == "" {
			t.Errorf("Provision: no endpoint %q among %v", name, resp.Endpoints)
		}
	}

	ctx, cancel = call()
	health, err := role.HealthCheck(ctx, sdk.HealthCheckRequest{Server: srv, Config: cfg, Endpoints: r.Endpoints})
	cancel()
	if err != nil {
		t.Fatalf("HealthCheck: %v", err)
	}
	r.Health = health
	if health.Healthy == c.WantUnhealthy {
		t.Errorf("HealthCheck: healthy %v (reason %q), want %v", health.Healthy, health.Reason, !c.WantUnhealthy)
	}

	if c.Check != nil {
		c.Check(t, r)
	}

	ctx, cancel = call()
	err = role.Configure(ctx, sdk.ConfigureRequest{Server: srv, Config: cfg, Endpoints: r.Endpoints, Peers: c.Peers})
	cancel()
	switch {
	case info.Configurable && err != nil:
		t.Errorf("Configure: %v", err)
	case !info.Configurable && !errors.Is(err, sdk.ErrUnimplemented):
		t.Errorf("Configure of a role that does not implement it: %v, want sdk.ErrUnimplemented", err)
	}

	drainTimeout := c.DrainTimeout
	if drainTimeout <= 0 {
		drainTimeout = 10 * time.Second
	}
	ctx, cancel = call()
	drained, err := role.Drain(ctx, sdk.DrainRequest{Server: srv, Config: cfg, Endpoints: r.Endpoints, Deadline: time.Now().Add(drainTimeout)})
	cancel()
	if err != nil {
		t.Fatalf("Drain: %v", err)
	}
	r.Drain = drained
	if drained.OpenConnections < 0 {
		t.Errorf("Drain: %d open connections", drained.OpenConnections)
	}

	r.Teardown = teardown(t, role, call, srv, cfg, r.Endpoints, &tornDown)
	return r
}

// teardown runs Teardown twice, since the contract says it must be safe to,
// and checks that the logs it names exist.
func teardown(t testing.TB, role rolehost.Role, call func() (context.Context, context.CancelFunc), srv sdk.Server, cfg sdk.Config, eps sdk.Endpoints, done *bool) sdk.TeardownResponse {
	t.Helper()
	ctx, cancel := call()
	resp, err := role.Teardown(ctx, sdk.TeardownRequest{Server: srv, Config: cfg, Endpoints: eps})
	cancel()
	*done = true
	if err != nil {
		t.Fatalf("Teardown: %v", err)
	}
	for _, l := range resp.Logs {
		if l.Name == "" {
			t.Errorf("Teardown: log file %s has no name", l.Path)
		}
		if _, err := os.Stat(l.Path); err != nil {
			t.Errorf("Teardown: log file %q: %v", l.Name, err)
		}
	}
	ctx, cancel = call()
	_, err = role.Teardown(ctx, sdk.TeardownRequest{Server: srv, Config: cfg, Endpoints: eps})
	cancel()
	if err != nil {
		t.Errorf("Teardown, called a second time: %v", err)
	}
	return resp
}
