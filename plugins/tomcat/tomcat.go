// Package tomcat is the built-in `tomcat` role: Tomcat 10 from Debian, run
// as a private instance (its own CATALINA_BASE under the server's work
// directory) serving one web application, optionally with apache2 in front
// as a reverse proxy, the classic pairing.
//
// Provision makes sure the packages are there, fetches the WAR with
// sdk/artifact, writes a CATALINA_BASE (server.xml with one HTTP connector,
// no shutdown port and no AJP; Debian's web.xml and catalina.properties),
// starts the JVM directly (java … org.apache.catalina.startup.Bootstrap
// start, not catalina.sh, whose daemon mode would fork out of the
// supervisor's process group) under sdk/process, waits until health_path
// answers, then starts the apache front when configured.
//
// The JVM stops on SIGTERM through Tomcat's shutdown hook: the connector
// closes its listening socket at once (bindOnInit="false") and the Service
// waits for the connections in flight (gracefulStopAwaitMillis), which is
// what Drain relies on. Metrics come from Tomcat's own status servlet
// (StatusManagerServlet from catalina.jar, the manager application's),
// served by a second Service on a private loopback port, so that neither
// the manager application nor remote JMX is needed and nothing is exposed
// on the application's connector.
//
// Everything a relaunched plugin process needs is in <work dir>/tomcat:
// the supervisor's state files and state.json (ports and shape). See
// docs/roles/tomcat.md for the schema and the metrics.
package tomcat

import (
	"archive/zip"
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/rosterhq/roster/sdk"
	"github.com/rosterhq/roster/sdk/artifact"
	"github.com/rosterhq/roster/sdk/netutil"
	"github.com/rosterhq/roster/sdk/packages"
	"github.com/rosterhq/roster/sdk/process"
	"github.com/rosterhq/roster/sdk/rolekit"
)

// Name is the role plugin's name.
const Name = "tomcat"

// Version is the plugin's own version.
const Version = "0.1.0"

const subdir = "tomcat"

// Daemon names within the server's supervisor.
const (
	tomcatName = "tomcat"
	apacheName = "apache2"
)

// How long the daemons get to start and to stop before they are killed. A
// JVM is slow to start on a busy machine, and Tomcat unloads every
// application before it exits.
const (
	startTimeout     = 2 * time.Minute
	tomcatStopTime   = 30 * time.Second
	abandonStopTime  = 3 * time.Second // after a Drain that ran out of time
	apacheStopTime   = 10 * time.Second
	pollPeriod       = 20 * time.Millisecond
	gracefulStopWait = 3600 * 1000 // ms; Drain and Teardown bound the wait
)

// New returns the tomcat role.
func New() sdk.Role {
	return &Role{
		Meta: rolekit.Meta{About: sdk.Info{
			Name:        Name,
			Version:     Version,
			Description: "Tomcat 10 from Debian as a private instance serving one WAR, optionally behind apache2",
		}, Schema: Schema},
		servers: rolekit.Servers[entry]{Role: "tomcat"},
	}
}

// Role implements sdk.Role. One plugin process may serve several servers;
// they are told apart by work directory, and calls about one server are
// serialised.
type Role struct {
	rolekit.Meta
	servers   rolekit.Servers[entry]
	installer packages.Installer
}

type entry struct {
	// requests is the connector's requestCount, for requests_per_second.
	requests rolekit.Rate
}

// state is what a relaunched plugin process needs about a server.
type state struct {
	Server     string `json:"server"`
	HTTP       string `json:"http"`
	Tomcat     string `json:"tomcat"`
	Status     string `json:"status"`
	Front      string `json:"front,omitempty"`
	MaxThreads int    `json:"max_threads"`
	User       string `json:"user,omitempty"`
	WarSHA256  string `json:"war_sha256"`
	Revision   string `json:"revision,omitempty"`
	// DrainLeft is how many connections a Drain that ran out of time
	// left open: Teardown then does not wait for them again.
	DrainLeft int `json:"drain_left,omitempty"`
}

func loadState(l layout) (*state, error) {
	st, err := rolekit.LoadState[state](l.State)
	if err != nil {
		return nil, fmt.Errorf("tomcat: %w", err)
	}
	return st, nil
}

