package config

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"

	"github.com/rosterhq/roster/sdk"
)

// PluginSchemas answers the config schema a role plugin declares. The
// plugin host implements it; a plugin that does not exist answers an error
// wrapping sdk.ErrNotFound.
type PluginSchemas interface {
	PluginSchema(ctx context.Context, name string) (sdk.Schema, error)
}

// RoleInfos is optionally implemented by a PluginSchemas (the plugin host
// does): the plugins' Info, for what core needs to know of a role's plugin
// beyond its schema (Role.Stateful).
type RoleInfos interface {
	RoleInfo(ctx context.Context, name string) (sdk.Info, error)
}

// SchemaMap is a fixed catalog of plugin schemas, for tests and for tools
// that know their plugins without launching them.
type SchemaMap map[string]sdk.Schema

// PluginSchema returns the named schema, or an error wrapping
// sdk.ErrNotFound.
func (m SchemaMap) PluginSchema(_ context.Context, name string) (sdk.Schema, error) {
	s, ok := m[name]
	if !ok {
		return sdk.Schema{}, sdk.Errorf(sdk.ErrNotFound, "no plugin named %q", name)
	}
	return s, nil
}

// SchemasFunc gives the plugin schemas for an orchestrator once its
// roster.hcl is decoded: plugin_dir and the checksum pins come from there.
type SchemasFunc func(*Orchestrator) (PluginSchemas, error)

// Loader parses and decodes configuration files. Keep one per command: its
// Files feed hcl's diagnostic writer, which prints source snippets.
type Loader struct {
	parser   *hclparse.Parser
	reported map[string]bool
	order    map[string]int // file name → order of first parse
}

// NewLoader returns an empty Loader.
func NewLoader() *Loader {
	return &Loader{parser: hclparse.NewParser(), reported: map[string]bool{}, order: map[string]int{}}
}

// sort orders diagnostics by file, in the order the files were read, then
// by position: hcldec reports in map order, and readers expect the order of
// the text.
func (l *Loader) sort(diags hcl.Diagnostics) hcl.Diagnostics {
	key := func(d *hcl.Diagnostic) (int, int) {
		if d.Subject == nil {
			return -1, 0
		}
		o, ok := l.order[d.Subject.Filename]
		if !ok {
			o = len(l.order)
		}
		return o, d.Subject.Start.Byte
	}
	sort.SliceStable(diags, func(i, j int) bool {
		fi, bi := key(diags[i])
		fj, bj := key(diags[j])
		if fi != fj {
			return fi < fj
		}
		if bi != bj {
			return bi < bj
		}
		// Same place: several missing arguments of one block.
		return diags[i].Summary+diags[i].Detail < diags[j].Summary+diags[j].Detail
	})
	return diags
}

// Files returns every file the Loader has parsed, by the name diagnostics
// use, for hcl.NewDiagnosticTextWriter.
func (l *Loader) Files() map[string]*hcl.File { return l.parser.Files() }

// parse parses a file once; its syntax errors are returned the first time
// only, so that a file loaded twice is not reported twice.
func (l *Loader) parse(path string) (hcl.Body, hcl.Diagnostics) {
	f, diags := l.parser.ParseHCLFile(path)
	if l.reported[path] {
		diags = nil
	}
	l.reported[path] = true
	if _, ok := l.order[path]; !ok {
		l.order[path] = len(l.order)
	}
	if f == nil {
		return nil, diags
	}
	return f.Body, diags
}

// Load decodes roster.hcl at path, then every role file its globs match.
// Loading has two phases because the plugin schemas depend on roster.hcl:
// schemas is called with the decoded orchestrator and answers the schema of
// each plugin a role names (each plugin is asked once). A nil schemas skips
// the checks of config blocks.
//
// The returned Orchestrator is complete only when the diagnostics hold no
// error; nothing may be started otherwise.
func Load(ctx context.Context, path string, schemas SchemasFunc) (*Orchestrator, hcl.Diagnostics) {
	return NewLoader().Load(ctx, path, schemas)
}

// LoadRoleFiles decodes role files on their own, without roster.hcl: the
// balancers they register with are not checked, and a reference to a role
// declared in none of the files is a warning rather than an error.
func LoadRoleFiles(ctx context.Context, paths []string, schemas PluginSchemas) ([]*Role, hcl.Diagnostics) {
	return NewLoader().LoadRoleFiles(ctx, paths, schemas)
}

