// Package haproxy is the `haproxy` balancer: ready servers are added to a
// haproxy backend at run time through its admin socket (`add server`), and
// leaving servers are drained there before they halt.
//
// In managed mode (frontend = "…") Roster renders a configuration with one
// frontend and one backend under <data_dir>/balancers/<name>/ and runs its
// own haproxy, in its own session so that it outlives the orchestrator:
// Open starts it only when it is not running, Close leaves it running, and
// Stop stops it. In attach mode (socket = "…") Roster drives a haproxy that
// someone else runs and touches only the backends the block names.
//
// Import it for its side effect, which registers the type with
// core/balancer:
//
//	import _ "github.com/rosterhq/roster/core/balancer/haproxy"
package haproxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/rosterhq/roster/core/balancer"
	"github.com/rosterhq/roster/core/config"
	"github.com/rosterhq/roster/sdk/fsutil"
)

// Type is the balancer type this package implements.
const Type = "haproxy"

func init() {
	balancer.RegisterType(Type, func(ctx context.Context, cfg config.Balancer, opts balancer.Options) (balancer.Balancer, error) {
		c, diags := DecodeConfig(cfg.Body)
		if diags.HasErrors() {
			return nil, fmt.Errorf("balancer %q: %w", cfg.Name, diags)
		}
		// Relative paths are relative to the file that declares the block.
		if c.Socket != "" && !filepath.IsAbs(c.Socket) && cfg.Range.Filename != "" {
			c.Socket = filepath.Join(filepath.Dir(cfg.Range.Filename), c.Socket)
		}
		return New(ctx, cfg.Name, c, opts)
	})
}

// Balancer is a haproxy balancer.
type Balancer struct {
	name string
	cfg  Config
	api  runtimeAPI
	log  hclog.Logger
	// proc is the haproxy Roster runs; nil in attach mode.
	proc *managed

	// mu serialises the command sequences that change a server, so that a
	// Register and a Deregister of one server do not interleave.
	mu sync.Mutex
	// startMu keeps two callers from starting haproxy at once.
	startMu sync.Mutex
	// roleMu guards role, the role the managed backend serves ("" until
	// one registers).
	roleMu sync.Mutex
	role   string
}

var _ balancer.Balancer = (*Balancer)(nil)

// New opens a haproxy balancer. In managed mode it renders the
// configuration and starts haproxy unless it already runs (with a changed
// configuration, it replaces the running haproxy without dropping a
// connection); in attach mode it checks that the socket answers and that
// the named backends exist.
func New(ctx context.Context, name string, cfg Config, opts balancer.Options) (*Balancer, error) {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	b := &Balancer{name: name, cfg: cfg, log: opts.Logger.Named("balancer_haproxy").With("balancer", name)}
	if !cfg.Managed() {
		b.api = runtimeAPI{socket: cfg.Socket}
		if _, err := b.api.ping(ctx); err != nil {
			return nil, fmt.Errorf("balancer %q: attaching to haproxy: %w", name, err)
		}
		for _, role := range sortedKeys(cfg.Backends) {
			if _, err := b.api.servers(ctx, cfg.Backends[role]); err != nil {
				return nil, fmt.Errorf("balancer %q: backend %q for role %q: %w", name, cfg.Backends[role], role, err)
			}
		}
		return b, nil
	}
	if err := b.openManaged(ctx, opts.DataDir); err != nil {
		return nil, fmt.Errorf("balancer %q: %w", name, err)
	}
	return b, nil
}

