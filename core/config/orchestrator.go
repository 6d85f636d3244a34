package config

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
)

// Defaults of roster.hcl.
const (
	DefaultCluster        = "roster"
	DefaultDataDir        = ".roster"
	DefaultRoleGlob       = "roles/*.hcl"
	DefaultAPIAddress     = "127.0.0.1:7070"
	DefaultSpareHeartbeat = 30 * time.Second
	// DefaultPluginDir is relative to data_dir: plugins are kept with the
	// rest of what one orchestrator owns.
	DefaultPluginDir = "plugins"
)

// The block types roster.hcl knows. Balancers decode their own settings;
// adding one means adding its type here.
var (
	QueueTypes    = []string{"local", "sqs"}
	ProviderTypes = []string{"local", "ec2"}
	BalancerTypes = []string{"haproxy", "file", "none"}
)

var (
	// Cluster names go into queue names and machine tags: SQS allows
	// letters, digits, dashes and underscores, 80 characters in all.
	clusterRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$`)
	// Plugin names become file names (roster-role-<name>).
	pluginNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)
	checksumRe   = regexp.MustCompile(`^sha256:[0-9a-fA-F]{64}$`)
)

var rosterSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "cluster"},
		{Name: "data_dir"},
		{Name: "spares"},
		{Name: "roles"},
		{Name: "plugin_dir"},
	},
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "queue", LabelNames: []string{"type"}},
		{Type: "provider", LabelNames: []string{"type"}},
		{Type: "balancer", LabelNames: []string{"type", "name"}},
		{Type: "plugin", LabelNames: []string{"name"}},
		{Type: "logs"},
		{Type: "api"},
		{Type: "agent"},
	},
}

// DefaultOrchestrator returns the settings of an empty roster.hcl in dir:
// what role files validated on their own are checked against.
func DefaultOrchestrator(dir string) *Orchestrator {
	abs, err := filepath.Abs(dir)
	if err != nil {
		abs = dir
	}
	o := &Orchestrator{
		File:      filepath.Join(dir, "roster.hcl"),
		Cluster:   DefaultCluster,
		DataDir:   filepath.Join(abs, DefaultDataDir),
		RoleGlobs: []string{DefaultRoleGlob},
		Queue:     Queue{Type: "local"},
		Provider:  Provider{Type: "local"},
		API:       API{Address: DefaultAPIAddress},
		Agent:     AgentSettings{SpareHeartbeat: DefaultSpareHeartbeat},
	}
	o.PluginDir = filepath.Join(o.DataDir, DefaultPluginDir)
	o.Logs.Destination = fileURL(filepath.Join(o.DataDir, "logs"))
	return o
}

// decodeOrchestrator decodes roster.hcl's own settings and expands the
// role globs; the role files themselves are the loader's.
func decodeOrchestrator(body hcl.Body, path string) (*Orchestrator, hcl.Diagnostics) {
	d := &decoder{}
	dir := filepath.Dir(path)
	o := DefaultOrchestrator(dir)
	o.File = path
	base := filepath.Dir(o.DataDir) // dir, absolute
	c := d.content(body, rosterSchema)

	if a := d.value(c.Attributes, "cluster", &o.Cluster); a != nil && !clusterRe.MatchString(o.Cluster) {
		d.errorf(a.Expr.Range(), "Invalid cluster name",
			"The cluster name %q prefixes queue names: use 1 to 32 letters, digits, dashes or underscores, starting with a letter or digit.", o.Cluster)
	}
	var dataDir string
	if a := d.value(c.Attributes, "data_dir", &dataDir); a != nil {
		if dataDir == "" {
			d.errorf(a.Expr.Range(), "Invalid data_dir", "The data_dir must not be empty.")
		} else {
			o.DataDir = absUnder(base, dataDir)
		}
	}
	o.PluginDir = filepath.Join(o.DataDir, DefaultPluginDir)
	o.Logs.Destination = fileURL(filepath.Join(o.DataDir, "logs"))
	var pluginDir string
	if a := d.value(c.Attributes, "plugin_dir", &pluginDir); a != nil {
		if pluginDir == "" {
			d.errorf(a.Expr.Range(), "Invalid plugin_dir", "The plugin_dir must not be empty.")
		} else {
			o.PluginDir = absUnder(base, pluginDir)
		}
	}
	d.nonNegative(c.Attributes, "spares", &o.Spares)
	o.RoleFiles = d.roleGlobs(c.Attributes, o, dir, c.MissingItemRange)

	d.plugins(c.Blocks.OfType("plugin"), o)
	d.queue(c.Blocks, o)
	d.provider(c.Blocks, o)
	d.balancers(c.Blocks.OfType("balancer"), o)

	if b := d.single(c.Blocks, "logs"); b != nil {
		lc := d.content(b.Body, &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "destination", Required: true}}})
		var dest string
		if a := d.value(lc.Attributes, "destination", &dest); a != nil {
			if resolved, ok := d.destination(a, dest, base); ok {
				o.Logs.Destination = resolved
			}
		}
	}
	if b := d.single(c.Blocks, "api"); b != nil {
		ac := d.content(b.Body, &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "address"}}})
		var addr string
		if a := d.value(ac.Attributes, "address", &addr); a != nil {
			if err := checkHostPort(addr); err != nil {
				d.errorf(a.Expr.Range(), "Invalid API address", "The api address must be host:port, such as %q: %s.", DefaultAPIAddress, err)
			} else {
				o.API.Address = addr
			}
		}
	}
	if b := d.single(c.Blocks, "agent"); b != nil {
		ac := d.content(b.Body, &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "spare_heartbeat"}}})
		d.duration(ac.Attributes, "spare_heartbeat", &o.Agent.SpareHeartbeat, true)
	}
	return o, d.diags
}

// roleGlobs expands the role globs, relative to roster.hcl's directory,
// keeping the matched paths as joined so that diagnostics name them the way
// the operator wrote them.
func (d *decoder) roleGlobs(attrs hcl.Attributes, o *Orchestrator, dir string, missing hcl.Range) []string {
	type glob struct {
		pattern string
		rng     hcl.Range
	}
	globs := []glob{{DefaultRoleGlob, missing}}
	if a, ok := attrs["roles"]; ok {
		globs = nil
		o.RoleGlobs = nil
		exprs, diags := hcl.ExprList(a.Expr)
		d.add(diags...)
		for _, e := range exprs {
			var s string
			ds := gohcl.DecodeExpression(e, nil, &s)
			d.add(ds...)
			if ds.HasErrors() {
				continue
			}
			o.RoleGlobs = append(o.RoleGlobs, s)
			globs = append(globs, glob{s, e.Range()})
		}
	}
	var files []string
	seen := map[string]bool{}
	for _, g := range globs {
		pattern := g.pattern
		if !filepath.IsAbs(pattern) {
			pattern = filepath.Join(dir, pattern)
		}
		matches, err := filepath.Glob(pattern)
		if err != nil {
			d.errorf(g.rng, "Invalid role glob", "The pattern %q is not a valid glob: %s.", g.pattern, err)
			continue
		}
		n := 0
		for _, m := range matches {
			if seen[m] {
				continue
			}
			seen[m] = true
			files = append(files, m)
			n++
		}
		if len(matches) == 0 {
			d.warnf(g.rng, "No role files match", "The pattern %q matches no file (relative to %s); no role is declared by it.", g.pattern, displayDir(dir))
		}
	}
	return files
}

func (d *decoder) plugins(blocks hcl.Blocks, o *Orchestrator) {
	first := map[string]hcl.Range{}
	for _, b := range blocks {
		name := b.Labels[0]
		if !pluginNameRe.MatchString(name) {
			d.errorf(b.LabelRanges[0], "Invalid plugin name",
				"The plugin name %q must be lower-case letters, digits, dashes or underscores (its file is roster-role-<name>).", name)
		}
		if r, dup := first[name]; dup {
			d.errorf(b.LabelRanges[0], "Duplicate plugin block", "Plugin %q is already pinned at %s.", name, r)
			continue
		}
		first[name] = b.DefRange
		c := d.content(b.Body, &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "checksum", Required: true}}})
		var sum string
		a := d.value(c.Attributes, "checksum", &sum)
		if a == nil {
			continue
		}
		if !checksumRe.MatchString(sum) {
			d.errorf(a.Expr.Range(), "Invalid checksum",
				"A plugin checksum is \"sha256:\" followed by 64 hexadecimal digits (the output of sha256sum); %q is not one.", sum)
			continue
		}
		o.Plugins = append(o.Plugins, PluginPin{Name: name, Checksum: strings.ToLower(sum), Range: b.DefRange})
	}
}

func (d *decoder) queue(blocks hcl.Blocks, o *Orchestrator) {
	b := d.single(blocks, "queue")
	if b == nil {
		return
	}
	typ := b.Labels[0]
	if !slices.Contains(QueueTypes, typ) {
		d.errorf(b.LabelRanges[0], "Unknown queue type", "The queue type %q is not known; use one of %s.", typ, quoteList(QueueTypes))
		return
	}
	o.Queue = Queue{Type: typ, Range: b.DefRange}
	switch typ {
	case "local":
		d.content(b.Body, &hcl.BodySchema{})
	case "sqs":
		c := d.content(b.Body, &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "region"}, {Name: "endpoint"}}})
		d.value(c.Attributes, "region", &o.Queue.Region)
		if a := d.value(c.Attributes, "endpoint", &o.Queue.Endpoint); a != nil {
			if u, err := url.Parse(o.Queue.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				d.errorf(a.Expr.Range(), "Invalid queue endpoint", "The endpoint must be an http:// or https:// URL, such as \"http://127.0.0.1:4566\"; %q is not one.", o.Queue.Endpoint)
			}
		}
	}
}

func (d *decoder) provider(blocks hcl.Blocks, o *Orchestrator) {
	b := d.single(blocks, "provider")
	if b == nil {
		return
	}
	typ := b.Labels[0]
	if !slices.Contains(ProviderTypes, typ) {
		d.errorf(b.LabelRanges[0], "Unknown provider type", "The provider type %q is not known; use one of %s.", typ, quoteList(ProviderTypes))
		return
	}
	o.Provider = Provider{Type: typ, Body: b.Body, Range: b.DefRange}
	if typ == "local" {
		c := d.content(b.Body, &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "boot_delay"}, {Name: "max_machines"}}})
		d.duration(c.Attributes, "boot_delay", &o.Provider.BootDelay, false)
		d.nonNegative(c.Attributes, "max_machines", &o.Provider.MaxMachines)
	}
}

func (d *decoder) balancers(blocks hcl.Blocks, o *Orchestrator) {
	first := map[string]hcl.Range{}
	for _, b := range blocks {
		typ, name := b.Labels[0], b.Labels[1]
		if !slices.Contains(BalancerTypes, typ) {
			d.errorf(b.LabelRanges[0], "Unknown balancer type", "The balancer type %q is not known; use one of %s.", typ, quoteList(BalancerTypes))
			continue
		}
		if name == "" {
			d.errorf(b.LabelRanges[1], "Invalid balancer name", "A balancer needs a name, which roles use in register { balancer = \"…\" }.")
			continue
		}
		if r, dup := first[name]; dup {
			d.errorf(b.LabelRanges[1], "Duplicate balancer", "A balancer named %q is already declared at %s.", name, r)
			continue
		}
		first[name] = b.DefRange
		o.Balancers = append(o.Balancers, Balancer{Type: typ, Name: name, Body: b.Body, Range: b.DefRange})
	}
}

// destination checks a log destination and makes a relative file:// URL
// absolute, relative to base.
func (d *decoder) destination(a *hcl.Attribute, dest, base string) (string, bool) {
	u, err := url.Parse(dest)
	switch {
	case err == nil && u.Scheme == "s3" && u.Host != "":
		return dest, true
	case strings.HasPrefix(dest, "file://") && len(dest) > len("file://"):
		return resolveFileURL(dest, base), true
	}
	d.errorf(a.Expr.Range(), "Invalid log destination",
		"The destination must be a file:// URL (relative paths are relative to this file) or s3://bucket/prefix; %q is neither.", dest)
	return "", false
}

func checkHostPort(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	return nil
}

// absUnder makes p absolute, relative to base when it is not already.
func absUnder(base, p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(base, p)
}

// fileURL is the file:// URL of an absolute path.
func fileURL(abs string) string { return "file://" + filepath.ToSlash(abs) }

// resolveFileURL makes a relative file:// URL ("file://site", which URL
// parsers would read as host "site") absolute, relative to base.
func resolveFileURL(s, base string) string {
	rest := strings.TrimPrefix(s, "file://")
	if rest == "" || strings.HasPrefix(rest, "/") {
		return s
	}
	return fileURL(absUnder(base, filepath.FromSlash(rest)))
}

func quoteList(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = strconv.Quote(x)
	}
	return strings.Join(q, ", ")
}

func displayDir(dir string) string {
	if dir == "." || dir == "" {
		return "the current directory"
	}
	return dir
}
