package static

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rosterhq/roster/sdk"
	"github.com/rosterhq/roster/sdk/roletest"
)

func get(t testing.TB, addr, path string) (int, string, http.Header) {
	t.Helper()
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		t.Fatalf("GET %s%s: %v", addr, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// checkServes is the Check of the roletest cases: the generated page names
// the server, the metrics count the request.
func checkServes(t testing.TB, r *roletest.Result) {
	addr := r.Endpoints["http"]
	if !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Fatalf("endpoint %q is not on 127.0.0.1", addr)
	}
	code, body, hdr := get(t, addr, "/")
	if code != 200 || !strings.Contains(body, r.Server.Name) || hdr.Get(ServerHeader) != r.Server.Name {
		t.Fatalf("GET / = %d %q (%s %q)", code, body, ServerHeader, hdr.Get(ServerHeader))
	}
	ctx := context.Background()
	hc, err := r.Role.HealthCheck(ctx, sdk.HealthCheckRequest{Server: r.Server, Config: r.Config, Endpoints: r.Endpoints})
	if err != nil {
		t.Fatal(err)
	}
	if !hc.Healthy || hc.Metrics["requests_total"] != 1 {
		t.Fatalf("after one GET: %+v (health probes must not count)", hc)
	}
	if _, ok := hc.Metrics["in_flight"]; !ok {
		t.Fatalf("no in_flight metric: %+v", hc.Metrics)
	}
}

func TestRoleInProcess(t *testing.T) {
	r := roletest.Run(t, New(), roletest.Case{WantEndpoints: []string{"http"}, Check: checkServes})
	if len(r.Teardown.Logs) != 1 || r.Teardown.Logs[0].Name != "static/access.log" {
		t.Fatalf("Teardown logs %+v", r.Teardown.Logs)
	}
	b, err := os.ReadFile(r.Teardown.Logs[0].Path)
	if err != nil || !strings.Contains(string(b), `"GET / HTTP/1.1" 200`) {
		t.Fatalf("access log %q, %v", b, err)
	}
	if r.Drain.OpenConnections != 0 {
		t.Errorf("Drain left %d connections", r.Drain.OpenConnections)
	}
}

func TestRoleServesRoot(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "hello.txt"), []byte("hello from root"), 0o644); err != nil {
		t.Fatal(err)
	}
	roletest.Run(t, New(), roletest.Case{
		ConfigHCL: fmt.Sprintf("root = %q\nport = 0\n", root),
		Check: func(t testing.TB, r *roletest.Result) {
			if code, body, _ := get(t, r.Endpoints["http"], "/hello.txt"); code != 200 || body != "hello from root" {
				t.Fatalf("GET /hello.txt = %d %q", code, body)
			}
		},
	})
}

func TestRoleBadConfig(t *testing.T) {
	roletest.Run(t, New(), roletest.Case{Config: map[string]any{"root": filepath.Join(t.TempDir(), "missing")},
		WantProvisionError: sdk.ErrInvalidConfig})
	roletest.Run(t, New(), roletest.Case{Config: map[string]any{"provision_delay": "soon"},
		WantProvisionError: sdk.ErrInvalidConfig})
	roletest.Run(t, New(), roletest.Case{Config: map[string]any{"port": 70000},
		WantProvisionError: sdk.ErrInvalidConfig})
	// A port in use.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	roletest.Run(t, New(), roletest.Case{Config: map[string]any{"port": ln.Addr().(*net.TCPAddr).Port},
		WantProvisionError: sdk.ErrInvalidConfig})
	roletest.Run(t, New(), roletest.Case{Config: map[string]any{"colour": "red"}, WantConfigError: "colour"})
}