func (b *Balancer) openManaged(ctx context.Context, dataDir string) error {
	if dataDir == "" {
		return errors.New("a managed haproxy needs the orchestrator's data_dir for its files")
	}
	dir, err := filepath.Abs(filepath.Join(dataDir, "balancers", b.name))
	if err != nil {
		return err
	}
	if p := filepath.Join(dir, socketFile); len(p) > maxSocketPath {
		return fmt.Errorf("the admin socket path %s is longer than the %d bytes a unix socket allows; use a shorter data_dir", p, maxSocketPath)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	bin, err := findBinary(b.cfg.Binary)
	if err != nil {
		return err
	}
	m := &managed{dir: dir, bin: bin}
	b.proc = m
	b.api = runtimeAPI{socket: m.path(socketFile)}
	st, err := m.loadState()
	if err != nil {
		return err
	}
	b.role = st.Role
	if b.cfg.Role != "" {
		b.role = b.cfg.Role
	}
	if st.Role != b.role {
		st.Role = b.role
		if err := m.saveState(st); err != nil {
			return err
		}
	}

	base := b.render(nil)
	sum := digest(base)
	pid := m.running(ctx)
	switch {
	case pid > 0 && st.ConfigSHA256 == sum:
		b.log.Info("attached to the running haproxy", "pid", pid, "dir", dir)
		return nil
	case pid > 0:
		// The block changed since haproxy started. The new process takes
		// over the listeners and the servers (a dynamic server lives only
		// in the process that added it); the old one finishes its sessions.
		servers, err := b.api.servers(ctx, b.backend())
		if err != nil {
			return err
		}
		var carried []serverState
		for _, s := range servers {
			if s.Admin&(adminForcedMaint|adminForcedDrain) == 0 {
				carried = append(carried, s)
			}
		}
		sort.Slice(carried, func(i, j int) bool { return carried[i].Name < carried[j].Name })
		if err := fsutil.WriteFileAtomic(m.path(configFile), []byte(b.render(carried)), 0o600); err != nil {
			return err
		}
		if err := m.start(ctx, pid); err != nil {
			return err
		}
		b.log.Info("replaced the running haproxy with a new configuration", "old_pid", pid, "servers", len(carried), "dir", dir)
	default:
		return b.startFresh(ctx)
	}
	st.ConfigSHA256 = sum
	return m.saveState(st)
}

// startFresh starts the managed haproxy with an empty backend.
func (b *Balancer) startFresh(ctx context.Context) error {
	m := b.proc
	base := b.render(nil)
	if err := fsutil.WriteFileAtomic(m.path(configFile), []byte(base), 0o600); err != nil {
		return err
	}
	if err := m.start(ctx, 0); err != nil {
		return err
	}
	b.log.Info("started haproxy", "frontend", b.cfg.Frontend, "dir", m.dir)
	st, err := m.loadState()
	if err != nil {
		return err
	}
	st.ConfigSHA256 = digest(base)
	return m.saveState(st)
}

// revive starts the managed haproxy again when it died (a crash, a
// reboot, someone's kill): its backend comes back empty, List says so, and
// reconcile registers the ready servers again.
func (b *Balancer) revive(ctx context.Context) error {
	if b.proc == nil {
		return nil
	}
	if _, err := b.api.ping(ctx); err == nil {
		return nil
	}
	b.startMu.Lock()
	defer b.startMu.Unlock()
	if b.proc.running(ctx) > 0 {
		return nil
	}
	b.log.Warn("haproxy is not running; starting it again")
	if err := b.startFresh(ctx); err != nil {
		return fmt.Errorf("balancer %q: restarting haproxy: %w", b.name, err)
	}
	return nil
}

// render renders the managed configuration with servers.
func (b *Balancer) render(servers []serverState) string {
	m := b.proc
	var sb strings.Builder
	err := managedTemplate.Execute(&sb, renderData{
		Name:         b.name,
		Socket:       m.path(socketFile),
		PIDFile:      m.path(pidFile),
		MaxConn:      b.cfg.MaxConn,
		Mode:         b.cfg.Mode,
		Connect:      ms(b.cfg.Timeouts.Connect),
		Client:       ms(b.cfg.Timeouts.Client),
		Server:       ms(b.cfg.Timeouts.Server),
		Check:        ms(b.cfg.Timeouts.Check),
		FrontendName: "fe_" + b.name,
		Bind:         b.cfg.Frontend,
		Backend:      b.backend(),
		Balance:      b.cfg.Balance,
		CheckPath:    b.cfg.CheckPath,
		ServerArgs:   strings.Join(b.serverArgs(), " "),
		Servers:      servers,
	})
	if err != nil {
		// The template is fixed and its data plain strings.
		panic(err)
	}
	return sb.String()
}

// backend is the managed haproxy's one backend.
func (b *Balancer) backend() string { return "be_" + b.name }

// serverArgs are the settings of every server Roster adds.
func (b *Balancer) serverArgs() []string {
	args := []string{"check", "inter", ms(b.cfg.CheckInterval)}
	if b.cfg.ServerMaxConn > 0 {
		args = append(args, "maxconn", strconv.Itoa(b.cfg.ServerMaxConn))
	}
	return args
}

// Name is the balancer's name.
func (b *Balancer) Name() string { return b.name }

// Type is "haproxy".
func (b *Balancer) Type() string { return Type }

// Managed reports whether Roster runs this haproxy (rather than attaching to
// one).
func (b *Balancer) Managed() bool { return b.proc != nil }

// Dir is where a managed haproxy's configuration, pid file, admin socket and
// log are ("" in attach mode).
func (b *Balancer) Dir() string {
	if b.proc == nil {
		return ""
	}
	return b.proc.dir
}

// backendFor returns role's backend. bind lets the first role to register
// take a managed backend that no role has yet. ok is false when role has no
// backend here.
func (b *Balancer) backendFor(role string, bind bool) (string, bool, error) {
	if b.proc == nil {
		be, ok := b.cfg.Backends[role]
		if !ok && bind {
			return "", false, fmt.Errorf("balancer %q has no backend for role %q; add it to backends = { %s = \"<backend>\" }", b.name, role, role)
		}
		return be, ok, nil
	}
	b.roleMu.Lock()
	defer b.roleMu.Unlock()
	if b.role == "" && bind {
		st, err := b.proc.loadState()
		if err != nil {
			return "", false, err
		}
		st.Role = role
		if err := b.proc.saveState(st); err != nil {
			return "", false, err
		}
		b.role = role
		b.log.Info("backend serves role", "role", role, "backend", b.backend())
	}
	if b.role != role {
		if bind {
			return "", false, fmt.Errorf("balancer %q routes role %q; role %q needs a balancer of its own (a managed haproxy has one frontend for one role)", b.name, b.role, role)
		}
		return "", false, nil
	}
	return b.backend(), true, nil
}

// serverName checks a server name for haproxy.
func serverName(server string) error {
	if !nameRe.MatchString(server) {
		return fmt.Errorf("server name %q is not a haproxy server name (letters, digits and _ . : -)", server)
	}
	return nil
}

// resolve turns an endpoint into the ip and port haproxy connects to:
// dynamic servers are added without DNS resolution, so a host name is
// resolved here, once.
func resolve(ctx context.Context, server, endpoint string) (net.IP, int, error) {
	host, port, err := net.SplitHostPort(endpoint)
	if err != nil {
		return nil, 0, fmt.Errorf("server %s: endpoint %q is not host:port: %w", server, endpoint, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return nil, 0, fmt.Errorf("server %s: endpoint %q: %q is not a port from 1 to 65535", server, endpoint, port)
	}
	if host == "" {
		return nil, 0, fmt.Errorf("server %s: endpoint %q has no host", server, endpoint)
	}
	if ip := net.ParseIP(host); ip != nil {
		return ip, p, nil
	}
	ips, err := net.DefaultResolver.LookupIP(ctx, "ip", host)
	if err != nil || len(ips) == 0 {
		return nil, 0, fmt.Errorf("server %s: endpoint %q: cannot resolve %q: %v", server, endpoint, host, err)
	}
	for _, ip := range ips {
		if ip.To4() != nil {
			return ip, p, nil
		}
	}
	return ips[0], p, nil
}

// addr is an ip and port the way haproxy's server lines read them.
func addr(ip net.IP, port int) string {
	if ip.To4() == nil {
		return "ipv6@" + ip.String() + ":" + strconv.Itoa(port)
	}
	return ip.String() + ":" + strconv.Itoa(port)
}

// Register adds server to role's backend (`add server`, `enable health`,
// `enable server`). A server that is there already is pointed at endpoint
// and set ready again, which also ends a drain.
func (b *Balancer) Register(ctx context.Context, role, server, endpoint string) error {
	if err := serverName(server); err != nil {
		return fmt.Errorf("balancer %q: %w", b.name, err)
	}
	ip, port, err := resolve(ctx, server, endpoint)
	if err != nil {
		return fmt.Errorf("balancer %q: %w", b.name, err)
	}
	if err := b.revive(ctx); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	be, _, err := b.backendFor(role, true)
	if err != nil {
		return err
	}
	target := be + "/" + server
	cur, exists, err := b.api.server(ctx, be, server)
	if err != nil {
		return fmt.Errorf("balancer %q: %w", b.name, err)
	}
	if !exists {
		cmd := "add server " + target + " " + addr(ip, port) + " " + strings.Join(b.serverArgs(), " ")
		out, err := b.api.exec(ctx, cmd)
		if err != nil {
			return fmt.Errorf("balancer %q: %w", b.name, err)
		}
		if !strings.Contains(out, "New server registered") {
			return fmt.Errorf("balancer %q: registering %s at %s: haproxy: %s", b.name, target, endpoint, oneLine(out))
		}
		// A dynamic server starts in maintenance with its checks off.
		for _, c := range []string{"enable health " + target, "enable server " + target} {
			if err := b.api.do(ctx, c); err != nil {
				return fmt.Errorf("balancer %q: registering %s: %w", b.name, target, err)
			}
		}
		b.log.Info("server added", "role", role, "server", server, "endpoint", addr(ip, port))
		return nil
	}
	if !ip.Equal(net.ParseIP(cur.Addr)) || strconv.Itoa(port) != cur.Port {
		// haproxy tells what it changed; anything else is an error.
		out, err := b.api.exec(ctx, fmt.Sprintf("set server %s addr %s port %d", target, ip, port))
		if err == nil && !strings.Contains(out, "changed from") {
			err = answerErr("set server "+target+" addr", out)
		}
		if err != nil {
			return fmt.Errorf("balancer %q: moving %s to %s: %w", b.name, target, endpoint, err)
		}
		b.log.Info("server moved", "role", role, "server", server, "from", cur.Endpoint(), "to", endpoint)
	}
	if cur.Admin&(adminForcedMaint|adminForcedDrain) != 0 {
		if err := b.api.do(ctx, "enable health "+target); err != nil {
			return fmt.Errorf("balancer %q: %w", b.name, err)
		}
		if err := b.api.do(ctx, "set server "+target+" state ready"); err != nil {
			return fmt.Errorf("balancer %q: %w", b.name, err)
		}
		b.log.Info("server ready again", "role", role, "server", server)
	}
	return nil
}

// Drain sets server to drain (haproxy sends it no new sessions; health
// checks go on) and waits until its open and queued sessions reach zero.
// An unknown server has nothing to drain.
func (b *Balancer) Drain(ctx context.Context, role, server string) error {
	be, ok, err := b.backendFor(role, false)
	if err != nil || !ok {
		return err
	}
	target := be + "/" + server
	b.mu.Lock()
	cur, exists, err := b.api.server(ctx, be, server)
	if err == nil && exists && cur.Admin&(adminForcedMaint|adminForcedDrain) == 0 {
		err = b.api.do(ctx, "set server "+target+" state drain")
		if err == nil {
			b.log.Info("server draining", "role", role, "server", server)
		}
	}
	b.mu.Unlock()
	if errors.Is(err, errNoServer) || (err == nil && !exists) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("balancer %q: draining %s: %w", b.name, target, err)
	}
	wait := 5 * time.Millisecond
	for {
		sessions, err := b.api.sessions(ctx, be)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("balancer %q: draining %s: %w", b.name, target, err)
		}
		n, there := sessions[server]
		if !there || n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			b.log.Warn("drain ended with sessions open", "role", role, "server", server, "sessions", n)
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*2, 200*time.Millisecond)
	}
}