// Load is the package's Load, recording the files it parses.
func (l *Loader) Load(ctx context.Context, path string, schemas SchemasFunc) (*Orchestrator, hcl.Diagnostics) {
	body, diags := l.parse(path)
	o, more := decodeOrchestrator(body, path)
	diags = append(diags, more...)

	var ps PluginSchemas
	if schemas != nil {
		var err error
		ps, err = schemas(o)
		if err != nil {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Cannot load plugins",
				Detail:   fmt.Sprintf("The plugins that roster.hcl configures could not be loaded, so role configs are not checked: %s.", err),
				Subject:  fileStart(path).Ptr(),
			})
		}
	}
	roles, more := l.loadRoles(ctx, o.RoleFiles, ps, o.Balancers, true)
	o.Roles = roles
	return o, l.sort(append(diags, more...))
}

// LoadRoleFiles is the package's LoadRoleFiles, recording the files it
// parses.
func (l *Loader) LoadRoleFiles(ctx context.Context, paths []string, schemas PluginSchemas) ([]*Role, hcl.Diagnostics) {
	roles, diags := l.loadRoles(ctx, paths, schemas, nil, false)
	return roles, l.sort(diags)
}

// loadRoles decodes role files. balancers is nil when there is no
// roster.hcl to check register blocks against; strict makes references to
// undeclared roles errors.
func (l *Loader) loadRoles(ctx context.Context, paths []string, schemas PluginSchemas, balancers []Balancer, strict bool) ([]*Role, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	var decls []roleDecl
	for _, p := range paths {
		body, more := l.parse(p)
		diags = append(diags, more...)
		ds, more := decodeRoleFile(body, p)
		diags = append(diags, more...)
		decls = append(decls, ds...)
	}

	// Every role's name is known before any config is decoded, so that
	// references between roles resolve whatever the file order.
	first := map[string]*Role{}
	var roles []*Role
	var kept []roleDecl
	for _, d := range decls {
		r := d.role
		if prev, dup := first[r.Name]; dup {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Duplicate role",
				Detail:   fmt.Sprintf("A role named %q is already declared at %s; role names must be unique.", r.Name, prev.Range),
				Subject:  r.Range.Ptr(),
			})
			continue
		}
		first[r.Name] = r
		roles = append(roles, r)
		kept = append(kept, d)
	}

	if balancers != nil {
		diags = append(diags, checkRegisters(roles, balancers)...)
	}

	cache := &schemaCache{inner: schemas, m: map[string]schemaResult{}}
	declared := map[string]bool{}
	for _, r := range roles {
		declared[r.Name] = true
	}
	for _, d := range kept {
		diags = append(diags, decodeConfig(ctx, d, cache, declared, strict)...)
	}
	diags = append(diags, checkCycles(roles)...)
	for _, r := range roles {
		if r.Scale != nil && r.Count.Min == r.Count.Max {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagWarning,
				Summary:  "Scale has no room",
				Detail:   fmt.Sprintf("Role %q has count.min = count.max = %d, so its scale block never changes the pool.", r.Name, r.Count.Min),
				Subject:  r.scaleRange.Ptr(),
			})
		}
	}
	return roles, diags
}

func checkRegisters(roles []*Role, balancers []Balancer) hcl.Diagnostics {
	var diags hcl.Diagnostics
	names := make([]string, 0, len(balancers))
	for _, b := range balancers {
		names = append(names, b.Name)
	}
	for _, r := range roles {
		if r.Register == nil || r.Register.Balancer == "" {
			continue
		}
		found := false
		for _, b := range balancers {
			found = found || b.Name == r.Register.Balancer
		}
		if found {
			continue
		}
		declared := "roster.hcl declares no balancer"
		if len(names) > 0 {
			declared = "the balancers declared are " + quoteList(names)
		}
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Undeclared balancer",
			Detail:   fmt.Sprintf("Role %q registers with balancer %q, but %s.", r.Name, r.Register.Balancer, declared),
			Subject:  r.registerRange.Ptr(),
		})
	}
	return diags
}

type schemaResult struct {
	schema sdk.Schema
	err    error
}

// schemaCache asks each plugin for its schema once per load: asking may
// mean launching the plugin.
type schemaCache struct {
	inner PluginSchemas
	m     map[string]schemaResult
}

func (c *schemaCache) get(ctx context.Context, name string) (sdk.Schema, error) {
	if res, ok := c.m[name]; ok {
		return res.schema, res.err
	}
	s, err := c.inner.PluginSchema(ctx, name)
	c.m[name] = schemaResult{s, err}
	return s, err
}