func supervisor(ctx context.Context, l layout) (*process.Supervisor, error) {
	return rolekit.Supervisor(ctx, l.Run, pollPeriod)
}

// Provision installs (or checks) the packages, fetches the WAR, writes the
// private CATALINA_BASE and starts Tomcat, then the apache front. Called
// again for a server, it stops what runs and starts afresh with the new
// config. On failure it stops whatever it started.
func (r *Role) Provision(ctx context.Context, req sdk.ProvisionRequest) (_ sdk.ProvisionResponse, err error) {
	cfg, err := decode(req.Config)
	if err != nil {
		return sdk.ProvisionResponse{}, err
	}
	e, unlock, err := r.servers.Lock(req.Server)
	if err != nil {
		return sdk.ProvisionResponse{}, err
	}
	defer unlock()
	log := sdk.Logger(ctx).Named("tomcat")
	l := layoutOf(req.Server.WorkDir)

	// 1. Packages, and the commands they bring.
	if err := rolekit.EnsurePackages(ctx, req, r.installer, cfg.packages(), cfg.InstallMissing); err != nil {
		return sdk.ProvisionResponse{}, fmt.Errorf("tomcat: %w", err)
	}
	java, err := javaBinary()
	if err != nil {
		return sdk.ProvisionResponse{}, sdk.Errorf(sdk.ErrNotFound, "tomcat: %v", err)
	}
	if _, err := os.Stat(filepath.Join(catalinaHome, "bin", "bootstrap.jar")); err != nil {
		return sdk.ProvisionResponse{}, sdk.Errorf(sdk.ErrNotFound, "tomcat: CATALINA_HOME %s: %v (is tomcat10 installed?)", catalinaHome, err)
	}
	var mods []module
	if cfg.ApacheFront {
		if mods, err = frontModules(); err != nil {
			return sdk.ProvisionResponse{}, sdk.Errorf(sdk.ErrNotFound, "tomcat: %v", err)
		}
	}

	// A second Provision starts afresh.
	sup, err := supervisor(ctx, l)
	if err != nil {
		return sdk.ProvisionResponse{}, err
	}
	if err := stopAll(ctx, sup); err != nil {
		return sdk.ProvisionResponse{}, err
	}
	defer func() {
		if err != nil {
			// Leave nothing running; the logs stay for Teardown to return.
			_ = stopAll(context.WithoutCancel(ctx), sup)
		}
	}()
	// The previous application, what Tomcat unpacked of it and the JSPs it
	// compiled go: they belong to the previous WAR.
	for _, d := range []string{l.Webapps, filepath.Join(l.Base, "work"), filepath.Join(l.Base, "temp"), l.Fetch} {
		if err := os.RemoveAll(d); err != nil {
			return sdk.ProvisionResponse{}, fmt.Errorf("tomcat: %w", err)
		}
	}

	// 2. The application.
	req.Report("fetch", "fetching war "+artifact.Redact(cfg.War), 0.1)
	if err := os.MkdirAll(l.Fetch, 0o755); err != nil {
		return sdk.ProvisionResponse{}, fmt.Errorf("tomcat: %w", err)
	}
	fetched := filepath.Join(l.Fetch, "app")
	app, err := artifact.Fetch(ctx, cfg.War, fetched, artifact.Options{
		SHA256:   cfg.WarSHA256,
		Logger:   log,
		Progress: rolekit.FetchProgress(req, "war", 0.1, 0.3),
	})
	if err != nil {
		return sdk.ProvisionResponse{}, fmt.Errorf("tomcat: war: %w", err)
	}
	if err := os.MkdirAll(l.Webapps, 0o755); err != nil {
		return sdk.ProvisionResponse{}, fmt.Errorf("tomcat: %w", err)
	}
	deployed := filepath.Join(l.Webapps, cfg.appName())
	if app.Kind == artifact.KindFile {
		if err := checkWAR(fetched); err != nil {
			return sdk.ProvisionResponse{}, sdk.Errorf(sdk.ErrInvalidConfig, "tomcat: war %s: %v", artifact.Redact(cfg.War), err)
		}
		deployed += ".war"
	} else if _, err := os.Stat(filepath.Join(fetched, "WEB-INF")); err != nil {
		return sdk.ProvisionResponse{}, sdk.Errorf(sdk.ErrInvalidConfig, "tomcat: war %s is a directory without WEB-INF: want a .war file or an exploded web application", artifact.Redact(cfg.War))
	}
	if err := os.Rename(fetched, deployed); err != nil {
		return sdk.ProvisionResponse{}, fmt.Errorf("tomcat: %w", err)
	}

	// 3. Users.
	tcUser, err := rolekit.RunAs(tomcatUser)
	if err != nil {
		// Tomcat still works as root; say so where people look.
		log.Warn("running tomcat as root: no tomcat user", "error", err)
		req.Report("configure", "warning: no user "+tomcatUser+": tomcat runs as root", 0.4)
		tcUser = nil
	}
	var wwwData *user.User
	if cfg.ApacheFront {
		if wwwData, err = rolekit.RunAs(apacheUser); err != nil {
			return sdk.ProvisionResponse{}, sdk.Errorf(sdk.ErrNotFound, "tomcat: apache front: %v", err)
		}
	}

	// 4. Ports, then CATALINA_BASE.
	req.Report("configure", "writing CATALINA_BASE "+l.Base, 0.45)
	ports, err := pickPorts(cfg)
	if err != nil {
		return sdk.ProvisionResponse{}, err
	}
	tomcatListen := cfg.ListenAddress
	if cfg.ApacheFront {
		tomcatListen = "127.0.0.1"
	}
	tomcatAddr := hostPort(cfg.endpointHost(), ports.tomcat)
	if cfg.ApacheFront {
		tomcatAddr = hostPort("127.0.0.1", ports.tomcat)
	}
	statusAddr := hostPort("127.0.0.1", ports.status)
	if err := writeBase(l, serverParams{
		Server:           req.Server.Name,
		Address:          tomcatListen,
		Port:             ports.tomcat,
		StatusPort:       ports.status,
		MaxThreads:       cfg.MaxThreads,
		KeepAliveMillis:  cfg.KeepAliveTimeout * 1000,
		Fronted:          cfg.ApacheFront,
		StatusApp:        l.StatusApp,
		GracefulStopWait: gracefulStopWait,
	}); err != nil {
		return sdk.ProvisionResponse{}, sdk.Errorf(sdk.ErrNotFound, "tomcat: %v", err)
	}
	userName := ""
	if tcUser != nil {
		userName = tcUser.Username
		if err := rolekit.CheckReachable(l.Base, l.Base, tcUser); err != nil {
			return sdk.ProvisionResponse{}, sdk.Errorf(sdk.ErrInvalidConfig, "tomcat: %v", err)
		}
		// Tomcat writes its logs, unpacks the WAR and compiles JSPs; its
		// configuration stays root's.
		for _, d := range []string{l.Logs, l.Webapps, filepath.Join(l.Base, "temp"), filepath.Join(l.Base, "work")} {
			if err := chownTree(d, tcUser); err != nil {
				return sdk.ProvisionResponse{}, fmt.Errorf("tomcat: %w", err)
			}
		}
	}

	// 5. Tomcat.
	req.Report("start", fmt.Sprintf("starting tomcat on %s (heap %d MiB)", tomcatAddr, cfg.HeapMB), 0.5)
	startCtx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	tc, err := sup.Start(startCtx, process.Spec{
		Name: tomcatName, Path: java,
		Args: javaArgs(l, cfg, req.Server.Name),
		Env: []string{
			"CATALINA_HOME=" + catalinaHome, "CATALINA_BASE=" + l.Base,
			"ROSTER_SERVER=" + req.Server.Name,
		},
		Dir:    l.Base,
		Stdout: l.CatOut, Stderr: l.CatOut,
		// Tomcat's shutdown hook: graceful stop of the connector, then of
		// the applications.
		StopSignal: syscall.SIGTERM,
		User:       userName,
	})
	if err != nil {
		return sdk.ProvisionResponse{}, fmt.Errorf("tomcat: %w", err)
	}
	if err := waitTomcat(startCtx, tc, l, tomcatAddr, statusAddr, cfg); err != nil {
		return sdk.ProvisionResponse{}, err
	}
	httpAddr := tomcatAddr
	eps := sdk.Endpoints{"http": tomcatAddr}

	// 6. The apache front.
	frontAddr := ""
	if cfg.ApacheFront {
		frontAddr = hostPort(cfg.endpointHost(), ports.front)
		req.Report("start", "starting apache in front on "+frontAddr, 0.85)
		p := frontParams{
			Server: req.Server.Name, Layout: l,
			Listen:     hostPort(cfg.ListenAddress, ports.front),
			ServerName: frontAddr,
			Backend:    tomcatAddr,
			Modules:    mods,
			KeepAlive:  max(cfg.KeepAliveTimeout, 1),
		}
		if wwwData != nil {
			p.User = wwwData.Username
		}
		conf, err := renderFront(p)
		if err != nil {
			return sdk.ProvisionResponse{}, err
		}
		if err := os.MkdirAll(l.FrontLogs, 0o755); err != nil {
			return sdk.ProvisionResponse{}, fmt.Errorf("tomcat: %w", err)
		}
		if err := os.WriteFile(l.FrontConf, conf, 0o644); err != nil {
			return sdk.ProvisionResponse{}, fmt.Errorf("tomcat: %w", err)
		}
		ap, err := sup.Start(startCtx, apacheSpec(l))
		if err != nil {
			return sdk.ProvisionResponse{}, fmt.Errorf("tomcat: %w", err)
		}
		if err := ap.WaitReady(startCtx, func(ctx context.Context) error {
			return cfg.Check(ctx, frontAddr)
		}); err != nil {
			if tail := process.Tail(filepath.Join(l.FrontLogs, "error.log"), 1024); tail != "" {
				err = fmt.Errorf("%w; error.log: %s", err, tail)
			}
			return sdk.ProvisionResponse{}, fmt.Errorf("tomcat: apache front: %w", err)
		}
		httpAddr = frontAddr
		eps = sdk.Endpoints{"http": frontAddr, "tomcat": tomcatAddr}
	}

	st := &state{
		Server: req.Server.Name, HTTP: httpAddr, Tomcat: tomcatAddr, Status: statusAddr, Front: frontAddr,
		MaxThreads: cfg.MaxThreads, User: userName, WarSHA256: app.SHA256, Revision: app.Revision,
	}
	if err := rolekit.SaveState(l.State, st); err != nil {
		return sdk.ProvisionResponse{}, fmt.Errorf("tomcat: %w", err)
	}
	e.requests.Reset()
	req.Report("ready", "serving "+cfg.ContextPath+" on "+httpAddr, 1)
	log.Info("tomcat server ready", "http", httpAddr, "tomcat", tomcatAddr, "context_path", cfg.ContextPath,
		"war_sha256", app.SHA256, "user", userName, "apache_front", cfg.ApacheFront)
	return sdk.ProvisionResponse{Endpoints: eps}, nil
}

