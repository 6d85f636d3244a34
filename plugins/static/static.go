// Package static is the built-in `static` role: a server that serves a
// directory over HTTP on 127.0.0.1, from the plugin process itself.
//
// It is the role `roster up` demonstrates Roster with and the one the
// control-loop tests drive: its health and metrics can be steered from
// outside through metrics_file, and provision_delay makes Provision slow on
// purpose. See docs/roles/static.md for its schema.
//
// The HTTP server lives in the plugin process. The role keeps what it needs
// to serve again (port, document root, whether it was drained) in a state
// file in the server's work directory, so that a relaunched plugin process
// answers HealthCheck, Drain and Teardown for servers it never provisioned:
// on the first HealthCheck after a relaunch it serves again on the same
// port. Connections open when the old process died are lost with it.
package static

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"html"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rosterhq/roster/sdk"
	"github.com/rosterhq/roster/sdk/rolekit"
)

// Name is the role plugin's name.
const Name = "static"

// Version is the plugin's own version.
const Version = "0.1.0"

// ProbeHeader marks the role's own health probes, which are neither counted
// nor logged.
const ProbeHeader = rolekit.ProbeHeader

// ServerHeader names the server that answered, on every response, so that
// a balancer's tests can tell servers apart.
const ServerHeader = "X-Roster-Server"

// stateFile and accessLog live in <work dir>/static.
const (
	subdir    = "static"
	stateFile = "state.json"
	accessLog = "access.log"
)

// New returns the static role.
func New() sdk.Role {
	return &Role{Meta: rolekit.Meta{About: sdk.Info{
		Name:        Name,
		Version:     Version,
		Description: "serves a directory (or a page naming the server) over HTTP on 127.0.0.1",
	}, Schema: schema}}
}

// Role implements sdk.Role. One plugin process may serve several servers;
// they are told apart by work directory.
type Role struct {
	rolekit.Meta
	servers rolekit.Servers[entry]
}

// entry is what this process holds of one server.
type entry struct {
	site *site // nil while not serving from this process
}

// schema is the role's config schema.
func schema() sdk.Schema {
	return sdk.Schema{Attributes: []sdk.Attribute{
		{Name: "root", Type: sdk.String,
			Description: "directory to serve (a path or a file:// URL); default: a generated index page naming the server"},
		{Name: "port", Type: sdk.Number, Default: sdk.NumberIntVal(0),
			Description: "port on 127.0.0.1; 0 picks a free port"},
		{Name: "metrics_file", Type: sdk.String,
			Description: "file (a path or a file:// URL) of `name value` lines reported as metrics on every health check; `healthy 0` makes the server unhealthy"},
		{Name: "provision_delay", Type: sdk.String, Default: sdk.StringVal("0s"),
			Description: "time Provision waits before serving (a Go duration), to test provision timeouts"},
	}}
}

// settings is the decoded config.
type settings struct {
	root        string
	port        int
	metricsFile string
	delay       time.Duration
}

func decode(c sdk.Config) (settings, error) {
	s := settings{root: localPath(c.String("root")), metricsFile: localPath(c.String("metrics_file"))}
	port := c.Int("port")
	if port < 0 || port > 65535 {
		return s, sdk.Errorf(sdk.ErrInvalidConfig, "port %d: want 0..65535", port)
	}
	s.port = int(port)
	if d := c.String("provision_delay"); d != "" {
		v, err := time.ParseDuration(d)
		if err != nil || v < 0 {
			return s, sdk.Errorf(sdk.ErrInvalidConfig, "provision_delay %q: want a duration such as \"5s\"", d)
		}
		s.delay = v
	}
	return s, nil
}

// localPath accepts a plain path or a file:// URL, the form config resolves
// relative to the role file ("file://site" becomes "file:///etc/roles/site").
// A plain relative path is relative to the plugin's working directory, the
// agent's.
func localPath(s string) string {
	return strings.TrimPrefix(s, "file://")
}

// state is what a relaunched plugin process needs to serve again.
type state struct {
	Server   string `json:"server"`
	Role     string `json:"role"`
	Port     int    `json:"port"`
	Root     string `json:"root"`
	Drained  bool   `json:"drained,omitempty"`
	TornDown bool   `json:"torn_down,omitempty"`
}

func dirOf(s sdk.Server) string { return filepath.Join(s.WorkDir, subdir) }

func stateOf(s sdk.Server) string { return filepath.Join(dirOf(s), stateFile) }