// decodeConfig decodes a role's config block against its plugin's schema,
// with every declared role's endpoints unknown.
func decodeConfig(ctx context.Context, d roleDecl, cache *schemaCache, declared map[string]bool, strict bool) hcl.Diagnostics {
	r := d.role
	if d.pluginAttr == nil || cache.inner == nil {
		return nil
	}
	var diags hcl.Diagnostics
	schema, err := cache.get(ctx, r.Plugin)
	if err != nil {
		summary := fmt.Sprintf("Cannot get the schema of plugin %q", r.Plugin)
		detail := fmt.Sprintf("Role %q in %s uses plugin %q: %s.", r.Name, r.File, r.Plugin, err)
		if errors.Is(err, sdk.ErrNotFound) {
			summary = fmt.Sprintf("Plugin %q not found", r.Plugin)
			detail = fmt.Sprintf("Role %q in %s uses plugin %q, which is neither built in nor an executable roster-role-%s in plugin_dir: %s.",
				r.Name, r.File, r.Plugin, r.Plugin, err)
		}
		return hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  summary,
			Detail:   detail,
			Subject:  d.pluginAttr.Expr.Range().Ptr(),
		}}
	}
	if ri, ok := cache.inner.(RoleInfos); ok {
		// The plugin answered its schema: its Info is at hand (the host
		// asked both in one launch); without it, the role is not stateful.
		if info, err := ri.RoleInfo(ctx, r.Plugin); err == nil {
			r.Stateful = info.Stateful
		}
	}
	if err := schema.Validate(); err != nil {
		return hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  fmt.Sprintf("Plugin %q declares an invalid schema", r.Plugin),
			Detail:   fmt.Sprintf("Role %q in %s uses plugin %q, whose config schema is broken (a bug of the plugin): %s.", r.Name, r.File, r.Plugin, err),
			Subject:  d.pluginAttr.Expr.Range().Ptr(),
		}}
	}
	r.Schema = schema
	r.spec = schema.HCLSpec()
	r.sensitive = sensitiveRanges(r.ConfigBody, schema)

	names := map[string]bool{}
	for name := range declared {
		names[name] = true
	}
	refs, refDiags := roleReferences(r, declared, strict)
	diags = append(diags, refDiags...)
	for _, t := range refs {
		// An undeclared role is reported once above; treating it as declared
		// here keeps hcl from reporting it a second time.
		names[t[1].(hcl.TraverseAttr).Name] = true
	}
	r.refs = refs
	r.References = referencedNames(refs)

	val, more := decodeBody(r, unknownRoles(names))
	diags = append(diags, more...)
	r.Config = val
	return diags
}

// decodeBody decodes ConfigBody with the given `role` variable, pointing
// diagnostics that have no place (a missing config block) at the role,
// keeping values of sensitive attributes out of them, and resolving
// relative file:// URLs against the role file's directory.
func decodeBody(r *Role, roleVar cty.Value) (cty.Value, hcl.Diagnostics) {
	ectx := &hcl.EvalContext{Variables: map[string]cty.Value{"role": roleVar}}
	val, diags := hcldec.Decode(r.ConfigBody, r.spec, ectx)
	diags = append(diags, CheckBlockCounts(r.ConfigBody, r.Schema)...)
	for _, diag := range diags {
		if diag.Subject == nil || diag.Subject.Filename == "" {
			diag.Subject = r.Range.Ptr()
			if diag.Detail != "" {
				diag.Detail += " "
			}
			diag.Detail += fmt.Sprintf("Role %q has no config block.", r.Name)
		}
		for _, s := range r.sensitive {
			if diag.Subject != nil && s.Overlaps(*diag.Subject) {
				diag.Expression = nil
				diag.EvalContext = nil
			}
		}
	}
	if !diags.HasErrors() {
		// Defaults are written by plugins and may be of a near type (a
		// whole number for a string); the value must have the spec's.
		if conv, err := convert.Convert(val, hcldec.ImpliedType(r.spec)); err == nil {
			val = conv
		}
		dir := filepath.Dir(r.File)
		if abs, err := filepath.Abs(dir); err == nil {
			dir = abs
		}
		val = resolveFileURLs(val, dir)
	}
	return val, diags
}

// resolveFileURLs rewrites relative file:// URLs in a config value to
// absolute ones, relative to dir.
func resolveFileURLs(v cty.Value, dir string) cty.Value {
	out, err := cty.Transform(v, func(_ cty.Path, v cty.Value) (cty.Value, error) {
		if v.Type() != cty.String || !v.IsKnown() || v.IsNull() || v.IsMarked() {
			return v, nil
		}
		s := v.AsString()
		if !strings.HasPrefix(s, "file://") {
			return v, nil
		}
		return cty.StringVal(resolveFileURL(s, dir)), nil
	})
	if err != nil {
		return v
	}
	return out
}

