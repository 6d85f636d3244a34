package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/rosterhq/roster/sdk"
)

// ExecutablePrefix starts the file name of every third-party role plugin in
// the plugin directory: roster-role-<name>.
const ExecutablePrefix = "roster-role-"

// DefaultSelfArgs are the arguments the roster binary is re-executed with to
// serve a built-in role: `roster plugin-serve <name>`.
var DefaultSelfArgs = []string{"plugin-serve"}

// nameRE is what a plugin name may look like; it keeps names from walking
// out of the plugin directory.
var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// Options configure a Host.
type Options struct {
	// PluginDir holds third-party plugins, executables named
	// roster-role-<name>. Empty: no third-party plugins.
	PluginDir string
	// SelfExe is the executable that serves the built-ins when run with
	// SelfArgs and the plugin's name. Default: the running executable
	// itself, through /proc/self/exe on Linux, so that a relaunched built-in
	// is the very binary the agent runs even after an upgrade replaced the
	// file on disk.
	SelfExe string
	// SelfArgs come between SelfExe and the plugin's name; default
	// DefaultSelfArgs.
	SelfArgs []string
	// Builtins names the roles SelfExe serves. Their names are reserved: a
	// roster-role-<name> file for one of them in PluginDir is not used.
	Builtins []string
	// Pins maps plugin names to "sha256:<hex>" digests of their
	// executables; a pinned plugin's file is hashed afresh on every launch
	// and refused when it differs.
	Pins map[string]string
	// Logger is the host's logger; plugins log through its sub-logger
	// plugin.<name>. Default: hclog's default logger.
	Logger hclog.Logger
	// ExtraEnv adds to the plugins' environment, beyond the allow-list:
	// NAME=value sets NAME, a bare NAME passes the host's NAME through.
	ExtraEnv []string
	// Backoff paces relaunches of a plugin that died.
	Backoff Backoff
	// OnEvent, when set, is told of every start, exit and failed relaunch
	// of a supervised plugin. It is called from the supervisor goroutine and
	// must not block for long.
	OnEvent func(Event)
	// StartTimeout bounds a plugin's start and handshake; default 30s.
	StartTimeout time.Duration
	// LogLineMax is the longest plugin log line handled as one entry;
	// longer lines are split into several. Default 1 MiB.
	LogLineMax int
}

// Backoff is an exponential backoff: Initial, doubled after every failure
// up to Max, back to Initial once a plugin has run for StableAfter.
type Backoff struct {
	Initial     time.Duration // default 100ms
	Max         time.Duration // default 30s
	StableAfter time.Duration // default 1m
}

// Host finds, checks, launches and supervises role plugins.
type Host struct {
	opts     Options
	logger   hclog.Logger
	pins     map[string]string
	builtins map[string]bool
	selfPath string // shown and hashed
	selfExec string // executed

	mu        sync.Mutex
	described map[string]described // name@digest
	digests   map[fileKey]string
}

// New checks opts and returns a Host. It starts nothing.
func New(opts Options) (*Host, error) {
	h := &Host{
		opts:      opts,
		logger:    opts.Logger,
		pins:      map[string]string{},
		builtins:  map[string]bool{},
		described: map[string]described{},
		digests:   map[fileKey]string{},
	}
	if h.logger == nil {
		h.logger = hclog.Default()
	}
	if h.opts.SelfArgs == nil {
		h.opts.SelfArgs = DefaultSelfArgs
	}
	b := &h.opts.Backoff
	if b.Initial <= 0 {
		b.Initial = 100 * time.Millisecond
	}
	if b.Max <= 0 {
		b.Max = 30 * time.Second
	}
	if b.Max < b.Initial {
		b.Max = b.Initial
	}
	if b.StableAfter <= 0 {
		b.StableAfter = time.Minute
	}
	if h.opts.StartTimeout <= 0 {
		h.opts.StartTimeout = 30 * time.Second
	}
	if h.opts.LogLineMax <= 0 {
		h.opts.LogLineMax = 1 << 20
	}
	for _, n := range opts.Builtins {
		if !nameRE.MatchString(n) {
			return nil, fmt.Errorf("built-in plugin name %q: want lower-case letters, digits, - and _", n)
		}
		h.builtins[n] = true
	}
	for n, pin := range opts.Pins {
		c, err := ParseChecksum(pin)
		if err != nil {
			return nil, fmt.Errorf("plugin %q: %w", n, err)
		}
		h.pins[n] = c
	}
	if len(h.builtins) > 0 {
		if opts.SelfExe != "" {
			h.selfPath, h.selfExec = opts.SelfExe, opts.SelfExe
		} else {
			exe, err := os.Executable()
			if err != nil {
				return nil, fmt.Errorf("finding the roster executable for built-in plugins: %w", err)
			}
			h.selfPath, h.selfExec = exe, exe
			if runtime.GOOS == "linux" {
				h.selfExec = "/proc/self/exe"
			}
		}
	}
	return h, nil
}