func loadState(s sdk.Server) (*state, error) { return rolekit.LoadState[state](stateOf(s)) }

// saveState writes atomically: a plugin killed mid-write leaves the old
// state, not half a file.
func saveState(s sdk.Server, st *state) error { return rolekit.SaveState(stateOf(s), st) }

// Provision serves the directory and returns the "http" endpoint. Called
// again for a server that already serves, it returns the same endpoint.
func (r *Role) Provision(ctx context.Context, req sdk.ProvisionRequest) (sdk.ProvisionResponse, error) {
	cfg, err := decode(req.Config)
	if err != nil {
		return sdk.ProvisionResponse{}, err
	}
	// The work directory is checked before the delay; the server is
	// locked after it, so that a slow Provision does not hold its checks.
	if _, err := r.servers.Get(req.Server); err != nil {
		return sdk.ProvisionResponse{}, err
	}
	if cfg.delay > 0 {
		req.Report("delay", fmt.Sprintf("waiting %s (provision_delay)", cfg.delay), 0)
		t := time.NewTimer(cfg.delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return sdk.ProvisionResponse{}, sdk.Errorf(sdk.ErrTimeout, "provision_delay %s interrupted: %v", cfg.delay, ctx.Err())
		}
	}
	e, unlock, err := r.servers.Lock(req.Server)
	if err != nil {
		return sdk.ProvisionResponse{}, err
	}
	defer unlock()
	if e.site != nil && !e.site.drained() {
		return sdk.ProvisionResponse{Endpoints: e.site.endpoints()}, nil
	}
	if e.site != nil {
		// Drained, and asked to serve again: start afresh.
		e.site.close()
		e.site = nil
	}

	req.Report("prepare", "preparing the document root", 0.3)
	dir := dirOf(req.Server)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return sdk.ProvisionResponse{}, fmt.Errorf("work directory: %w", err)
	}
	root := cfg.root
	if root == "" {
		root = filepath.Join(dir, "www")
		if err := writeIndex(root, req.Server); err != nil {
			return sdk.ProvisionResponse{}, err
		}
	} else {
		if root, err = filepath.Abs(root); err != nil {
			return sdk.ProvisionResponse{}, sdk.Errorf(sdk.ErrInvalidConfig, "root %q: %v", cfg.root, err)
		}
		st, err := os.Stat(root)
		if err != nil || !st.IsDir() {
			return sdk.ProvisionResponse{}, sdk.Errorf(sdk.ErrInvalidConfig, "root %q is not a directory", cfg.root)
		}
	}
	port := cfg.port
	if prev, err := loadState(req.Server); err == nil && prev != nil && !prev.TornDown && port == 0 {
		// A relaunched plugin asked to provision again: keep the port the
		// balancer may already know.
		port = prev.Port
	}

	req.Report("start", "starting the HTTP server", 0.6)
	st := &state{Server: req.Server.Name, Role: req.Server.Role, Port: port, Root: root}
	s, err := serve(req.Server, st)
	if err != nil && port != cfg.port {
		st.Port = cfg.port
		s, err = serve(req.Server, st)
	}
	if err != nil {
		return sdk.ProvisionResponse{}, err
	}
	st.Port = s.port
	if err := saveState(req.Server, st); err != nil {
		s.close()
		return sdk.ProvisionResponse{}, fmt.Errorf("saving state: %w", err)
	}
	e.site = s
	req.Report("ready", "serving on "+s.addr(), 1)
	return sdk.ProvisionResponse{Endpoints: s.endpoints()}, nil
}

func writeIndex(root string, srv sdk.Server) error {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return fmt.Errorf("document root: %w", err)
	}
	page := fmt.Sprintf("<!doctype html>\n<html><head><title>%[1]s</title></head>\n"+
		"<body><h1>%[1]s</h1><p>role %[2]s, machine %[3]s</p></body></html>\n",
		html.EscapeString(srv.Name), html.EscapeString(srv.Role), html.EscapeString(srv.MachineID))
	return os.WriteFile(filepath.Join(root, "index.html"), []byte(page), 0o644)
}

// current returns the server's site, serving again from the state file
// when this plugin process was relaunched since Provision. It returns nil
// and the state when the server was drained or torn down.
func (e *entry) current(s sdk.Server) (*site, *state, error) {
	st, err := loadState(s)
	if err != nil {
		return nil, nil, err
	}
	if e.site != nil {
		return e.site, st, nil
	}
	if st == nil || st.Drained || st.TornDown {
		return nil, st, nil
	}
	site, err := serve(s, st)
	if err != nil {
		return nil, st, err
	}
	e.site = site
	return site, st, nil
}