// Validate loads what each path names and returns every diagnostic: a
// roster.hcl (with its role files), a role file, or a directory (its
// roster.hcl when it has one, else its *.hcl role files). A file holding
// role blocks is a role file; any other is a roster.hcl. Role files named
// on their own are loaded together, their plugin schemas taken from the
// roster.hcl beside them or one directory up, when there is one.
func (l *Loader) Validate(ctx context.Context, paths []string, schemas SchemasFunc) (orchestrators []*Orchestrator, roles []*Role, diags hcl.Diagnostics) {
	var roleFiles []string
	loaded := map[string]bool{}
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Cannot read path",
				Detail:   fmt.Sprintf("%s.", err),
			})
			continue
		}
		if fi.IsDir() {
			rp := filepath.Join(p, "roster.hcl")
			if _, err := os.Stat(rp); err == nil {
				o, more := l.Load(ctx, rp, schemas)
				orchestrators = append(orchestrators, o)
				diags = append(diags, more...)
				for _, f := range o.RoleFiles {
					loaded[filepath.Clean(f)] = true
				}
				continue
			}
			matches, _ := filepath.Glob(filepath.Join(p, "*.hcl"))
			if len(matches) == 0 {
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "No configuration files",
					Detail:   fmt.Sprintf("The directory %s holds neither roster.hcl nor *.hcl role files.", p),
				})
			}
			roleFiles = append(roleFiles, matches...)
			continue
		}
		if l.isRoleFile(p) {
			roleFiles = append(roleFiles, p)
			continue
		}
		o, more := l.Load(ctx, p, schemas)
		orchestrators = append(orchestrators, o)
		diags = append(diags, more...)
		for _, f := range o.RoleFiles {
			loaded[filepath.Clean(f)] = true
		}
	}

	var alone []string
	seen := map[string]bool{}
	for _, f := range roleFiles {
		c := filepath.Clean(f)
		if loaded[c] || seen[c] {
			continue
		}
		seen[c] = true
		alone = append(alone, f)
	}
	for _, o := range orchestrators {
		roles = append(roles, o.Roles...)
	}
	if len(alone) == 0 {
		return orchestrators, roles, l.sort(diags)
	}
	var ps PluginSchemas
	if schemas != nil {
		o := l.nearbyOrchestrator(alone[0])
		var err error
		if ps, err = schemas(o); err != nil {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Cannot load plugins",
				Detail:   fmt.Sprintf("The plugins could not be loaded, so role configs are not checked: %s.", err),
			})
		}
	}
	rs, more := l.LoadRoleFiles(ctx, alone, ps)
	return orchestrators, append(roles, rs...), l.sort(append(diags, more...))
}

// isRoleFile says whether the file at path holds role blocks. A file that
// does not parse is judged by its name.
func (l *Loader) isRoleFile(path string) bool {
	if filepath.Base(path) == "roster.hcl" {
		return false
	}
	src, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	f, _ := hclsyntax.ParseConfig(src, path, hcl.InitialPos)
	if f == nil {
		return true
	}
	body, ok := f.Body.(*hclsyntax.Body)
	if !ok {
		return true
	}
	for _, b := range body.Blocks {
		if b.Type == "role" {
			return true
		}
	}
	// Only roster.hcl has top-level attributes or these blocks.
	if len(body.Attributes) > 0 {
		return false
	}
	for _, b := range body.Blocks {
		for _, rb := range rosterSchema.Blocks {
			if b.Type == rb.Type {
				return false
			}
		}
	}
	return true
}

// nearbyOrchestrator decodes, silently, the roster.hcl beside a role file
// or one directory up, for its plugin_dir and pins; the defaults of the
// current directory otherwise.
func (l *Loader) nearbyOrchestrator(roleFile string) *Orchestrator {
	dir := filepath.Dir(roleFile)
	for _, d := range []string{dir, filepath.Dir(dir)} {
		p := filepath.Join(d, "roster.hcl")
		src, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		f, diags := hclsyntax.ParseConfig(src, p, hcl.InitialPos)
		if diags.HasErrors() {
			break
		}
		o, _ := decodeOrchestrator(f.Body, p)
		return o
	}
	return DefaultOrchestrator(".")
}

func fileStart(path string) hcl.Range {
	return hcl.Range{Filename: path, Start: hcl.InitialPos, End: hcl.InitialPos}
}

// referencedNames returns the role names a role's traversals refer to,
// sorted, each once.
func referencedNames(refs []hcl.Traversal) []string {
	set := map[string]bool{}
	for _, t := range refs {
		set[t[1].(hcl.TraverseAttr).Name] = true
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
