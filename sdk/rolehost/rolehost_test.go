package rolehost_test

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"
	"github.com/rosterhq/roster/sdk"
	"github.com/rosterhq/roster/sdk/internal/testrole"
	"github.com/rosterhq/roster/sdk/rolehost"
	"github.com/rosterhq/roster/sdk/roletest"
	"github.com/zclconf/go-cty/cty"
)

const echoPkg = "github.com/rosterhq/roster/sdk/internal/testrole/roster-role-echo"

// spy is a role that records what it is given and answers what it is told.
type spy struct {
	mu       sync.Mutex
	provReq  sdk.ProvisionRequest
	health   sdk.HealthCheckRequest
	drain    sdk.DrainRequest
	teardown sdk.TeardownRequest
	err      error // returned by every call when set
	ctxDone  chan error
	entered  chan struct{} // told when a blocking call waits
	block    bool          // calls wait for their context to end
}

func (s *spy) wait(ctx context.Context) error {
	if !s.block {
		return s.err
	}
	s.entered <- struct{}{}
	<-ctx.Done()
	s.ctxDone <- ctx.Err()
	return ctx.Err()
}

func (s *spy) Info(ctx context.Context) (sdk.Info, error) {
	return sdk.Info{Name: "spy", Version: "1.2.3", Description: "records calls", ProtocolVersion: 99, Stateful: true}, s.wait(ctx)
}

func (s *spy) ConfigSchema(ctx context.Context) (sdk.Schema, error) {
	return testrole.Schema(), s.wait(ctx)
}

func (s *spy) Provision(ctx context.Context, req sdk.ProvisionRequest) (sdk.ProvisionResponse, error) {
	s.mu.Lock()
	s.provReq = req
	s.mu.Unlock()
	if err := s.wait(ctx); err != nil {
		return sdk.ProvisionResponse{}, err
	}
	for i := range 5 {
		req.Report(fmt.Sprintf("step%d", i), "doing "+fmt.Sprint(i), float64(i)/4)
	}
	return sdk.ProvisionResponse{Endpoints: sdk.Endpoints{"http": "127.0.0.1:1234", "admin": "127.0.0.1:1235"}}, nil
}

func (s *spy) HealthCheck(ctx context.Context, req sdk.HealthCheckRequest) (sdk.HealthCheckResponse, error) {
	s.mu.Lock()
	s.health = req
	s.mu.Unlock()
	return sdk.HealthCheckResponse{Healthy: false, Reason: "busy", Metrics: map[string]float64{"busy_ratio": 0.5, "connections": 12}}, s.wait(ctx)
}

func (s *spy) Drain(ctx context.Context, req sdk.DrainRequest) (sdk.DrainResponse, error) {
	s.mu.Lock()
	s.drain = req
	s.mu.Unlock()
	return sdk.DrainResponse{OpenConnections: 3}, s.wait(ctx)
}

func (s *spy) Teardown(ctx context.Context, req sdk.TeardownRequest) (sdk.TeardownResponse, error) {
	s.mu.Lock()
	s.teardown = req
	s.mu.Unlock()
	return sdk.TeardownResponse{Logs: []sdk.LogFile{{Name: "a.log", Path: "/x/a.log"}, {Name: "b/c.log", Path: "/x/c.log"}}}, s.wait(ctx)
}

// configurableSpy adds Configure.
type configurableSpy struct {
	spy
	configured []sdk.ConfigureRequest
}

func (c *configurableSpy) Configure(ctx context.Context, req sdk.ConfigureRequest) error {
	c.mu.Lock()
	c.configured = append(c.configured, req)
	c.mu.Unlock()
	return c.wait(ctx)
}

var testServer = sdk.Server{Role: "web", Name: "web-3", MachineID: "i-123", WorkDir: "/tmp/web-3"}