// Deregister removes server from role's backend at once: maintenance (no
// traffic, no checks), the sessions still open are shut, and `del server`,
// repeated while haproxy still holds connections to it.
func (b *Balancer) Deregister(ctx context.Context, role, server string) error {
	be, ok, err := b.backendFor(role, false)
	if err != nil || !ok {
		return err
	}
	target := be + "/" + server
	if _, hasDeadline := ctx.Deadline(); !hasDeadline {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	cur, exists, err := b.api.server(ctx, be, server)
	if err != nil {
		return fmt.Errorf("balancer %q: %w", b.name, err)
	}
	if !exists {
		return nil
	}
	if cur.Admin&adminForcedMaint == 0 {
		if err := b.api.do(ctx, "set server "+target+" state maint"); err != nil {
			if errors.Is(err, errNoServer) {
				return nil
			}
			return fmt.Errorf("balancer %q: deregistering %s: %w", b.name, target, err)
		}
	}
	wait := 5 * time.Millisecond
	for shut := false; ; {
		out, err := b.api.exec(ctx, "del server "+target)
		if err != nil {
			return fmt.Errorf("balancer %q: deregistering %s: %w", b.name, target, err)
		}
		msg := strings.TrimSpace(out)
		switch {
		case strings.HasPrefix(msg, "Server deleted"), strings.HasPrefix(msg, "No such server"):
			b.log.Info("server removed", "role", role, "server", server)
			return nil
		case !shut && strings.Contains(msg, "connections"):
			// Sessions a drain did not wait for end now.
			shut = true
			if err := b.api.do(ctx, "shutdown sessions server "+target); err != nil && !errors.Is(err, errNoServer) {
				return fmt.Errorf("balancer %q: deregistering %s: %w", b.name, target, err)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("balancer %q: deregistering %s: haproxy: %s (%w)", b.name, target, oneLine(msg), ctx.Err())
		case <-time.After(wait):
		}
		wait = min(wait*2, 200*time.Millisecond)
	}
}

// List returns role's servers as haproxy has them, with their open sessions.
func (b *Balancer) List(ctx context.Context, role string) ([]balancer.Backend, error) {
	be, ok, err := b.backendFor(role, false)
	if err != nil || !ok {
		return []balancer.Backend{}, err
	}
	if err := b.revive(ctx); err != nil {
		return nil, err
	}
	servers, err := b.api.servers(ctx, be)
	if err != nil {
		return nil, fmt.Errorf("balancer %q: %w", b.name, err)
	}
	sessions, err := b.api.sessions(ctx, be)
	if err != nil {
		return nil, fmt.Errorf("balancer %q: %w", b.name, err)
	}
	out := make([]balancer.Backend, 0, len(servers))
	for _, s := range servers {
		out = append(out, balancer.Backend{
			Role:     role,
			Server:   s.Name,
			Endpoint: s.Endpoint(),
			Draining: s.Admin&(adminForcedMaint|adminForcedDrain) != 0,
			Sessions: sessions[s.Name],
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Server < out[j].Server })
	return out, nil
}

// Close releases nothing that matters: haproxy keeps running and routing, so
// that traffic flows while the orchestrator restarts. Stop stops it.
func (b *Balancer) Close() error { return nil }

// Stop stops a managed haproxy: it stops listening at once and lets the open
// sessions end, until ctx is done (then SIGTERM, then SIGKILL). `roster up`
// calls it on Ctrl-C; an orchestrator that only restarts does not. In attach
// mode it does nothing: that haproxy is not Roster's.
func (b *Balancer) Stop(ctx context.Context) error {
	if b.proc == nil {
		return nil
	}
	if err := b.proc.stop(ctx); err != nil {
		return fmt.Errorf("balancer %q: %w", b.name, err)
	}
	b.log.Info("stopped haproxy")
	return nil
}

// Stopper is what `roster up` checks a balancer for to stop it on exit.
type Stopper interface {
	Stop(ctx context.Context) error
}

var _ Stopper = (*Balancer)(nil)