func TestMetricsFile(t *testing.T) {
	mf := filepath.Join(t.TempDir(), "metrics")
	write := func(s string) {
		if err := os.WriteFile(mf, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("# steered by the test\nload 0.9\nbusy 3\n")
	roletest.Run(t, New(), roletest.Case{
		Config: map[string]any{"metrics_file": "file://" + mf},
		Check: func(t testing.TB, r *roletest.Result) {
			if r.Health.Metrics["load"] != 0.9 || r.Health.Metrics["busy"] != 3 || !r.Health.Healthy {
				t.Fatalf("health %+v", r.Health)
			}
			hc := func() sdk.HealthCheckResponse {
				h, err := r.Role.HealthCheck(context.Background(), sdk.HealthCheckRequest{Server: r.Server, Config: r.Config})
				if err != nil {
					t.Fatal(err)
				}
				return h
			}
			write("load 0.1\nhealthy 0\n")
			if h := hc(); h.Healthy || !strings.Contains(h.Reason, "healthy 0") || h.Metrics["load"] != 0.1 {
				t.Fatalf("with healthy 0: %+v", h)
			}
			write("load 0.2\nhealthy 1\nnonsense\nx y\n")
			if h := hc(); !h.Healthy || h.Metrics["load"] != 0.2 || !strings.Contains(h.Reason, "not a number") {
				t.Fatalf("with bad lines: %+v", h)
			}
			if err := os.Remove(mf); err != nil {
				t.Fatal(err)
			}
			if h := hc(); !h.Healthy {
				t.Fatalf("without the file: %+v", h)
			}
		},
	})
}

func TestProvisionDelayHonoursContext(t *testing.T) {
	r := New()
	cfg, _ := sdk.ConfigFromMap(map[string]any{"provision_delay": "1h"})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	srv := sdk.Server{Role: "web", Name: "web-1", WorkDir: t.TempDir()}
	_, err := r.Provision(ctx, sdk.ProvisionRequest{Server: srv, Config: cfg})
	if !errors.Is(err, sdk.ErrTimeout) {
		t.Fatalf("Provision: %v, want sdk.ErrTimeout", err)
	}
	if _, err := r.Teardown(context.Background(), sdk.TeardownRequest{Server: srv}); err != nil {
		t.Fatal(err)
	}
	// Over the transport too: the deadline crosses it.
	role := roletest.InProcess(t, New())
	ctx2, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	if _, err := role.Provision(ctx2, sdk.ProvisionRequest{Server: srv, Config: cfg}); !errors.Is(err, sdk.ErrTimeout) {
		t.Fatalf("Provision over gRPC: %v, want sdk.ErrTimeout", err)
	}
}

func provision(t *testing.T, r sdk.Role, cfg map[string]any) (sdk.Server, sdk.Config, sdk.Endpoints) {
	t.Helper()
	c, err := sdk.ConfigFromMap(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := sdk.Server{Role: "web", Name: "web-7", MachineID: "m-7", WorkDir: t.TempDir()}
	resp, err := r.Provision(context.Background(), sdk.ProvisionRequest{Server: srv, Config: c})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = r.Teardown(context.Background(), sdk.TeardownRequest{Server: srv, Config: c}) })
	return srv, c, resp.Endpoints
}

func TestDrainReportsOpenConnections(t *testing.T) {
	r := New()
	srv, cfg, eps := provision(t, r, map[string]any{})
	// A connection in the middle of sending its request counts as open
	// and Shutdown waits for it.
	conn, err := net.Dial("tcp", eps["http"])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n")); err != nil {
		t.Fatal(err)
	}
	// Wait until the server has seen it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		hc, err := r.HealthCheck(context.Background(), sdk.HealthCheckRequest{Server: srv, Config: cfg})
		if err != nil {
			t.Fatal(err)
		}
		if hc.Metrics["in_flight"] >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("in_flight never counted the connection: %+v", hc)
		}
		time.Sleep(10 * time.Millisecond)
	}
	d, err := r.Drain(context.Background(), sdk.DrainRequest{Server: srv, Config: cfg, Deadline: time.Now().Add(100 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	if d.OpenConnections != 1 {
		t.Fatalf("Drain: %d open connections, want 1", d.OpenConnections)
	}
	// No new connections once drained.
	if c, err := net.DialTimeout("tcp", eps["http"], time.Second); err == nil {
		c.Close()
		t.Fatal("a drained server accepted a connection")
	}
	hc, err := r.HealthCheck(context.Background(), sdk.HealthCheckRequest{Server: srv, Config: cfg})
	if err != nil || hc.Healthy || !strings.Contains(hc.Reason, "drained") {
		t.Fatalf("HealthCheck after Drain: %+v, %v", hc, err)
	}
	// Teardown closes what is left.
	if _, err := r.Teardown(context.Background(), sdk.TeardownRequest{Server: srv, Config: cfg}); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection still open after Teardown")
	}
	if _, err := r.HealthCheck(context.Background(), sdk.HealthCheckRequest{Server: srv, Config: cfg}); !errors.Is(err, sdk.ErrFailedPrecondition) {
		t.Fatalf("HealthCheck after Teardown: %v, want sdk.ErrFailedPrecondition", err)
	}
}

// A relaunched plugin process knows nothing in memory: it serves again on
// the same port from the state file, and Drain and Teardown work.
func TestRelaunchedProcessServesAgain(t *testing.T) {
	first := New().(*Role)
	srv, cfg, eps := provision(t, first, map[string]any{})
	// The first process dies: its server goes with it.
	e, err := first.servers.Get(srv)
	if err != nil {
		t.Fatal(err)
	}
	e.site.close()
	if _, err := net.DialTimeout("tcp", eps["http"], time.Second); err == nil {
		t.Fatal("still serving after the process died")
	}
	second := New()
	hc, err := second.HealthCheck(context.Background(), sdk.HealthCheckRequest{Server: srv, Config: cfg, Endpoints: eps})
	if err != nil || !hc.Healthy {
		t.Fatalf("HealthCheck in the new process: %+v, %v", hc, err)
	}
	if code, body, _ := get(t, eps["http"], "/"); code != 200 || !strings.Contains(body, "web-7") {
		t.Fatalf("GET after relaunch: %d %q", code, body)
	}
	if _, err := second.Drain(context.Background(), sdk.DrainRequest{Server: srv, Config: cfg, Deadline: time.Now().Add(5 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	td, err := second.Teardown(context.Background(), sdk.TeardownRequest{Server: srv, Config: cfg})
	if err != nil || len(td.Logs) != 1 {
		t.Fatalf("Teardown: %+v, %v", td, err)
	}
	// A third process after Drain does not serve again.
	third := New()
	if _, err := third.HealthCheck(context.Background(), sdk.HealthCheckRequest{Server: srv, Config: cfg}); !errors.Is(err, sdk.ErrFailedPrecondition) {
		t.Fatalf("HealthCheck after Teardown, new process: %v", err)
	}
}

func TestHealthCheckBeforeProvision(t *testing.T) {
	_, err := New().HealthCheck(context.Background(), sdk.HealthCheckRequest{Server: sdk.Server{Name: "x", WorkDir: t.TempDir()}})
	if !errors.Is(err, sdk.ErrFailedPrecondition) {
		t.Fatalf("%v, want sdk.ErrFailedPrecondition", err)
	}
}

func TestProvisionTwiceIsIdempotent(t *testing.T) {
	r := New()
	srv, cfg, eps := provision(t, r, map[string]any{})
	resp, err := r.Provision(context.Background(), sdk.ProvisionRequest{Server: srv, Config: cfg})
	if err != nil || resp.Endpoints["http"] != eps["http"] {
		t.Fatalf("second Provision: %+v, %v (first %v)", resp, err, eps)
	}
}

// The real binary: `roster plugin-serve static`, through a wrapper script
// since the harness launches a path without arguments.
func TestRoleAsRosterBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the roster binary")
	}
	dir := t.TempDir()
	roster := filepath.Join(dir, "roster")
	out, err := exec.Command("go", "build", "-o", roster, "github.com/rosterhq/roster/cmd/roster").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	wrapper := filepath.Join(dir, "roster-role-static")
	if err := os.WriteFile(wrapper, []byte("#!/bin/sh\nexec "+roster+" plugin-serve static\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	r := roletest.RunBinary(t, wrapper, roletest.Case{WantEndpoints: []string{"http"}, Check: checkServes})
	if r.Info.Name != Name || r.Info.Version != Version {
		t.Errorf("Info %+v", r.Info)
	}
}
