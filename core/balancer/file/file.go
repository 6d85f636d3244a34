// Package file is the `file` balancer: it renders the ready servers of each
// role into a file through a Go text/template (by default an nginx upstream
// block per role), replaces the file atomically and runs a reload command,
// so that any proxy that reads a file (nginx, haproxy, Envoy…) follows the
// pools.
//
// It cannot see sessions: Drain takes the server out of the file, reloads,
// and waits drain_wait (default 0) for the proxy to let the server's open
// connections end.
//
// Import it for its side effect, which registers the type with
// core/balancer:
//
//	import _ "github.com/rosterhq/roster/core/balancer/file"
package file

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"text/template"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/rosterhq/roster/core/balancer"
	"github.com/rosterhq/roster/core/config"
	"github.com/rosterhq/roster/sdk/fsutil"
)

// Type is the balancer type this package implements.
const Type = "file"

// DefaultTemplate renders an nginx upstream block per role. nginx refuses an
// upstream without servers, so an empty pool gets a placeholder marked down.
const DefaultTemplate = `# Rendered by roster (balancer "{{.Balancer}}"); roster rewrites this file.
{{- range .Roles}}

upstream {{.Name}} {
{{- range .Servers}}
    server {{.Endpoint}};  # {{.Server}}
{{- else}}
    server 127.0.0.1:9 down;  # no ready server
{{- end}}
}
{{- end}}
`

func init() {
	balancer.RegisterType(Type, func(ctx context.Context, cfg config.Balancer, opts balancer.Options) (balancer.Balancer, error) {
		c, diags := DecodeConfig(cfg.Body)
		if diags.HasErrors() {
			return nil, fmt.Errorf("balancer %q: %w", cfg.Name, diags)
		}
		// Relative paths are relative to the file that declares the block.
		if cfg.Range.Filename != "" {
			base := filepath.Dir(cfg.Range.Filename)
			c.Path = join(base, c.Path)
			if c.Template != "" {
				c.Template = join(base, c.Template)
			}
		}
		return New(ctx, cfg.Name, c, opts)
	})
}

func join(base, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(base, p)
}

// Data is what the template renders.
type Data struct {
	// Balancer is the balancer's name.
	Balancer string
	// Roles are the roles that ever registered here, sorted by name, each
	// with its ready servers (draining ones are left out).
	Roles []Role
}

// Role is one role's pool in Data.
type Role struct {
	Name string
	// Servers are the ready servers, sorted by server name.
	Servers []balancer.Backend
}

// Role returns the pool of the named role (empty when it has none), for
// templates that place each role themselves: {{with .Role "web"}}….
func (d Data) Role(name string) Role {
	for _, r := range d.Roles {
		if r.Name == name {
			return r
		}
	}
	return Role{Name: name}
}

// Balancer is a file balancer.
type Balancer struct {
	name  string
	cfg   Config
	tmpl  *template.Template
	state string // the JSON file that keeps the pools across restarts
	log   hclog.Logger

	mu sync.Mutex
	// pools maps role -> server -> backend.
	pools map[string]map[string]balancer.Backend
	// pending is set while the file on disk was not applied by a reload
	// that succeeded, so that the next change runs it even if the file
	// does not change.
	pending bool
}

var _ balancer.Balancer = (*Balancer)(nil)

// New opens a file balancer: it loads the pools kept in the data directory,
// parses the template, and renders the file (reloading when it changed).
func New(ctx context.Context, name string, cfg Config, opts balancer.Options) (*Balancer, error) {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.DataDir == "" {
		return nil, fmt.Errorf("balancer %q: the file balancer needs the orchestrator's data_dir to keep its list", name)
	}
	b := &Balancer{
		name:  name,
		cfg:   cfg,
		state: filepath.Join(opts.DataDir, "balancers", name, "state.json"),
		log:   opts.Logger.Named("balancer_file").With("balancer", name),
		pools: map[string]map[string]balancer.Backend{},
	}
	text, tname := DefaultTemplate, "default"
	if cfg.Template != "" {
		data, err := os.ReadFile(cfg.Template)
		if err != nil {
			return nil, fmt.Errorf("balancer %q: template: %w", name, err)
		}
		text, tname = string(data), cfg.Template
	}
	tmpl, err := template.New(tname).Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, fmt.Errorf("balancer %q: template: %w", name, err)
	}
	b.tmpl = tmpl
	if err := os.MkdirAll(filepath.Dir(b.state), 0o700); err != nil {
		return nil, fmt.Errorf("balancer %q: %w", name, err)
	}
	data, err := os.ReadFile(b.state)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("balancer %q: %w", name, err)
	default:
		if err := json.Unmarshal(data, &b.pools); err != nil {
			return nil, fmt.Errorf("balancer %q: %s: %w", name, b.state, err)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	// A reload that fails here is not fatal: the proxy keeps its last good
	// configuration, and the next change reports the error.
	if err := b.apply(ctx); err != nil {
		if errors.Is(err, errRender) {
			return nil, err
		}
		b.log.Warn("cannot apply the file on open; will retry on the next change", "error", err)
	}
	return b, nil
}

// Name is the balancer's name.
func (b *Balancer) Name() string { return b.name }

// Type is "file".
func (b *Balancer) Type() string { return Type }