type portSet struct{ tomcat, status, front int }

// pickPorts takes the configured ports and free ones for the rest.
func pickPorts(cfg settings) (portSet, error) {
	free, err := netutil.FreePorts(5)
	if err != nil {
		return portSet{}, sdk.Errorf(sdk.ErrUnavailable, "tomcat: %v", err)
	}
	taken := map[int]bool{cfg.Port: true, cfg.FrontPort: true}
	next := func() int {
		for i, p := range free {
			if p != 0 && !taken[p] {
				free[i] = 0
				taken[p] = true
				return p
			}
		}
		return 0
	}
	ps := portSet{tomcat: cfg.Port, front: cfg.FrontPort}
	if ps.tomcat == 0 {
		ps.tomcat = next()
	}
	ps.status = next()
	if cfg.ApacheFront && ps.front == 0 {
		ps.front = next()
	}
	return ps, nil
}

// checkWAR checks that a fetched file is a zip archive, as a WAR is:
// Tomcat would otherwise fail to deploy it and answer 404 to everything.
func checkWAR(path string) error {
	z, err := zip.OpenReader(path)
	if err != nil {
		return fmt.Errorf("not a WAR (zip) file: %v", err)
	}
	return z.Close()
}

// deployFailures are what Tomcat logs when the application (or a
// connector) cannot start; Provision gives up at once on them rather than
// polling the health path until its deadline.
var deployFailures = []string{
	"startup failed due to previous errors",
	"Error deploying web application",
	"Error starting the context",
	"java.net.BindException",
}

