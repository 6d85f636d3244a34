// Package web is the built-in `web` role: apache2 and memcached from Debian,
// run as private instances under the server's work directory.
//
// Provision makes sure the packages are there, fetches the document root
// (and optional extra apache configuration) with sdk/artifact, writes a
// private apache configuration (its own Listen, pid file, logs and runtime
// directory; Debian's modules; the event MPM, or prefork where mod_php is
// used; mod_status for loopback clients only), starts memcached, then
// apache, both in the foreground under sdk/process, and returns the
// endpoints `http` and `memcached`.
//
// Configure (the optional fifth method) applies new values of env and the
// keep-alive settings to a running server with a graceful reload of apache:
// core calls it when a pool the config refers to changes, such as the db
// server whose address env hands to the site.
//
// Both daemons run in the foreground as leaders of their own process
// groups, so that Stop accounts for every process: apache's workers, CGI
// scripts, memcached's threads. When the plugin runs as root, apache's
// workers run as www-data and memcached as memcache; apache's parent stays
// root to open its logs and port, as Debian's own service does.
//
// Everything a relaunched plugin process needs is in <work dir>/web: the
// supervisor's state files (pids and start times) and state.json (ports and
// shape). See docs/roles/web.md for the schema and the metrics.
package web

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
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
const Name = "web"

// Version is the plugin's own version.
const Version = "0.1.0"

const subdir = "web"

// Daemon names within the server's supervisor.
const (
	apacheName    = "apache2"
	memcachedName = "memcached"
)

// How long the daemons get to start and to stop before they are killed.
const (
	startTimeout    = 30 * time.Second
	stopTimeout     = 10 * time.Second
	readyPollPeriod = 5 * time.Millisecond
)

