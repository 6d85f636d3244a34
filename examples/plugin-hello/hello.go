package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rosterhq/roster/sdk"
)

// Hello is the role. One plugin process may serve several servers of the
// role (in tests, or on a machine that hosts more than one), so its state is
// kept per server name.
type Hello struct {
	mu      sync.Mutex
	servers map[string]*greeter
}

// config is the role's `config` block; Decode fills it. Every attribute of
// the schema needs a field here.
type config struct {
	Greeting string `cty:"greeting"`
	Port     int    `cty:"port"`
}

// greeter is one running server.
type greeter struct {
	srv      *http.Server
	addr     string
	log      *os.File
	logPath  string
	open     atomic.Int64 // connections open now
	requests atomic.Int64
	done     chan struct{} // closed when Serve returned
}

// Info names the plugin: role files refer to it as plugin = "hello".
func (h *Hello) Info(context.Context) (sdk.Info, error) {
	return sdk.Info{Name: "hello", Version: "0.1.0", Description: "answers HTTP requests with a greeting"}, nil
}

// ConfigSchema declares the role's `config` block. Core checks every role
// file against it before anything starts, and fills in the defaults.
func (h *Hello) ConfigSchema(context.Context) (sdk.Schema, error) {
	return sdk.Schema{Attributes: []sdk.Attribute{
		{Name: "greeting", Type: sdk.String, Default: sdk.StringVal("Hello from Roster"),
			Description: "the text every request is answered with"},
		{Name: "port", Type: sdk.Number, Default: sdk.NumberIntVal(0),
			Description: "the TCP port to listen on, on 127.0.0.1; 0 picks a free one"},
	}}, nil
}

// Provision starts the HTTP server and returns its address as the endpoint
// "http".
func (h *Hello) Provision(ctx context.Context, req sdk.ProvisionRequest) (sdk.ProvisionResponse, error) {
	log := sdk.Logger(ctx)
	var cfg config
	if err := req.Config.Decode(&cfg); err != nil {
		return sdk.ProvisionResponse{}, sdk.Errorf(sdk.ErrInvalidConfig, "%v", err)
	}
	if cfg.Port < 0 || cfg.Port > 65535 {
		return sdk.ProvisionResponse{}, sdk.Errorf(sdk.ErrInvalidConfig, "port %d is not a TCP port", cfg.Port)
	}

	h.mu.Lock()
	defer h.mu.Unlock()
	if g, ok := h.servers[req.Server.Name]; ok {
		// Provision again (a retried order): the server is already up.
		return sdk.ProvisionResponse{Endpoints: sdk.Endpoints{"http": g.addr}}, nil
	}

	req.Report("listen", fmt.Sprintf("listening on port %d", cfg.Port), 0.2)
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", cfg.Port))
	if err != nil {
		// A port in use will not free itself: retrying cannot help.
		return sdk.ProvisionResponse{}, sdk.Errorf(sdk.ErrInvalidConfig, "listening on port %d: %v", cfg.Port, err)
	}
	logPath := filepath.Join(req.Server.WorkDir, "hello.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
	if err != nil {
		_ = ln.Close()
		return sdk.ProvisionResponse{}, fmt.Errorf("opening the access log: %w", err)
	}

	g := &greeter{addr: ln.Addr().String(), log: logFile, logPath: logPath, done: make(chan struct{})}
	greeting := cfg.Greeting
	g.srv = &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			g.requests.Add(1)
			fmt.Fprintf(g.log, "%s %s %s\n", time.Now().UTC().Format(time.RFC3339), r.Method, r.URL.Path)
			fmt.Fprintln(w, greeting)
		}),
		ConnState: func(_ net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				g.open.Add(1)
			case http.StateClosed, http.StateHijacked:
				g.open.Add(-1)
			}
		},
	}
	req.Report("serve", "serving "+g.addr, 0.8)
	go func() {
		defer close(g.done)
		if err := g.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped", "error", err)
		}
	}()
	if h.servers == nil {
		h.servers = map[string]*greeter{}
	}
	h.servers[req.Server.Name] = g
	log.Info("serving", "addr", g.addr)
	req.Report("ready", "ready", 1)
	return sdk.ProvisionResponse{Endpoints: sdk.Endpoints{"http": g.addr}}, nil
}

// HealthCheck asks the server for its greeting, as a client would.
func (h *Hello) HealthCheck(ctx context.Context, req sdk.HealthCheckRequest) (sdk.HealthCheckResponse, error) {
	g := h.server(req.Server.Name)
	if g == nil {
		return sdk.HealthCheckResponse{}, sdk.Errorf(sdk.ErrFailedPrecondition, "server %s is not provisioned", req.Server.Name)
	}
	metrics := map[string]float64{"connections": float64(g.open.Load()), "requests": float64(g.requests.Load())}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+req.Endpoints["http"]+"/health", nil)
	if err != nil {
		return sdk.HealthCheckResponse{Reason: err.Error(), Metrics: metrics}, nil
	}
	resp, err := http.DefaultClient.Do(hreq)
	if err != nil {
		return sdk.HealthCheckResponse{Reason: err.Error(), Metrics: metrics}, nil
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if want := req.Config.String("greeting"); resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != want {
		return sdk.HealthCheckResponse{Reason: fmt.Sprintf("GET answered %s %q", resp.Status, body), Metrics: metrics}, nil
	}
	return sdk.HealthCheckResponse{Healthy: true, Metrics: metrics}, nil
}

// Drain stops taking new connections and waits for the open ones to finish,
// until the deadline.
func (h *Hello) Drain(ctx context.Context, req sdk.DrainRequest) (sdk.DrainResponse, error) {
	g := h.server(req.Server.Name)
	if g == nil {
		return sdk.DrainResponse{}, nil
	}
	if !req.Deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, req.Deadline)
		defer cancel()
	}
	if err := g.srv.Shutdown(ctx); err != nil {
		sdk.Logger(ctx).Warn("drain ended with connections open", "open", g.open.Load(), "error", err)
	}
	return sdk.DrainResponse{OpenConnections: int(g.open.Load())}, nil
}

// Teardown stops the server (if Drain did not) and hands back the access log.
// It is safe to call twice and after a failed Provision.
func (h *Hello) Teardown(_ context.Context, req sdk.TeardownRequest) (sdk.TeardownResponse, error) {
	h.mu.Lock()
	g := h.servers[req.Server.Name]
	delete(h.servers, req.Server.Name)
	h.mu.Unlock()

	logPath := filepath.Join(req.Server.WorkDir, "hello.log")
	if g != nil {
		_ = g.srv.Close()
		<-g.done
		_ = g.log.Close()
		logPath = g.logPath
	}
	if _, err := os.Stat(logPath); err != nil {
		return sdk.TeardownResponse{}, nil // never provisioned: nothing to keep
	}
	return sdk.TeardownResponse{Logs: []sdk.LogFile{{Name: "hello/access.log", Path: logPath}}}, nil
}

func (h *Hello) server(name string) *greeter {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.servers[name]
}