// Register adds server to role's pool and rewrites the file; a server that
// drains is made ready again, one that moved gets its new endpoint.
func (b *Balancer) Register(ctx context.Context, role, server, endpoint string) error {
	if role == "" || server == "" || endpoint == "" {
		return fmt.Errorf("balancer %q: registering %q of role %q at %q: role, server and endpoint are required", b.name, server, role, endpoint)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.pools[role]
	if p == nil {
		p = map[string]balancer.Backend{}
		b.pools[role] = p
	}
	want := balancer.Backend{Role: role, Server: server, Endpoint: endpoint, Sessions: -1}
	if p[server] == want && !b.pending {
		return nil
	}
	p[server] = want
	return b.change(ctx, "server registered", role, server)
}

// Drain takes server out of the file and reloads, then waits drain_wait or
// until ctx is done. An unknown server has nothing to drain.
func (b *Balancer) Drain(ctx context.Context, role, server string) error {
	b.mu.Lock()
	s, ok := b.pools[role][server]
	var err error
	if ok && (!s.Draining || b.pending) {
		s.Draining = true
		b.pools[role][server] = s
		err = b.change(ctx, "server draining", role, server)
	}
	b.mu.Unlock()
	if err != nil || !ok || b.cfg.DrainWait == 0 {
		return err
	}
	t := time.NewTimer(b.cfg.DrainWait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Deregister removes server from role's pool and rewrites the file.
func (b *Balancer) Deregister(ctx context.Context, role, server string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.pools[role][server]; !ok && !b.pending {
		return nil
	}
	delete(b.pools[role], server)
	return b.change(ctx, "server removed", role, server)
}

// List returns role's servers as the balancer keeps them; Sessions is -1:
// a file cannot tell.
func (b *Balancer) List(_ context.Context, role string) ([]balancer.Backend, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]balancer.Backend, 0, len(b.pools[role]))
	for _, s := range b.pools[role] {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Server < out[j].Server })
	return out, nil
}

// Close does nothing: the file stays, and the proxy with it.
func (b *Balancer) Close() error { return nil }

// change keeps the pools and applies them; b.mu is held.
func (b *Balancer) change(ctx context.Context, msg, role, server string) error {
	data, err := json.MarshalIndent(b.pools, "", "  ")
	if err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(b.state, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("balancer %q: %w", b.name, err)
	}
	if err := b.apply(ctx); err != nil {
		return err
	}
	b.log.Info(msg, "role", role, "server", server, "path", b.cfg.Path)
	return nil
}

var errRender = errors.New("rendering the template")

// data is the template's view of the pools.
func (b *Balancer) data() Data {
	d := Data{Balancer: b.name}
	for role, p := range b.pools {
		r := Role{Name: role, Servers: []balancer.Backend{}}
		for _, s := range p {
			if !s.Draining {
				r.Servers = append(r.Servers, s)
			}
		}
		sort.Slice(r.Servers, func(i, j int) bool { return r.Servers[i].Server < r.Servers[j].Server })
		d.Roles = append(d.Roles, r)
	}
	sort.Slice(d.Roles, func(i, j int) bool { return d.Roles[i].Name < d.Roles[j].Name })
	return d
}

// apply renders the file and, when it changed or the last reload failed,
// replaces it and runs the reload command; b.mu is held.
func (b *Balancer) apply(ctx context.Context) error {
	var buf bytes.Buffer
	if err := b.tmpl.Execute(&buf, b.data()); err != nil {
		return fmt.Errorf("balancer %q: %w: %w", b.name, errRender, err)
	}
	old, err := os.ReadFile(b.cfg.Path)
	if err == nil && bytes.Equal(old, buf.Bytes()) && !b.pending {
		return nil
	}
	b.pending = true
	if err := fsutil.WriteFileAtomic(b.cfg.Path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("balancer %q: writing %s: %w", b.name, b.cfg.Path, err)
	}
	if err := b.reload(ctx); err != nil {
		return err
	}
	b.pending = false
	return nil
}

// reload runs the reload command, bounded by reload_timeout.
func (b *Balancer) reload(ctx context.Context) error {
	if len(b.cfg.Reload) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.ReloadTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, b.cfg.Reload[0], b.cfg.Reload[1:]...)
	if b.cfg.Range.Filename != "" {
		cmd.Dir = filepath.Dir(b.cfg.Range.Filename)
	}
	cmd.Env = append(os.Environ(), "ROSTER_BALANCER="+b.name, "ROSTER_BALANCER_FILE="+b.cfg.Path)
	var out tailBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// Its own process group, so that a timeout ends the command's children
	// too (a shell's sleep would otherwise hold the output open).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	start := time.Now()
	err := cmd.Run()
	if err != nil {
		what := err.Error()
		if ctx.Err() != nil {
			what = fmt.Sprintf("timed out after %s", b.cfg.ReloadTimeout)
			if errors.Is(ctx.Err(), context.Canceled) {
				what = "canceled"
			}
		}
		return fmt.Errorf("balancer %q: reload command %q: %s: %s", b.name, strings.Join(b.cfg.Reload, " "), what, out.String())
	}
	b.log.Debug("reloaded", "command", b.cfg.Reload, "duration", time.Since(start))
	return nil
}

// tailBuffer keeps the last 2 KiB written to it, for error messages.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 2048 {
		t.buf = t.buf[len(t.buf)-2048:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := strings.TrimSpace(string(t.buf))
	if s == "" {
		return "no output"
	}
	return s
}