// New returns the web role.
func New() sdk.Role {
	return &Role{
		Meta: rolekit.Meta{About: sdk.Info{
			Name:        Name,
			Version:     Version,
			Description: "apache2 and memcached from Debian, as private instances serving a document root",
		}, Schema: Schema},
		servers: rolekit.Servers[entry]{Role: "web"},
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
	// requests is mod_status' Total Accesses, for requests_per_second.
	requests rolekit.Rate
}

// state is what a relaunched plugin process needs about a server.
type state struct {
	Server            string `json:"server"`
	HTTP              string `json:"http"`
	Memcached         string `json:"memcached"`
	MPM               string `json:"mpm"`
	MaxRequestWorkers int    `json:"max_request_workers"`
	DocumentRootSHA   string `json:"document_root_sha256"`
	Revision          string `json:"revision,omitempty"`
	// Fixed holds a digest of each attribute that only Provision applies,
	// as Provision applied it, so that Configure can name the ones that
	// changed without keeping their values (a URL may hold a password).
	Fixed map[string]string `json:"fixed,omitempty"`
}

func supervisor(ctx context.Context, l layout) (*process.Supervisor, error) {
	return rolekit.Supervisor(ctx, l.Run, readyPollPeriod)
}

// Provision installs (or checks) the packages, fetches the site, writes the
// private configuration and starts memcached, then apache. Called again for
// a server, it stops what runs and starts afresh with the new config. On
// failure it stops whatever it started.
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
	log := sdk.Logger(ctx).Named("web")
	l := layoutOf(req.Server.WorkDir)

	// 1. Packages.
	if err := rolekit.EnsurePackages(ctx, req, r.installer, cfg.packages(), cfg.InstallMissing); err != nil {
		return sdk.ProvisionResponse{}, fmt.Errorf("web: %w", err)
	}

	// A second Provision starts afresh.
	sup, err := supervisor(ctx, l)
	if err != nil {
		return sdk.ProvisionResponse{}, err
	}
	if err := stopAll(ctx, sup); err != nil {
		return sdk.ProvisionResponse{}, err
	}
	for _, d := range []string{l.Logs, filepath.Dir(l.Conf)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return sdk.ProvisionResponse{}, fmt.Errorf("web: %w", err)
		}
	}
	defer func() {
		if err != nil {
			// Leave nothing running; the logs stay for Teardown to return.
			_ = stopAll(context.WithoutCancel(ctx), sup)
		}
	}()

	// 2. The document root, then the extra apache configuration.
	req.Report("fetch", "fetching document root "+artifact.Redact(cfg.DocumentRoot), 0.1)
	site, err := artifact.Fetch(ctx, cfg.DocumentRoot, l.Docroot, artifact.Options{
		SHA256:   cfg.DocumentRootSHA256,
		Logger:   log,
		Progress: rolekit.FetchProgress(req, "document root", 0.1, 0.4),
	})
	if err != nil {
		return sdk.ProvisionResponse{}, fmt.Errorf("web: document_root: %w", err)
	}
	if site.Kind != artifact.KindDir {
		return sdk.ProvisionResponse{}, sdk.Errorf(sdk.ErrInvalidConfig, "web: document_root %s is a single file: want a directory, a .tar.gz or a git repository", artifact.Redact(cfg.DocumentRoot))
	}
	hasExtra := cfg.ApacheConfig != ""
	if err := os.RemoveAll(l.ExtraDir); err != nil {
		return sdk.ProvisionResponse{}, fmt.Errorf("web: %w", err)
	}
	if hasExtra {
		req.Report("fetch", "fetching apache_config "+artifact.Redact(cfg.ApacheConfig), 0.5)
		extra, err := artifact.Fetch(ctx, cfg.ApacheConfig, l.ExtraDir, artifact.Options{SHA256: cfg.ApacheConfigSHA256, Logger: log})
		if err != nil {
			return sdk.ProvisionResponse{}, fmt.Errorf("web: apache_config: %w", err)
		}
		if extra.Kind == artifact.KindFile {
			// One file: make it the directory's only *.conf.
			tmp := l.ExtraDir + ".conf"
			if err := os.Rename(l.ExtraDir, tmp); err != nil {
				return sdk.ProvisionResponse{}, fmt.Errorf("web: %w", err)
			}
			if err := os.MkdirAll(l.ExtraDir, 0o755); err != nil {
				return sdk.ProvisionResponse{}, fmt.Errorf("web: %w", err)
			}
			if err := os.Rename(tmp, filepath.Join(l.ExtraDir, "extra.conf")); err != nil {
				return sdk.ProvisionResponse{}, fmt.Errorf("web: %w", err)
			}
		}
	}

	// 3. Users and permissions.
	wwwData, err := rolekit.RunAs("www-data")
	if err != nil {
		return sdk.ProvisionResponse{}, sdk.Errorf(sdk.ErrNotFound, "web: %v", err)
	}
	memcache, err := rolekit.RunAs("memcache")
	if err != nil {
		return sdk.ProvisionResponse{}, sdk.Errorf(sdk.ErrNotFound, "web: %v", err)
	}
	mcUser := userName(memcache)
	if wwwData != nil {
		if err := makeReadable(l.Docroot, wwwData); err != nil {
			return sdk.ProvisionResponse{}, sdk.Errorf(sdk.ErrInvalidConfig, "web: %v", err)
		}
	}

	// 4. Ports, then the configuration.
	httpPort, mcPort := cfg.Port, cfg.MemcachedPort
	if httpPort == 0 || mcPort == 0 {
		free, err := netutil.FreePorts(2)
		if err != nil {
			return sdk.ProvisionResponse{}, sdk.Errorf(sdk.ErrUnavailable, "web: %v", err)
		}
		if httpPort == 0 {
			httpPort = free[0]
			if httpPort == mcPort {
				httpPort = free[1]
			}
		}
		if mcPort == 0 {
			mcPort = free[1]
			if mcPort == httpPort {
				mcPort = free[0]
			}
		}
	}
	mcAddr := listenAddr("127.0.0.1", mcPort)
	httpAddr := listenAddr(cfg.endpointHost(), httpPort)
	conf, err := apacheConfig(cfg, l, req.Server.Name, httpPort, httpAddr, mcAddr, userName(wwwData))
	if err != nil {
		return sdk.ProvisionResponse{}, err
	}
	if err := os.WriteFile(l.Conf, conf, 0o644); err != nil {
		return sdk.ProvisionResponse{}, fmt.Errorf("web: %w", err)
	}

	// 5. memcached, then apache.
	req.Report("start", "starting memcached on "+mcAddr, 0.6)
	startCtx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	mc, err := sup.Start(startCtx, memcachedSpec(l, cfg, mcPort, mcUser))
	if err != nil {
		return sdk.ProvisionResponse{}, fmt.Errorf("web: %w", err)
	}
	if err := mc.WaitReady(startCtx, func(ctx context.Context) error {
		_, err := memcachedStats(ctx, mcAddr)
		return err
	}); err != nil {
		return sdk.ProvisionResponse{}, fmt.Errorf("web: memcached: %w", err)
	}
	req.Report("start", "starting apache ("+cfg.MPM+" MPM) on "+httpAddr, 0.8)
	ap, err := sup.Start(startCtx, apacheSpec(l))
	if err != nil {
		return sdk.ProvisionResponse{}, fmt.Errorf("web: %w", err)
	}
	if err := ap.WaitReady(startCtx, func(ctx context.Context) error {
		_, err := fetchApacheStatus(ctx, httpAddr)
		return err
	}); err != nil {
		if tail := process.Tail(l.ErrorLog, 1024); tail != "" {
			err = fmt.Errorf("%w; error.log: %s", err, tail)
		}
		return sdk.ProvisionResponse{}, fmt.Errorf("web: apache: %w", err)
	}

	st := &state{
		Server: req.Server.Name, HTTP: httpAddr, Memcached: mcAddr, MPM: cfg.MPM,
		MaxRequestWorkers: cfg.MaxRequestWorkers, DocumentRootSHA: site.SHA256, Revision: site.Revision,
		Fixed: cfg.fixed(),
	}
	if err := rolekit.SaveState(l.State, st); err != nil {
		return sdk.ProvisionResponse{}, fmt.Errorf("web: %w", err)
	}
	e.requests.Reset()
	req.Report("ready", "apache on "+httpAddr+", memcached on "+mcAddr, 1)
	log.Info("web server ready", "http", httpAddr, "memcached", mcAddr, "mpm", cfg.MPM, "document_root_sha256", site.SHA256)
	return sdk.ProvisionResponse{Endpoints: sdk.Endpoints{"http": httpAddr, "memcached": mcAddr}}, nil
}