// source is where a plugin comes from.
type source struct {
	name     string
	path     string // shown to people
	execPath string // executed and hashed
	args     []string
	builtin  bool
}

// find resolves a plugin name. Built-ins win over plugin_dir.
func (h *Host) find(name string) (source, error) {
	if !nameRE.MatchString(name) {
		return source{}, sdk.Errorf(sdk.ErrNotFound, "plugin %q: not a valid plugin name", name)
	}
	if h.builtins[name] {
		args := append(append([]string{}, h.opts.SelfArgs...), name)
		return source{name: name, path: h.selfPath, execPath: h.selfExec, args: args, builtin: true}, nil
	}
	if h.opts.PluginDir == "" {
		return source{}, sdk.Errorf(sdk.ErrNotFound, "plugin %q: not a built-in, and no plugin_dir is set", name)
	}
	p := filepath.Join(h.opts.PluginDir, ExecutablePrefix+name)
	if err := checkExecutable(p); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return source{}, sdk.Errorf(sdk.ErrNotFound, "plugin %q: not a built-in, and %s does not exist", name, p)
		}
		return source{}, fmt.Errorf("plugin %q: %w", name, err)
	}
	return source{name: name, path: p, execPath: p}, nil
}

func checkExecutable(p string) error {
	st, err := os.Stat(p)
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", p)
	}
	if st.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not executable", p)
	}
	return nil
}

// Names lists the plugins found, built-in and in the plugin directory,
// sorted; a file that a built-in shadows is not among them.
func (h *Host) Names() ([]string, error) {
	found, _, err := h.scan()
	return found, err
}