// waitTomcat waits until Tomcat has started (its status service answers)
// and answers health_path with health_status, or the JVM exits, or Tomcat
// logs a failed deployment or connector, or ctx ends.
func waitTomcat(ctx context.Context, tc *process.Process, l layout, addr, statusAddr string, cfg settings) error {
	port, err := netutil.PortOf(addr)
	if err != nil {
		return sdk.Errorf(sdk.ErrInvalidConfig, "tomcat: %v", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var fatal error
	failed := func() bool {
		line := findLine(filepath.Join(l.Logs, "catalina.log"), deployFailures)
		switch {
		case line == "":
			return false
		case strings.Contains(line, "BindException"):
			fatal = sdk.Errorf(sdk.ErrUnavailable, "tomcat: connector could not bind %s: %s", addr, line)
		default:
			fatal = sdk.Errorf(sdk.ErrInvalidConfig, "tomcat: the application did not start: catalina.log: %s", line)
		}
		cancel()
		return true
	}
	err = tc.WaitReady(ctx, func(ctx context.Context) error {
		if failed() {
			return fatal
		}
		// The status service starts after the application's: once it
		// answers, Tomcat has deployed the application and started its
		// connector, or logged why not.
		sctx, scancel := context.WithTimeout(ctx, 2*time.Second)
		defer scancel()
		if _, err := fetchStatus(sctx, statusAddr, port); err != nil {
			return fmt.Errorf("tomcat still starting: %w", err)
		}
		// With the port taken by another program, the health probe would
		// talk to that program.
		if failed() {
			return fatal
		}
		// A JVM that accepts and never answers must not hold the probe.
		pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
		defer pcancel()
		return cfg.Check(pctx, addr)
	})
	if fatal != nil {
		return fatal
	}
	if err != nil {
		if tail := process.Tail(filepath.Join(l.Logs, "catalina.log"), 1024); tail != "" {
			err = fmt.Errorf("%w; catalina.log: %s", err, tail)
		}
		return fmt.Errorf("tomcat: %w", err)
	}
	return nil
}

// findLine returns the first line of the file holding one of the needles.
func findLine(path string, needles []string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		for _, n := range needles {
			if strings.Contains(line, n) {
				return strings.TrimSpace(line)
			}
		}
	}
	return ""
}

func apacheSpec(l layout) process.Spec {
	out := filepath.Join(l.FrontLogs, "apache2.out.log")
	return process.Spec{
		Name: apacheName, Path: apacheBinary,
		// In the foreground, so that the supervisor's child is apache's
		// parent process and its workers stay in its process group.
		Args:   []string{"-f", l.FrontConf, "-DFOREGROUND"},
		Stdout: out, Stderr: out,
		// SIGTERM: apache's immediate stop; Drain uses graceful-stop
		// (SIGWINCH) before.
		StopSignal: syscall.SIGTERM,
	}
}

// stopAll stops the front, then Tomcat, and says what went wrong.
func stopAll(ctx context.Context, sup *process.Supervisor) error {
	return stopAllWithin(ctx, sup, tomcatStopTime)
}

// stopAllWithin stops the front, then Tomcat within tomcatStop. Tomcat's
// graceful stop waits for every open connection, so a shorter time ends
// one whose drain was given up on.
func stopAllWithin(ctx context.Context, sup *process.Supervisor, tomcatStop time.Duration) error {
	return errors.Join(
		sup.Stop(ctx, apacheName, apacheStopTime),
		sup.Stop(ctx, tomcatName, tomcatStop),
	)
}

// addrs returns the server's addresses: the request's, or what the state
// file recorded.
func addrs(eps sdk.Endpoints, l layout) (*state, error) {
	st, err := loadState(l)
	if err != nil {
		return nil, err
	}
	if st == nil {
		st = &state{}
	}
	if a := eps["http"]; a != "" {
		st.HTTP = a
	}
	if a := eps["tomcat"]; a != "" {
		st.Tomcat = a
	} else if st.Tomcat == "" && st.Front == "" {
		st.Tomcat = st.HTTP
	}
	return st, nil
}

// HealthCheck GETs health_path through the http endpoint (which must
// answer health_status) and reads Tomcat's status for the metrics.
func (r *Role) HealthCheck(ctx context.Context, req sdk.HealthCheckRequest) (sdk.HealthCheckResponse, error) {
	cfg, err := decode(req.Config)
	if err != nil {
		return sdk.HealthCheckResponse{}, err
	}
	e, err := r.servers.Get(req.Server)
	if err != nil {
		return sdk.HealthCheckResponse{}, err
	}
	st, err := addrs(req.Endpoints, layoutOf(req.Server.WorkDir))
	if err != nil {
		return sdk.HealthCheckResponse{}, err
	}
	if st.HTTP == "" || st.Tomcat == "" || st.Status == "" {
		return sdk.HealthCheckResponse{}, sdk.Errorf(sdk.ErrFailedPrecondition, "tomcat: server %s is not provisioned", req.Server.Name)
	}
	port, err := netutil.PortOf(st.Tomcat)
	if err != nil {
		return sdk.HealthCheckResponse{}, sdk.Errorf(sdk.ErrInvalidConfig, "tomcat: %v", err)
	}

	var reasons []string
	metrics := map[string]float64{}
	// Connections first, so that the check's own do not count.
	if n, err := netutil.Established(port); err == nil {
		metrics["open_connections"] = float64(n)
	}
	if st.Front != "" && st.Front == st.HTTP {
		if fp, err := netutil.PortOf(st.Front); err == nil {
			if n, err := netutil.Established(fp); err == nil {
				metrics["front_connections"] = float64(n)
			}
		}
	}
	if err := cfg.Check(ctx, st.HTTP); err != nil {
		reasons = append(reasons, err.Error())
	}
	if s, err := fetchStatus(ctx, st.Status, port); err != nil {
		reasons = append(reasons, err.Error())
	} else {
		maxThreads := s.MaxThreads
		if maxThreads <= 0 {
			maxThreads = float64(cfg.MaxThreads)
		}
		metrics["busy_threads"] = s.BusyThreads
		metrics["current_threads"] = s.CurrentThreads
		metrics["max_threads"] = maxThreads
		metrics["busy_ratio"] = s.BusyThreads / maxThreads
		metrics["heap_used_mb"] = s.HeapUsed / (1 << 20)
		metrics["heap_max_mb"] = s.HeapMax / (1 << 20)
		metrics["requests_per_second"] = e.rate(s.RequestCount, time.Now())
	}
	resp := sdk.HealthCheckResponse{Healthy: len(reasons) == 0, Metrics: metrics}
	if len(reasons) > 0 {
		resp.Reason = strings.Join(reasons, "; ")
	}
	return resp, nil
}

// rate returns the requests per second since the previous sample, less the
// health check's own request; 0 on the first sample after a (re)start.
func (e *entry) rate(count float64, now time.Time) float64 {
	r, _ := e.requests.Observe(rolekit.Sample{At: now, Count: count}, 1)
	return r
}

// Drain stops the server taking new connections and waits for the work in
// flight. With the apache front, apache gets graceful-stop first (it closes
// its listener and finishes the requests it is proxying) and Tomcat is
// stopped once apache has exited. Tomcat gets SIGTERM: its shutdown hook
// closes the connector's listening socket at once, so new connections are
// refused, and waits for the open connections to end (keep-alive ones
// included, until keep_alive_timeout). Drain returns when no established
// connection to Tomcat's (and the front's) port remains, or at the
// deadline; Teardown waits for the JVM to exit.
func (r *Role) Drain(ctx context.Context, req sdk.DrainRequest) (sdk.DrainResponse, error) {
	_, unlock, err := r.servers.Lock(req.Server)
	if err != nil {
		return sdk.DrainResponse{}, err
	}
	defer unlock()
	log := sdk.Logger(ctx).Named("tomcat")
	l := layoutOf(req.Server.WorkDir)
	st, err := addrs(req.Endpoints, l)
	if err != nil {
		return sdk.DrainResponse{}, err
	}
	if st.Tomcat == "" {
		return sdk.DrainResponse{}, nil // never provisioned: nothing to drain
	}
	port, err := netutil.PortOf(st.Tomcat)
	if err != nil {
		return sdk.DrainResponse{}, sdk.Errorf(sdk.ErrInvalidConfig, "tomcat: %v", err)
	}
	frontPort := 0
	if st.Front != "" {
		if frontPort, err = netutil.PortOf(st.Front); err != nil {
			return sdk.DrainResponse{}, sdk.Errorf(sdk.ErrInvalidConfig, "tomcat: %v", err)
		}
	}
	if _, err := os.Stat(l.Run); err != nil {
		return sdk.DrainResponse{}, nil // nothing was started
	}
	sup, err := supervisor(ctx, l)
	if err != nil {
		return sdk.DrainResponse{}, err
	}
	ctx, cancel := rolekit.WithDeadline(ctx, req.Deadline)
	defer cancel()
	open := 0
	if ap, err := sup.Find(apacheName); err == nil && ap.Alive() {
		log.Info("draining: apache graceful-stop", "http", st.Front)
		if err := ap.Signal(syscall.SIGWINCH); err != nil && !errors.Is(err, process.ErrNotRunning) {
			return sdk.DrainResponse{}, fmt.Errorf("tomcat: %w", err)
		}
		if left, err := ap.WaitExited(ctx); err != nil && ctx.Err() == nil {
			return sdk.DrainResponse{}, fmt.Errorf("tomcat: %w", err)
		} else if len(left) > 0 {
			log.Warn("drain deadline passed with apache still serving", "pids", left)
		}
	}
	if frontPort != 0 {
		n, err := netutil.WaitNoConnections(ctx, frontPort, pollPeriod)
		if err != nil {
			return sdk.DrainResponse{}, fmt.Errorf("tomcat: %w", err)
		}
		open += n
	}
	if tc, err := sup.Find(tomcatName); err == nil && tc.Alive() {
		log.Info("draining: tomcat graceful stop", "tomcat", st.Tomcat)
		if err := tc.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, process.ErrNotRunning) {
			return sdk.DrainResponse{}, fmt.Errorf("tomcat: %w", err)
		}
	}
	n, err := netutil.WaitNoConnections(ctx, port, pollPeriod)
	if err != nil {
		return sdk.DrainResponse{}, fmt.Errorf("tomcat: %w", err)
	}
	open += n
	if open > 0 {
		log.Warn("drain deadline passed with connections open", "open_connections", open)
		if saved, err := loadState(l); err == nil && saved != nil {
			saved.DrainLeft = open
			if err := rolekit.SaveState(l.State, saved); err != nil {
				log.Warn("cannot record the drain in the state file", "error", err)
			}
		}
	}
	log.Info("drained", "open_connections", open)
	return sdk.DrainResponse{OpenConnections: open}, nil
}