// apacheConfig renders httpd.conf for the server: Provision writes it,
// Configure renders it again from new values and the ports Provision chose.
func apacheConfig(cfg settings, l layout, server string, httpPort int, httpAddr, mcAddr, user string) ([]byte, error) {
	mods, err := modulesFor(cfg)
	if err != nil {
		return nil, sdk.Errorf(sdk.ErrNotFound, "web: %v", err)
	}
	serverLimit, threads := eventShape(cfg.MaxRequestWorkers)
	return renderApache(apacheParams{
		settings:      cfg,
		Layout:        l,
		Listen:        listenAddr(cfg.ListenAddress, httpPort),
		Modules:       mods,
		User:          user,
		Group:         user,
		ServerName:    httpAddr,
		ServerLimit:   serverLimit,
		ThreadsPer:    threads,
		MemcachedAddr: mcAddr,
		Server:        server,
		HasExtra:      cfg.ApacheConfig != "",
	})
}

func memcachedSpec(l layout, cfg settings, port int, user string) process.Spec {
	args := []string{"-m", strconv.Itoa(cfg.MemcachedMB), "-l", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "0", "-v"}
	if user != "" {
		args = append(args, "-u", user)
	}
	return process.Spec{
		Name: memcachedName, Path: memcachedBinary, Args: args,
		Stdout: l.McLog, Stderr: l.McLog,
	}
}

