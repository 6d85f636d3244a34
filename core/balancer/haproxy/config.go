package haproxy

import (
	"fmt"
	"net"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/rosterhq/roster/core/config"
)

// Defaults of the block's optional settings.
const (
	DefaultBalance        = "roundrobin"
	DefaultMode           = "http"
	DefaultMaxConn        = 4096
	DefaultCheckInterval  = 2 * time.Second
	DefaultConnectTimeout = 5 * time.Second
	DefaultClientTimeout  = 60 * time.Second
	DefaultServerTimeout  = 60 * time.Second
	DefaultCheckTimeout   = 2 * time.Second
)

// Balances are the balance algorithms a block may choose: haproxy adds
// servers at run time only to backends whose algorithm is dynamic, which
// rules out static-rr and the hashes.
var Balances = []string{"roundrobin", "leastconn", "random", "first"}

// Modes are the proxy modes a managed haproxy can run.
var Modes = []string{"http", "tcp"}

// Config is a decoded `balancer "haproxy" "<name>"` block.
//
// Managed mode (frontend set): Roster renders a configuration with one
// frontend and one backend and runs its own haproxy. Attach mode (socket
// set): Roster drives an haproxy someone else runs, through its admin
// socket, and touches only the backends that backends names.
type Config struct {
	// Frontend is the address the managed haproxy listens on ("127.0.0.1:8080"
	// or ":8080" for every interface).
	Frontend string
	// Role pins the managed backend to one role; empty: the first role that
	// registers takes it.
	Role string
	// Socket is the admin socket of an haproxy to attach to.
	Socket string
	// Backends maps role -> backend in attach mode.
	Backends map[string]string
	// Mode is "http" (default) or "tcp".
	Mode string
	// Balance is the backend's algorithm: roundrobin (default), leastconn…
	Balance string
	// CheckPath makes the health check an HTTP GET of this path; empty: a
	// TCP connect check.
	CheckPath string
	// CheckInterval is the time between two health checks of a server.
	CheckInterval time.Duration
	// MaxConn is the managed haproxy's global connection limit.
	MaxConn int
	// ServerMaxConn caps the concurrent connections haproxy opens to each
	// server (0: no cap); the excess waits in haproxy's queue instead of
	// overloading the server.
	ServerMaxConn int
	// Timeouts are the managed haproxy's timeouts.
	Timeouts Timeouts
	// Binary is the haproxy executable (default: haproxy on PATH, then
	// /usr/sbin/haproxy).
	Binary string

	Range hcl.Range
}

// Timeouts are a managed haproxy's timeouts (`timeouts { … }`).
type Timeouts struct {
	Connect time.Duration // connecting to a server
	Client  time.Duration // client inactivity
	Server  time.Duration // server inactivity
	Check   time.Duration // a health check's answer
}

// Managed reports whether Roster runs the haproxy itself.
func (c Config) Managed() bool { return c.Socket == "" }

var configSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "frontend"},
		{Name: "role"},
		{Name: "socket"},
		{Name: "backends"},
		{Name: "mode"},
		{Name: "balance"},
		{Name: "check_path"},
		{Name: "check_interval"},
		{Name: "maxconn"},
		{Name: "server_maxconn"},
		{Name: "haproxy"},
	},
	Blocks: []hcl.BlockHeaderSchema{{Type: "timeouts"}},
}

var timeoutsSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "connect"}, {Name: "client"}, {Name: "server"}, {Name: "check"}},
}

// nameRe is what haproxy accepts as a proxy or server name.
var nameRe = regexp.MustCompile(`^[A-Za-z0-9_.:-]+$`)