// HealthCheck probes the server over HTTP and reports requests_total,
// in_flight and the metrics of metrics_file.
func (r *Role) HealthCheck(ctx context.Context, req sdk.HealthCheckRequest) (sdk.HealthCheckResponse, error) {
	cfg, err := decode(req.Config)
	if err != nil {
		return sdk.HealthCheckResponse{}, err
	}
	e, unlock, err := r.servers.Lock(req.Server)
	if err != nil {
		return sdk.HealthCheckResponse{}, err
	}
	defer unlock()
	s, st, err := e.current(req.Server)
	switch {
	case err != nil && st != nil:
		return sdk.HealthCheckResponse{Healthy: false, Reason: "cannot serve again after a plugin relaunch: " + err.Error(),
			Metrics: map[string]float64{"requests_total": 0, "in_flight": 0}}, nil
	case err != nil:
		return sdk.HealthCheckResponse{}, err
	case st == nil:
		return sdk.HealthCheckResponse{}, sdk.Errorf(sdk.ErrFailedPrecondition, "server %q is not provisioned", req.Server.Name)
	case st.TornDown:
		return sdk.HealthCheckResponse{}, sdk.Errorf(sdk.ErrFailedPrecondition, "server %q was torn down", req.Server.Name)
	}
	resp := sdk.HealthCheckResponse{Healthy: true, Metrics: map[string]float64{"requests_total": 0, "in_flight": 0}}
	if s != nil {
		resp.Metrics["requests_total"] = float64(s.requests.Load())
		resp.Metrics["in_flight"] = float64(s.open())
	}
	var reasons []string
	if st.Drained || s == nil || s.drained() {
		resp.Healthy = false
		reasons = append(reasons, "drained")
	} else if err := s.probe(ctx); err != nil {
		resp.Healthy = false
		reasons = append(reasons, err.Error())
	}
	if cfg.metricsFile != "" {
		m, healthy, note := readMetrics(cfg.metricsFile)
		for k, v := range m {
			resp.Metrics[k] = v
		}
		if !healthy {
			resp.Healthy = false
		}
		if note != "" {
			reasons = append(reasons, note)
		}
	}
	resp.Reason = strings.Join(reasons, "; ")
	return resp, nil
}

// readMetrics reads `name value` lines; blank lines and # comments are
// skipped, and so are lines that do not parse (a writer may be half-way
// through), which the note mentions.
func readMetrics(path string) (map[string]float64, bool, string) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, true, ""
	}
	if err != nil {
		return nil, true, fmt.Sprintf("metrics_file: %v", err)
	}
	defer f.Close()
	m := map[string]float64{}
	healthy := true
	var notes []string
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 2 {
			notes = append(notes, fmt.Sprintf("metrics_file %s:%d: want `name value`", path, n))
			continue
		}
		v, err := strconv.ParseFloat(fields[1], 64)
		if err != nil {
			notes = append(notes, fmt.Sprintf("metrics_file %s:%d: %q is not a number", path, n, fields[1]))
			continue
		}
		if fields[0] == "healthy" {
			if v == 0 {
				healthy = false
				notes = append(notes, fmt.Sprintf("metrics_file %s says healthy 0", path))
			}
			continue
		}
		m[fields[0]] = v
	}
	return m, healthy, strings.Join(notes, "; ")
}

// Drain stops accepting connections and waits, until the deadline, for the
// open ones to finish; it returns those still open.
func (r *Role) Drain(ctx context.Context, req sdk.DrainRequest) (sdk.DrainResponse, error) {
	e, unlock, err := r.servers.Lock(req.Server)
	if err != nil {
		return sdk.DrainResponse{}, err
	}
	defer unlock()
	st, err := loadState(req.Server)
	if err != nil {
		return sdk.DrainResponse{}, err
	}
	if st == nil || st.TornDown {
		return sdk.DrainResponse{}, nil
	}
	open := 0
	if s := e.site; s != nil {
		dctx, cancel := rolekit.WithDeadline(ctx, req.Deadline)
		defer cancel()
		open = s.shutdown(dctx)
	}
	// Without a site in this process, the server died with the previous
	// plugin process: nothing is open.
	if !st.Drained {
		st.Drained = true
		if err := saveState(req.Server, st); err != nil {
			return sdk.DrainResponse{}, fmt.Errorf("saving state: %w", err)
		}
	}
	return sdk.DrainResponse{OpenConnections: open}, nil
}