func apacheSpec(l layout) process.Spec {
	out := filepath.Join(l.Logs, "apache2.out.log")
	return process.Spec{
		Name: apacheName, Path: apacheBinary,
		// In the foreground, so that the supervisor's child is apache's
		// parent process and its workers stay in its process group.
		Args:   []string{"-f", l.Conf, "-DFOREGROUND"},
		Stdout: out, Stderr: out,
		// SIGTERM: apache's immediate stop, which kills its workers; Drain
		// uses graceful-stop (SIGWINCH) before.
		StopSignal: syscall.SIGTERM,
	}
}

// stopAll stops apache, then memcached, and says what went wrong.
func stopAll(ctx context.Context, sup *process.Supervisor) error {
	return errors.Join(
		sup.Stop(ctx, apacheName, stopTimeout),
		sup.Stop(ctx, memcachedName, stopTimeout),
	)
}

// endpoints returns the server's addresses: the request's, or what the
// state file recorded.
func endpoints(eps sdk.Endpoints, l layout) (httpAddr, mcAddr string, st *state, err error) {
	st, err = rolekit.LoadState[state](l.State)
	if err != nil {
		return "", "", nil, fmt.Errorf("web: %w", err)
	}
	httpAddr, mcAddr = eps["http"], eps["memcached"]
	if st != nil {
		if httpAddr == "" {
			httpAddr = st.HTTP
		}
		if mcAddr == "" {
			mcAddr = st.Memcached
		}
	}
	return httpAddr, mcAddr, st, nil
}

// HealthCheck GETs health_path (which must answer health_status), asks
// memcached for its stats, and reads mod_status for the metrics.
func (r *Role) HealthCheck(ctx context.Context, req sdk.HealthCheckRequest) (sdk.HealthCheckResponse, error) {
	cfg, err := decode(req.Config)
	if err != nil {
		return sdk.HealthCheckResponse{}, err
	}
	e, err := r.servers.Get(req.Server)
	if err != nil {
		return sdk.HealthCheckResponse{}, err
	}
	l := layoutOf(req.Server.WorkDir)
	httpAddr, mcAddr, st, err := endpoints(req.Endpoints, l)
	if err != nil {
		return sdk.HealthCheckResponse{}, err
	}
	if httpAddr == "" || mcAddr == "" {
		return sdk.HealthCheckResponse{}, sdk.Errorf(sdk.ErrFailedPrecondition, "web: server %s is not provisioned", req.Server.Name)
	}
	workers := cfg.MaxRequestWorkers
	if st != nil && st.MaxRequestWorkers > 0 {
		workers = st.MaxRequestWorkers
	}

	var reasons []string
	metrics := map[string]float64{}
	if err := cfg.Check(ctx, httpAddr); err != nil {
		reasons = append(reasons, err.Error())
	}
	if stats, err := memcachedStats(ctx, mcAddr); err != nil {
		reasons = append(reasons, err.Error())
	} else {
		// Less the health check's own connection.
		metrics["memcached_curr_connections"] = max(stats["curr_connections"]-1, 0)
		if lookups := stats["get_hits"] + stats["get_misses"]; lookups > 0 {
			metrics["memcached_hit_ratio"] = stats["get_hits"] / lookups
		} else {
			metrics["memcached_hit_ratio"] = 0
		}
	}
	if s, err := fetchApacheStatus(ctx, httpAddr); err != nil {
		reasons = append(reasons, err.Error())
	} else {
		// The status request occupies a worker itself.
		busy := max(s.BusyWorkers-1, 0)
		metrics["busy_workers"] = busy
		metrics["idle_workers"] = s.IdleWorkers
		metrics["busy_ratio"] = busy / float64(workers)
		metrics["requests_per_second"] = e.rate(s, time.Now())
	}
	resp := sdk.HealthCheckResponse{Healthy: len(reasons) == 0, Metrics: metrics}
	if len(reasons) > 0 {
		resp.Reason = strings.Join(reasons, "; ")
	}
	return resp, nil
}