func (h *Host) scan() (names, shadowed []string, err error) {
	for n := range h.builtins {
		names = append(names, n)
	}
	if h.opts.PluginDir != "" {
		entries, err := os.ReadDir(h.opts.PluginDir)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, nil, fmt.Errorf("reading plugin_dir %s: %w", h.opts.PluginDir, err)
		}
		for _, e := range entries {
			n, ok := strings.CutPrefix(e.Name(), ExecutablePrefix)
			if !ok || !nameRE.MatchString(n) {
				continue
			}
			if h.builtins[n] {
				shadowed = append(shadowed, n)
				continue
			}
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names, shadowed, nil
}

// PluginInfo describes one plugin found, for `roster plugins`.
type PluginInfo struct {
	Name    string
	Path    string
	Builtin bool
	// Digest is the sha256 of the executable, "sha256:<hex>".
	Digest string
	// Pinned is the pin configured for it, if any.
	Pinned string
	Info   sdk.Info
	Schema sdk.Schema
	// Err says why the plugin could not be asked (it would not start, its
	// checksum differs from its pin, a built-in shadows it…); Info and
	// Schema are empty then.
	Err error
}

// List launches every plugin found in turn, asks its Info and ConfigSchema,
// and stops it. A plugin that fails is listed with its error; List itself
// fails only when the plugin directory cannot be read.
func (h *Host) List(ctx context.Context) ([]PluginInfo, error) {
	names, shadowed, err := h.scan()
	if err != nil {
		return nil, err
	}
	var out []PluginInfo
	for _, n := range names {
		pi := PluginInfo{Name: n, Pinned: h.pins[n]}
		src, err := h.find(n)
		if err != nil {
			pi.Err = err
			out = append(out, pi)
			continue
		}
		pi.Path, pi.Builtin = src.path, src.builtin
		inst, err := h.start(ctx, src, true)
		if err != nil {
			pi.Err = err
			out = append(out, pi)
			continue
		}
		pi.Digest = inst.digest
		pi.Info, err = inst.role.Info(ctx)
		if err == nil {
			pi.Schema, err = inst.role.ConfigSchema(ctx)
		}
		if err == nil {
			h.cache(n, inst.digest, described{info: pi.Info, schema: pi.Schema})
		}
		pi.Err = err
		inst.stop()
		out = append(out, pi)
	}
	for _, n := range shadowed {
		p := filepath.Join(h.opts.PluginDir, ExecutablePrefix+n)
		out = append(out, PluginInfo{Name: n, Path: p,
			Err: fmt.Errorf("%s is not used: %q is a built-in plugin, and built-ins take precedence; rename the file", p, n)})
	}
	return out, nil
}

// described is what a plugin says of itself: its Info and its config
// schema.
type described struct {
	info   sdk.Info
	schema sdk.Schema
}

// PluginSchema returns the config schema a plugin declares. It launches the
// plugin, asks, and stops it; the answer is kept for the plugin's name and
// the digest of its executable, so that a changed file is asked again. A
// plugin that does not exist gives an error wrapping sdk.ErrNotFound.
func (h *Host) PluginSchema(ctx context.Context, name string) (sdk.Schema, error) {
	d, err := h.describe(ctx, name)
	return d.schema, err
}

// RoleInfo returns a plugin's Info, asked and kept as PluginSchema's answer
// is (one launch answers both).
func (h *Host) RoleInfo(ctx context.Context, name string) (sdk.Info, error) {
	d, err := h.describe(ctx, name)
	return d.info, err
}

func (h *Host) describe(ctx context.Context, name string) (described, error) {
	src, err := h.find(name)
	if err != nil {
		return described{}, err
	}
	if dg, err := h.quickDigest(src.execPath); err == nil {
		if d, ok := h.cached(name, dg); ok {
			return d, nil
		}
	}
	inst, err := h.start(ctx, src, true)
	if err != nil {
		return described{}, err
	}
	defer inst.stop()
	info, err := inst.role.Info(ctx)
	if err != nil {
		return described{}, fmt.Errorf("plugin %q: info: %w", name, err)
	}
	s, err := inst.role.ConfigSchema(ctx)
	if err != nil {
		return described{}, fmt.Errorf("plugin %q: config schema: %w", name, err)
	}
	d := described{info: info, schema: s}
	h.cache(name, inst.digest, d)
	return d, nil
}

func (h *Host) cached(name, digest string) (described, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	d, ok := h.described[name+"@"+digest]
	return d, ok
}

func (h *Host) cache(name, digest string, d described) {
	if digest == "" {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.described[name+"@"+digest] = d
}

// fileKey identifies a file's content well enough to spare hashing it again
// for the schema cache. Pins never rely on it: they hash on every launch.
type fileKey struct {
	dev, ino uint64
	size     int64
	mtime    int64
}

func statKey(path string) (fileKey, bool) {
	st, err := os.Stat(path)
	if err != nil {
		return fileKey{}, false
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return fileKey{}, false
	}
	return fileKey{dev: uint64(sys.Dev), ino: sys.Ino, size: st.Size(), mtime: st.ModTime().UnixNano()}, true
}

func (h *Host) quickDigest(path string) (string, error) {
	k, ok := statKey(path)
	if ok {
		h.mu.Lock()
		d, hit := h.digests[k]
		h.mu.Unlock()
		if hit {
			return d, nil
		}
	}
	d, err := FileDigest(path)
	if err != nil {
		return "", err
	}
	if ok {
		h.mu.Lock()
		h.digests[k] = d
		h.mu.Unlock()
	}
	return d, nil
}