// Teardown stops the server, closing what is still open, and returns its
// access log.
func (r *Role) Teardown(ctx context.Context, req sdk.TeardownRequest) (sdk.TeardownResponse, error) {
	e, unlock, err := r.servers.Lock(req.Server)
	if err != nil {
		return sdk.TeardownResponse{}, err
	}
	defer unlock()
	if e.site != nil {
		e.site.close()
		e.site = nil
	}
	st, err := loadState(req.Server)
	if err != nil {
		return sdk.TeardownResponse{}, err
	}
	if st != nil && !st.TornDown {
		st.TornDown = true
		if err := saveState(req.Server, st); err != nil {
			return sdk.TeardownResponse{}, fmt.Errorf("saving state: %w", err)
		}
	}
	var resp sdk.TeardownResponse
	p := filepath.Join(dirOf(req.Server), accessLog)
	if _, err := os.Stat(p); err == nil {
		resp.Logs = append(resp.Logs, sdk.LogFile{Name: subdir + "/" + accessLog, Path: p})
	}
	return resp, nil
}

// site is one server's HTTP server in this process.
type site struct {
	name     string
	port     int
	srv      *http.Server
	done     chan struct{}
	requests atomic.Int64
	isDrain  atomic.Bool

	connMu sync.Mutex
	conns  map[net.Conn]http.ConnState

	logMu sync.Mutex
	log   *os.File
}

// serve starts serving st.Root on 127.0.0.1:st.Port.
func serve(srv sdk.Server, st *state) (*site, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(st.Port)))
	if err != nil {
		return nil, sdk.Errorf(sdk.ErrInvalidConfig, "listening on 127.0.0.1:%d: %v", st.Port, err)
	}
	lf, err := os.OpenFile(filepath.Join(dirOf(srv), accessLog), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("access log: %w", err)
	}
	s := &site{
		name:  srv.Name,
		port:  ln.Addr().(*net.TCPAddr).Port,
		done:  make(chan struct{}),
		conns: map[net.Conn]http.ConnState{},
		log:   lf,
	}
	s.srv = &http.Server{
		Handler:           s.handler(http.FileServer(http.Dir(st.Root))),
		ReadHeaderTimeout: 10 * time.Second,
		ConnState:         s.track,
	}
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln)
	}()
	return s, nil
}

func (s *site) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

func (s *site) endpoints() sdk.Endpoints { return sdk.Endpoints{"http": s.addr()} }

func (s *site) drained() bool { return s.isDrain.Load() }

func (s *site) track(c net.Conn, cs http.ConnState) {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	switch cs {
	case http.StateClosed, http.StateHijacked:
		delete(s.conns, c)
	default:
		s.conns[c] = cs
	}
}

// open counts the connections open now.
func (s *site) open() int {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	return len(s.conns)
}

type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *recorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (s *site) handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(ServerHeader, s.name)
		if r.Header.Get(ProbeHeader) != "" {
			next.ServeHTTP(w, r)
			return
		}
		s.requests.Add(1)
		rec := &recorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		line := fmt.Sprintf("%s - - [%s] %q %d %d\n", host, time.Now().Format("02/Jan/2006:15:04:05 -0700"),
			r.Method+" "+r.RequestURI+" "+r.Proto, rec.status, rec.bytes)
		s.logMu.Lock()
		_, _ = s.log.WriteString(line)
		s.logMu.Unlock()
	})
}

// probe asks the server for / as a client would. Not rolekit.HTTPGet, which
// reads the body and leaves the close to the server: with it, a Drain just
// after a health check still counted the probe's connection as open
// (TestRoleInProcess); closing from the client at once does not.
func (s *site) probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.addr()+"/", nil)
	if err != nil {
		return err
	}
	req.Header.Set(ProbeHeader, "1")
	req.Close = true
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return fmt.Errorf("probe of %s: %v", s.addr(), err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode >= 500 {
		return fmt.Errorf("probe of %s: %s", s.addr(), resp.Status)
	}
	return nil
}

// shutdown stops accepting and waits for open connections until ctx ends;
// it returns how many are still open.
func (s *site) shutdown(ctx context.Context) int {
	s.isDrain.Store(true)
	_ = s.srv.Shutdown(ctx)
	return s.open()
}

// close stops everything at once.
func (s *site) close() {
	s.isDrain.Store(true)
	_ = s.srv.Close()
	<-s.done
	s.logMu.Lock()
	_ = s.log.Close()
	s.logMu.Unlock()
}