// rate returns the requests per second since the previous sample, less the
// two requests each health check makes; on the first sample after a
// (re)start, mod_status's average since apache started.
func (e *entry) rate(s apacheStatus, now time.Time) float64 {
	if r, ok := e.requests.Observe(rolekit.Sample{At: now, Count: s.TotalAccesses}, 2); ok {
		return r
	}
	return s.ReqPerSec
}

// Drain stops apache gracefully (graceful-stop: it closes its listener at
// once and lets the requests in flight finish), then waits until apache has
// exited and no connection to its port remains, or the deadline passes.
// memcached keeps running for the requests in flight; Teardown stops it.
func (r *Role) Drain(ctx context.Context, req sdk.DrainRequest) (sdk.DrainResponse, error) {
	_, unlock, err := r.servers.Lock(req.Server)
	if err != nil {
		return sdk.DrainResponse{}, err
	}
	defer unlock()
	log := sdk.Logger(ctx).Named("web")
	l := layoutOf(req.Server.WorkDir)
	httpAddr, _, _, err := endpoints(req.Endpoints, l)
	if err != nil {
		return sdk.DrainResponse{}, err
	}
	if httpAddr == "" {
		return sdk.DrainResponse{}, nil // never provisioned: nothing to drain
	}
	port, err := netutil.PortOf(httpAddr)
	if err != nil {
		return sdk.DrainResponse{}, sdk.Errorf(sdk.ErrInvalidConfig, "web: %v", err)
	}
	sup, err := supervisor(ctx, l)
	if err != nil {
		return sdk.DrainResponse{}, err
	}
	ctx, cancel := rolekit.WithDeadline(ctx, req.Deadline)
	defer cancel()
	if ap, err := sup.Find(apacheName); err == nil && ap.Alive() {
		log.Info("draining: apache graceful-stop", "http", httpAddr)
		if err := ap.Signal(syscall.SIGWINCH); err != nil && !errors.Is(err, process.ErrNotRunning) {
			return sdk.DrainResponse{}, fmt.Errorf("web: %w", err)
		}
		if left, err := ap.WaitExited(ctx); err != nil {
			return sdk.DrainResponse{}, fmt.Errorf("web: %w", err)
		} else if len(left) > 0 {
			log.Warn("drain deadline passed with apache still serving", "pids", left)
		}
	}
	open, err := netutil.WaitNoConnections(ctx, port, readyPollPeriod*2)
	if err != nil {
		return sdk.DrainResponse{}, fmt.Errorf("web: %w", err)
	}
	log.Info("drained", "open_connections", open)
	return sdk.DrainResponse{OpenConnections: open}, nil
}

// Teardown stops apache and memcached (each within a deadline, then by
// SIGKILL of its process group) and returns their logs. It is safe after a
// failed Provision and twice.
func (r *Role) Teardown(ctx context.Context, req sdk.TeardownRequest) (sdk.TeardownResponse, error) {
	_, unlock, err := r.servers.Lock(req.Server)
	if err != nil {
		return sdk.TeardownResponse{}, err
	}
	defer unlock()
	l := layoutOf(req.Server.WorkDir)
	return rolekit.Teardown(ctx, "web", l.Run, readyPollPeriod, stopAll,
		sdk.LogFile{Name: "apache/access.log", Path: l.AccessLog},
		sdk.LogFile{Name: "apache/error.log", Path: l.ErrorLog},
		sdk.LogFile{Name: "apache/apache2.out.log", Path: filepath.Join(l.Logs, "apache2.out.log")},
		sdk.LogFile{Name: "memcached/memcached.log", Path: l.McLog},
	)
}