// DecodeConfig decodes the body of a `balancer "haproxy"` block. Every
// mistake is a diagnostic pointing at the attribute or block at fault; it
// has no side effects, so that `roster validate` can call it.
func DecodeConfig(body hcl.Body) (Config, hcl.Diagnostics) {
	d := &decoder{}
	cfg := Config{
		Mode:          DefaultMode,
		Balance:       DefaultBalance,
		CheckInterval: DefaultCheckInterval,
		MaxConn:       DefaultMaxConn,
		Timeouts: Timeouts{
			Connect: DefaultConnectTimeout,
			Client:  DefaultClientTimeout,
			Server:  DefaultServerTimeout,
			Check:   DefaultCheckTimeout,
		},
	}
	if body == nil {
		d.Errorf(hcl.Range{}, "Missing balancer block", "The haproxy balancer needs its block.")
		return cfg, d.Diags
	}
	cfg.Range = body.MissingItemRange()
	c, diags := body.Content(configSchema)
	d.Add(diags...)
	if c == nil {
		return cfg, d.Diags
	}
	attrs := c.Attributes

	fe := d.String(attrs, "frontend", &cfg.Frontend)
	if fe != nil {
		if err := checkAddr(cfg.Frontend); err != nil {
			d.Errorf(fe.Expr.Range(), "Invalid frontend", "frontend is the address haproxy listens on, such as \"127.0.0.1:8080\" or \":8080\": %v.", err)
		}
	}
	sock := d.String(attrs, "socket", &cfg.Socket)
	if sock != nil && cfg.Socket == "" {
		d.Errorf(sock.Expr.Range(), "Invalid socket", "socket is the path of a running haproxy's admin socket; it cannot be empty.")
	}
	switch {
	case fe != nil && sock != nil:
		d.Errorf(sock.Range, "Both frontend and socket",
			"A haproxy balancer either runs its own haproxy (frontend = \"…\") or attaches to a running one (socket = \"…\"), not both.")
	case attrs["frontend"] == nil && attrs["socket"] == nil:
		d.Errorf(cfg.Range, "Missing frontend or socket",
			"The haproxy balancer runs its own haproxy listening on frontend = \"127.0.0.1:8080\", or attaches to a running one with socket = \"/run/haproxy/admin.sock\" and backends = { web = \"be_web\" }; set one.")
	}

	if a := attrs["backends"]; a != nil && d.Decode(a, &cfg.Backends) {
		if attrs["socket"] == nil {
			d.Errorf(a.Range, "Backends without socket",
				"backends names the backends of a running haproxy (attach mode, with socket); the haproxy that Roster runs has one backend, for the role that registers with it.")
		}
		for _, role := range sortedKeys(cfg.Backends) {
			if be := cfg.Backends[role]; !nameRe.MatchString(be) {
				d.Errorf(a.Expr.Range(), "Invalid backend name", "The backend for role %q, %q, is not a haproxy backend name (letters, digits and _ . : -).", role, be)
			}
		}
	}
	if attrs["socket"] != nil && attrs["backends"] == nil {
		d.Errorf(attrs["socket"].Range, "Missing backends",
			"Attached to a running haproxy, Roster manages only the backends you name: backends = { web = \"be_web\" } maps each role to its backend.")
	}
	if a := d.String(attrs, "role", &cfg.Role); a != nil {
		if attrs["socket"] != nil {
			d.Errorf(a.Range, "Role in attach mode", "In attach mode backends says which role goes where; role is for the haproxy that Roster runs.")
		}
		if cfg.Role == "" {
			d.Errorf(a.Expr.Range(), "Invalid role", "role names the role whose servers this balancer routes to; it cannot be empty.")
		}
	}
	if a := d.String(attrs, "mode", &cfg.Mode); a != nil && !slices.Contains(Modes, cfg.Mode) {
		d.Errorf(a.Expr.Range(), "Invalid mode", "mode is one of %s; %q is not.", quoteList(Modes), cfg.Mode)
	}
	if a := d.String(attrs, "balance", &cfg.Balance); a != nil && !slices.Contains(Balances, cfg.Balance) {
		d.Errorf(a.Expr.Range(), "Invalid balance",
			"balance is one of %s (haproxy adds servers at run time only with a dynamic algorithm); %q is not.", quoteList(Balances), cfg.Balance)
	}
	if a := d.String(attrs, "check_path", &cfg.CheckPath); a != nil {
		switch {
		case cfg.Mode != "http":
			d.Errorf(a.Range, "HTTP check in tcp mode", "check_path makes an HTTP health check, which needs mode = \"http\".")
		case !strings.HasPrefix(cfg.CheckPath, "/") || strings.ContainsAny(cfg.CheckPath, " \t\r\n\"'\\#"):
			d.Errorf(a.Expr.Range(), "Invalid check path", "check_path is a URL path such as \"/health\", without spaces or quotes; %q is not one.", cfg.CheckPath)
		}
	}
	d.duration(attrs, "check_interval", &cfg.CheckInterval)
	d.positive(attrs, "maxconn", &cfg.MaxConn, 1)
	d.positive(attrs, "server_maxconn", &cfg.ServerMaxConn, 0)
	if a := d.String(attrs, "haproxy", &cfg.Binary); a != nil {
		if attrs["socket"] != nil {
			d.Errorf(a.Range, "Executable in attach mode", "haproxy names the executable Roster runs; attached to a running haproxy it runs none.")
		}
		if cfg.Binary == "" {
			d.Errorf(a.Expr.Range(), "Invalid executable", "haproxy is the path of the haproxy executable; it cannot be empty.")
		}
	}

	var seen *hcl.Block
	for _, b := range c.Blocks {
		if seen != nil {
			d.Errorf(b.DefRange, "Duplicate timeouts block", "The haproxy balancer takes one timeouts block; the first is at %s.", seen.DefRange)
			continue
		}
		seen = b
		tc, diags := b.Body.Content(timeoutsSchema)
		d.Add(diags...)
		if tc == nil {
			continue
		}
		d.duration(tc.Attributes, "connect", &cfg.Timeouts.Connect)
		d.duration(tc.Attributes, "client", &cfg.Timeouts.Client)
		d.duration(tc.Attributes, "server", &cfg.Timeouts.Server)
		d.duration(tc.Attributes, "check", &cfg.Timeouts.Check)
	}
	return cfg, d.Diags
}

// checkAddr checks a listening address: an optional IP and a port.
func checkAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host != "" && net.ParseIP(host) == nil {
		return fmt.Errorf("%q is not an IP address", host)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("%q is not a port from 1 to 65535", port)
	}
	return nil
}

// decoder collects diagnostics so that every mistake is reported at once.
type decoder struct {
	config.BlockDecoder
}

// duration decodes a positive duration written as a string ("5s").
func (d *decoder) duration(attrs hcl.Attributes, name string, dst *time.Duration) {
	var s string
	a := d.String(attrs, name, &s)
	if a == nil {
		return
	}
	v, err := time.ParseDuration(s)
	if err != nil || v <= 0 {
		d.Errorf(a.Expr.Range(), "Invalid duration", "%s is a positive duration such as \"5s\" or \"1m30s\"; %q is not one.", name, s)
		return
	}
	*dst = v
}

// positive decodes a whole number no smaller than min.
func (d *decoder) positive(attrs hcl.Attributes, name string, dst *int, min int) {
	a := attrs[name]
	if a == nil {
		return
	}
	var v int
	if !d.Decode(a, &v) {
		return
	}
	if v < min {
		d.Errorf(a.Expr.Range(), "Invalid "+name, "%s is a whole number of at least %d; %d is not.", name, min, v)
		return
	}
	*dst = v
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func quoteList(l []string) string {
	q := make([]string, len(l))
	for i, s := range l {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}