// Teardown stops the front and Tomcat (each within a deadline, then by
// SIGKILL of its process group) and returns their logs. It is safe after a
// failed Provision and twice.
func (r *Role) Teardown(ctx context.Context, req sdk.TeardownRequest) (sdk.TeardownResponse, error) {
	_, unlock, err := r.servers.Lock(req.Server)
	if err != nil {
		return sdk.TeardownResponse{}, err
	}
	defer unlock()
	l := layoutOf(req.Server.WorkDir)
	return rolekit.Teardown(ctx, "tomcat", l.Run, pollPeriod, func(ctx context.Context, sup *process.Supervisor) error {
		stop := tomcatStopTime
		if st, err := loadState(l); err == nil && st != nil && st.DrainLeft > 0 {
			// Those connections were given up on at the drain deadline.
			stop = abandonStopTime
		}
		return stopAllWithin(ctx, sup, stop)
	},
		sdk.LogFile{Name: "tomcat/catalina.log", Path: filepath.Join(l.Logs, "catalina.log")},
		sdk.LogFile{Name: "tomcat/localhost.log", Path: filepath.Join(l.Logs, "localhost.log")},
		sdk.LogFile{Name: "tomcat/access.log", Path: filepath.Join(l.Logs, "access.log")},
		sdk.LogFile{Name: "tomcat/catalina.out", Path: l.CatOut},
		sdk.LogFile{Name: "apache/access.log", Path: filepath.Join(l.FrontLogs, "access.log")},
		sdk.LogFile{Name: "apache/error.log", Path: filepath.Join(l.FrontLogs, "error.log")},
		sdk.LogFile{Name: "apache/apache2.out.log", Path: filepath.Join(l.FrontLogs, "apache2.out.log")},
	)
}