func mustConfig(t *testing.T, m map[string]any) sdk.Config {
	t.Helper()
	c, err := sdk.ConfigFromMap(m)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestAdaptersEveryMethod(t *testing.T) {
	s := &spy{}
	role := roletest.InProcess(t, s)
	ctx := t.Context()

	info, err := role.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := sdk.Info{Name: "spy", Version: "1.2.3", Description: "records calls", ProtocolVersion: sdk.ProtocolVersion, Configurable: false, Stateful: true}
	if info != want {
		t.Errorf("Info = %+v, want %+v", info, want)
	}

	cfg := mustConfig(t, map[string]any{"greeting": "hi", "count": 3})
	peers := map[string][]sdk.Peer{"db": {{Name: "db-1", Endpoints: sdk.Endpoints{"postgres": "10.0.0.1:5432"}}}, "web": {}}
	var progress []sdk.Progress
	resp, err := role.Provision(ctx, sdk.ProvisionRequest{
		Server: testServer, Config: cfg, Peers: peers,
		Progress: func(p sdk.Progress) { progress = append(progress, p) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Endpoints["http"] != "127.0.0.1:1234" || resp.Endpoints["admin"] != "127.0.0.1:1235" || len(resp.Endpoints) != 2 {
		t.Errorf("endpoints = %v", resp.Endpoints)
	}
	if len(progress) != 5 {
		t.Fatalf("progress = %+v, want 5 reports", progress)
	}
	for i, p := range progress {
		if p.Step != fmt.Sprintf("step%d", i) || p.Fraction != float64(i)/4 || p.Message != "doing "+fmt.Sprint(i) {
			t.Errorf("progress %d = %+v", i, p)
		}
	}
	s.mu.Lock()
	got := s.provReq
	s.mu.Unlock()
	if got.Server != testServer {
		t.Errorf("the plugin saw server %+v", got.Server)
	}
	if got.Config.String("greeting") != "hi" || got.Config.Int("count") != 3 {
		t.Errorf("the plugin saw config %#v", got.Config.Value())
	}
	if len(got.Peers) != 2 || got.Peers["db"][0].Endpoints["postgres"] != "10.0.0.1:5432" || got.Peers["web"] == nil || len(got.Peers["web"]) != 0 {
		t.Errorf("the plugin saw peers %+v", got.Peers)
	}
	if got.Progress == nil {
		t.Errorf("the plugin got no progress func")
	}

	eps := sdk.Endpoints{"http": "127.0.0.1:1234"}
	h, err := role.HealthCheck(ctx, sdk.HealthCheckRequest{Server: testServer, Config: cfg, Endpoints: eps})
	if err != nil {
		t.Fatal(err)
	}
	if h.Healthy || h.Reason != "busy" || h.Metrics["busy_ratio"] != 0.5 || h.Metrics["connections"] != 12 {
		t.Errorf("HealthCheck = %+v", h)
	}
	s.mu.Lock()
	if s.health.Endpoints["http"] != "127.0.0.1:1234" || s.health.Server != testServer {
		t.Errorf("the plugin saw health request %+v", s.health)
	}
	s.mu.Unlock()

	deadline := time.Now().Add(42 * time.Second).Round(time.Microsecond)
	d, err := role.Drain(ctx, sdk.DrainRequest{Server: testServer, Config: cfg, Endpoints: eps, Deadline: deadline})
	if err != nil {
		t.Fatal(err)
	}
	if d.OpenConnections != 3 {
		t.Errorf("Drain = %+v", d)
	}
	s.mu.Lock()
	if !s.drain.Deadline.Equal(deadline) {
		t.Errorf("the plugin saw deadline %v, want %v", s.drain.Deadline, deadline)
	}
	s.mu.Unlock()
	if _, err := role.Drain(ctx, sdk.DrainRequest{Server: testServer}); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	if !s.drain.Deadline.IsZero() {
		t.Errorf("no deadline became %v", s.drain.Deadline)
	}
	s.mu.Unlock()

	td, err := role.Teardown(ctx, sdk.TeardownRequest{Server: testServer, Config: cfg, Endpoints: eps})
	if err != nil {
		t.Fatal(err)
	}
	if len(td.Logs) != 2 || td.Logs[1] != (sdk.LogFile{Name: "b/c.log", Path: "/x/c.log"}) {
		t.Errorf("Teardown = %+v", td)
	}

	err = role.Configure(ctx, sdk.ConfigureRequest{Server: testServer})
	if !errors.Is(err, sdk.ErrUnimplemented) {
		t.Errorf("Configure of a role without it = %v, want ErrUnimplemented", err)
	}
}

func TestConfigure(t *testing.T) {
	t.Run("implemented", func(t *testing.T) {
		s := &configurableSpy{}
		role := roletest.InProcess(t, s)
		info, err := role.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if !info.Configurable {
			t.Errorf("Info.Configurable = false for a role with Configure")
		}
		peers := map[string][]sdk.Peer{"db": {{Name: "db-2", Endpoints: sdk.Endpoints{"postgres": "10.0.0.2:5432"}}}}
		err = role.Configure(t.Context(), sdk.ConfigureRequest{
			Server: testServer, Config: mustConfig(t, map[string]any{"database": "10.0.0.2:5432"}),
			Endpoints: sdk.Endpoints{"http": "x"}, Peers: peers,
		})
		if err != nil {
			t.Fatal(err)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if len(s.configured) != 1 || s.configured[0].Config.String("database") != "10.0.0.2:5432" ||
			s.configured[0].Peers["db"][0].Name != "db-2" || s.configured[0].Endpoints["http"] != "x" {
			t.Errorf("the plugin saw %+v", s.configured)
		}
	})
	t.Run("absent, known from Info", func(t *testing.T) {
		role := roletest.InProcess(t, &spy{})
		if _, err := role.Info(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := role.Configure(t.Context(), sdk.ConfigureRequest{}); !errors.Is(err, sdk.ErrUnimplemented) {
			t.Errorf("Configure = %v, want ErrUnimplemented", err)
		}
	})
	t.Run("absent, answered by the plugin", func(t *testing.T) {
		role := roletest.InProcess(t, &spy{})
		if err := role.Configure(t.Context(), sdk.ConfigureRequest{}); !errors.Is(err, sdk.ErrUnimplemented) {
			t.Errorf("Configure = %v, want ErrUnimplemented", err)
		}
	})
	t.Run("direct", func(t *testing.T) {
		role := rolehost.Direct(&spy{})
		if err := role.Configure(t.Context(), sdk.ConfigureRequest{}); !errors.Is(err, sdk.ErrUnimplemented) {
			t.Errorf("Configure = %v, want ErrUnimplemented", err)
		}
		info, _ := role.Info(t.Context())
		if info.ProtocolVersion != sdk.ProtocolVersion || info.Configurable {
			t.Errorf("Info = %+v", info)
		}
		c := &configurableSpy{}
		if err := rolehost.Direct(c).Configure(t.Context(), sdk.ConfigureRequest{}); err != nil || len(c.configured) != 1 {
			t.Errorf("Configure = %v, calls %d", err, len(c.configured))
		}
	})
}

var sentinels = []error{
	sdk.ErrInvalidConfig, sdk.ErrNotFound, sdk.ErrFailedPrecondition, sdk.ErrUnavailable,
	sdk.ErrTimeout, sdk.ErrUnimplemented, sdk.ErrChecksumMismatch,
}

func TestTypedErrorsRoundTrip(t *testing.T) {
	for _, kind := range sentinels {
		t.Run(kind.Error(), func(t *testing.T) {
			s := &configurableSpy{}
			role := roletest.InProcess(t, s)
			forms := map[string]struct {
				err     error
				message string
			}{
				"Errorf":  {sdk.Errorf(kind, "artifact %s", "site.tar.gz"), kind.Error() + ": artifact site.tar.gz"},
				"bare":    {kind, kind.Error()},
				"wrapped": {fmt.Errorf("fetching: %w", sdk.Errorf(kind, "x")), kind.Error() + ": fetching: " + kind.Error() + ": x"},
			}
			for name, f := range forms {
				s.mu.Lock()
				s.err = f.err
				s.mu.Unlock()
				calls := map[string]func() error{
					"info":          func() error { _, err := role.Info(t.Context()); return err },
					"config_schema": func() error { _, err := role.ConfigSchema(t.Context()); return err },
					"provision":     func() error { _, err := role.Provision(t.Context(), sdk.ProvisionRequest{}); return err },
					"health_check":  func() error { _, err := role.HealthCheck(t.Context(), sdk.HealthCheckRequest{}); return err },
					"drain":         func() error { _, err := role.Drain(t.Context(), sdk.DrainRequest{}); return err },
					"teardown":      func() error { _, err := role.Teardown(t.Context(), sdk.TeardownRequest{}); return err },
					"configure":     func() error { return role.Configure(t.Context(), sdk.ConfigureRequest{}) },
				}
				for call, fn := range calls {
					err := fn()
					if !errors.Is(err, kind) {
						t.Errorf("%s %s: %v is not %v", name, call, err, kind)
						continue
					}
					for _, other := range sentinels {
						if other != kind && errors.Is(err, other) {
							t.Errorf("%s %s: %v is also %v", name, call, err, other)
						}
					}
					var se *sdk.Error
					if !errors.As(err, &se) || se.Kind != kind {
						t.Errorf("%s %s: %v (%T) is not an *sdk.Error of kind %v", name, call, err, err, kind)
					}
					if err.Error() != f.message {
						t.Errorf("%s %s: message %q, want %q", name, call, err.Error(), f.message)
					}
				}
			}
		})
	}
}

func TestPlainErrorKeepsMessage(t *testing.T) {
	role := roletest.InProcess(t, &spy{err: errors.New("disk on fire")})
	_, err := role.HealthCheck(t.Context(), sdk.HealthCheckRequest{})
	if err == nil || err.Error() != "disk on fire" {
		t.Fatalf("err = %v, want disk on fire", err)
	}
	for _, k := range sentinels {
		if errors.Is(err, k) {
			t.Errorf("a plain error became %v", k)
		}
	}
}

func TestDeadlineAndCancelPropagate(t *testing.T) {
	s := &spy{block: true, ctxDone: make(chan error, 1), entered: make(chan struct{}, 1)}
	role := roletest.InProcess(t, s)

	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	_, err := role.HealthCheck(ctx, sdk.HealthCheckRequest{})
	if !errors.Is(err, sdk.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("HealthCheck past its deadline = %v, want ErrTimeout and context.DeadlineExceeded", err)
	}
	select {
	case perr := <-s.ctxDone:
		// gRPC ends the plugin's context when the caller gives up, which
		// may be just before the plugin's own copy of the deadline passes.
		if perr == nil {
			t.Errorf("the plugin's context did not end")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the plugin's context did not end with the caller's deadline")
	}

	<-s.entered // the HealthCheck's

	ctx, cancel = context.WithCancel(t.Context())
	go func() {
		// Cancel once the plugin is blocked in the call.
		<-s.entered
		cancel()
	}()
	_, err = role.Provision(ctx, sdk.ProvisionRequest{})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Provision cancelled = %v, want context.Canceled", err)
	}
	select {
	case perr := <-s.ctxDone:
		if !errors.Is(perr, context.Canceled) {
			t.Errorf("the plugin's context ended with %v, want Canceled", perr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the plugin's context was not cancelled")
	}
}

func TestConfigValuesRoundTrip(t *testing.T) {
	big, _ := new(big.Float).SetPrec(512).SetString("123456789012345678901234567890.123456789")
	values := map[string]cty.Value{
		"string":        cty.StringVal("héllo, wörld ✓"),
		"empty string":  cty.StringVal(""),
		"number":        cty.NumberIntVal(-42),
		"float":         cty.NumberFloatVal(3.25),
		"big number":    cty.NumberVal(big),
		"bool":          cty.False,
		"list":          cty.ListVal([]cty.Value{cty.StringVal("a"), cty.StringVal("b")}),
		"empty list":    cty.ListValEmpty(cty.Number),
		"set":           cty.SetVal([]cty.Value{cty.NumberIntVal(1), cty.NumberIntVal(2)}),
		"map":           cty.MapVal(map[string]cty.Value{"k": cty.BoolVal(true)}),
		"empty map":     cty.MapValEmpty(cty.String),
		"object":        cty.ObjectVal(map[string]cty.Value{"cpu": cty.NumberIntVal(2), "mem": cty.StringVal("1G")}),
		"tuple":         cty.TupleVal([]cty.Value{cty.StringVal("x"), cty.NumberIntVal(1), cty.NullVal(cty.Bool)}),
		"null string":   cty.NullVal(cty.String),
		"null list":     cty.NullVal(cty.List(cty.String)),
		"null dynamic":  cty.NullVal(cty.DynamicPseudoType),
		"list of lists": cty.ListVal([]cty.Value{cty.ListVal([]cty.Value{cty.NumberIntVal(1)})}),
		"nested blocks": cty.ObjectVal(map[string]cty.Value{
			"listener": cty.ListVal([]cty.Value{cty.ObjectVal(map[string]cty.Value{"port": cty.NumberIntVal(80), "host": cty.NullVal(cty.String)})}),
			"vhost":    cty.MapVal(map[string]cty.Value{"a": cty.ObjectVal(map[string]cty.Value{"root": cty.StringVal("/a")})}),
			"tls":      cty.NullVal(cty.Object(map[string]cty.Type{"cert": cty.String})),
		}),
	}
	attrs := map[string]cty.Value{}
	for name, v := range values {
		attrs[strings.ReplaceAll(name, " ", "_")] = v
	}
	whole := cty.ObjectVal(attrs)
	// Core marks sensitive values; the marks stay on the host.
	marked := cty.ObjectVal(map[string]cty.Value{"secret": cty.StringVal("s3cr3t").Mark("sensitive")})

	s := &spy{}
	role := roletest.InProcess(t, s)
	for name, v := range map[string]cty.Value{"all types": whole, "marked": marked, "empty": cty.EmptyObjectVal} {
		t.Run(name, func(t *testing.T) {
			if _, err := role.HealthCheck(t.Context(), sdk.HealthCheckRequest{Config: sdk.NewConfig(v)}); err != nil {
				t.Fatal(err)
			}
			s.mu.Lock()
			got := s.health.Config.Value()
			s.mu.Unlock()
			want, _ := v.UnmarkDeep()
			if !got.RawEquals(want) {
				t.Errorf("the plugin saw\n%#v\nwant\n%#v", got, want)
			}
		})
	}
	t.Run("unknown refused", func(t *testing.T) {
		unknown := cty.ObjectVal(map[string]cty.Value{"a": cty.UnknownVal(cty.String)})
		_, err := role.HealthCheck(t.Context(), sdk.HealthCheckRequest{Config: sdk.NewConfig(unknown)})
		if !errors.Is(err, sdk.ErrInvalidConfig) || !strings.Contains(err.Error(), "not wholly known") {
			t.Errorf("an unknown value = %v, want ErrInvalidConfig", err)
		}
	})
}

func TestSchemaRoundTrip(t *testing.T) {
	role := roletest.InProcess(t, &spy{})
	got, err := role.ConfigSchema(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	compareSchema(t, "", got, testrole.Schema())
}

func compareSchema(t *testing.T, path string, got, want sdk.Schema) {
	t.Helper()
	if len(got.Attributes) != len(want.Attributes) || len(got.Blocks) != len(want.Blocks) {
		t.Fatalf("%s: got %d attributes and %d blocks, want %d and %d", path, len(got.Attributes), len(got.Blocks), len(want.Attributes), len(want.Blocks))
	}
	for i, w := range want.Attributes {
		g := got.Attributes[i]
		if g.Name != w.Name || !g.Type.Equals(w.Type) || g.Required != w.Required || g.Description != w.Description || g.Sensitive != w.Sensitive {
			t.Errorf("%s%s: got %+v, want %+v", path, w.Name, g, w)
		}
		if (w.Default == sdk.NoValue) != (g.Default == sdk.NoValue) || (w.Default != sdk.NoValue && !g.Default.RawEquals(w.Default)) {
			t.Errorf("%s%s: default %#v, want %#v", path, w.Name, g.Default, w.Default)
		}
	}
	for i, w := range want.Blocks {
		g := got.Blocks[i]
		if g.Name != w.Name || g.Nesting != w.Nesting || g.MinItems != w.MinItems || g.MaxItems != w.MaxItems || g.Description != w.Description {
			t.Errorf("%s%s: got %+v, want %+v", path, w.Name, g, w)
		}
		compareSchema(t, path+w.Name+".", g.Schema, w.Schema)
	}
}

func TestBinaryRoundTrip(t *testing.T) {
	bin := roletest.Build(t, echoPkg)

	t.Run("errors cross the process boundary", func(t *testing.T) {
		role := roletest.Binary(t, bin)
		for name, kind := range testrole.Kinds {
			cfg := mustConfig(t, map[string]any{"fail": name})
			_, err := role.Provision(t.Context(), sdk.ProvisionRequest{Server: sdk.Server{WorkDir: t.TempDir()}, Config: cfg})
			if !errors.Is(err, kind) || !strings.Contains(err.Error(), "asked to fail with "+name) {
				t.Errorf("fail=%s: %v, want %v", name, err, kind)
			}
		}
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		defer cancel()
		_, err := role.Provision(ctx, sdk.ProvisionRequest{Config: mustConfig(t, map[string]any{"fail": "wait"})})
		if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, sdk.ErrTimeout) {
			t.Errorf("a call past its deadline = %v", err)
		}
	})

	t.Run("a dead plugin is unavailable", func(t *testing.T) {
		for name, kill := range map[string]func(*plugin.Client){
			"crashed": func(c *plugin.Client) {
				p, err := os.FindProcess(c.ReattachConfig().Pid)
				if err != nil {
					t.Fatal(err)
				}
				_ = p.Kill()
				for deadline := time.Now().Add(10 * time.Second); !c.Exited(); time.Sleep(time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatal("the killed plugin was not noticed")
					}
				}
			},
			"killed by the host": (*plugin.Client).Kill,
		} {
			t.Run(name, func(t *testing.T) {
				client := plugin.NewClient(rolehost.ClientConfig(exec.Command(bin), roletest.Logger(t)))
				defer client.Kill()
				role, err := rolehost.Dispense(client)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := role.Info(t.Context()); err != nil {
					t.Fatal(err)
				}
				kill(client)
				_, err = role.HealthCheck(t.Context(), sdk.HealthCheckRequest{})
				if !errors.Is(err, sdk.ErrUnavailable) {
					t.Errorf("a call to a dead plugin = %v, want ErrUnavailable", err)
				}
			})
		}
	})

	t.Run("net/rpc refused", func(t *testing.T) {
		cfg := rolehost.ClientConfig(exec.Command(bin), roletest.Logger(t))
		cfg.AllowedProtocols = []plugin.Protocol{plugin.ProtocolNetRPC}
		client := plugin.NewClient(cfg)
		defer client.Kill()
		if _, err := rolehost.Dispense(client); err == nil {
			t.Fatal("a host that allows net/rpc only got a role")
		}
	})

	t.Run("started by hand", func(t *testing.T) {
		out, err := exec.Command(bin).CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Errorf("exit = %v, want status 1", err)
		}
		if !strings.Contains(string(out), "plugin") {
			t.Errorf("output %q does not explain itself", out)
		}
	})
}
