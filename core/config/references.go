package config

import (
	"fmt"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"

	"github.com/rosterhq/roster/sdk"
)

// roleReferences finds the role.<name>… traversals in a role's config and
// reports the malformed ones, references to itself and, with strict, to
// roles not declared. It returns the well-formed ones.
func roleReferences(r *Role, declared map[string]bool, strict bool) ([]hcl.Traversal, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	var refs []hcl.Traversal
	for _, t := range hcldec.Variables(r.ConfigBody, r.spec) {
		if t.RootName() != "role" {
			continue // hcl reports the unknown variable
		}
		attr, ok := stepName(t, 1)
		if !ok {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Invalid role reference",
				Detail:   "A reference to another role's endpoints looks like role.<name>.endpoints.<endpoint>, such as role.db.endpoints.postgres.",
				Subject:  t.SourceRange().Ptr(),
			})
			continue
		}
		switch {
		case attr == r.Name:
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Role refers to itself",
				Detail:   fmt.Sprintf("Role %q cannot refer to its own endpoints: they are known only once its server is provisioned.", r.Name),
				Subject:  t.SourceRange().Ptr(),
			})
			continue
		case !declared[attr] && strict:
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Reference to undeclared role",
				Detail:   fmt.Sprintf("Role %q refers to role %q, which no role file declares.", r.Name, attr),
				Subject:  t.SourceRange().Ptr(),
			})
		case !declared[attr]:
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagWarning,
				Summary:  "Reference to a role not among these files",
				Detail:   fmt.Sprintf("Role %q refers to role %q, which none of the files validated declares; it must be declared beside them.", r.Name, attr),
				Subject:  t.SourceRange().Ptr(),
			})
		}
		refs = append(refs, t)
	}
	return refs, diags
}

func stepName(t hcl.Traversal, i int) (string, bool) {
	if len(t) <= i {
		return "", false
	}
	a, ok := t[i].(hcl.TraverseAttr)
	if !ok {
		return "", false
	}
	return a.Name, true
}

// unknownRoles is the `role` variable when no endpoint is known yet: every
// name maps to an object whose endpoints are an unknown map of strings, so
// that type checks pass and values stay unknown.
func unknownRoles(names map[string]bool) cty.Value {
	attrs := make(map[string]cty.Value, len(names))
	for n := range names {
		attrs[n] = cty.ObjectVal(map[string]cty.Value{"endpoints": cty.UnknownVal(cty.Map(cty.String))})
	}
	return cty.ObjectVal(attrs)
}

// ResolveConfig decodes the role's config again with the endpoints of the
// roles it refers to known: endpoints maps a role's name to the endpoints of
// the server chosen for it. A referenced role missing from endpoints has no
// ready server; that is an error diagnostic, and the value returned keeps
// its endpoints unknown. Core calls this when it provisions a server. A
// role that was not decoded against a schema (built by hand, or loaded
// without schemas) resolves to its Config unchanged, an empty object when
// unset.
func (r *Role) ResolveConfig(endpoints map[string]map[string]string) (cty.Value, hcl.Diagnostics) {
	if r.spec == nil {
		// Built by hand (tests) or loaded without schemas: nothing to
		// decode against, so the config is what it is.
		if r.Config == cty.NilVal {
			return cty.EmptyObjectVal, nil
		}
		return r.Config, nil
	}
	var diags hcl.Diagnostics
	attrs := map[string]cty.Value{}
	for _, t := range r.refs {
		name, _ := stepName(t, 1)
		eps, ok := endpoints[name]
		if !ok {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  fmt.Sprintf("Role %q has no ready server", name),
				Detail: fmt.Sprintf("The config of role %q refers to the endpoints of role %q, which has no ready server yet; a server of %q is provisioned once one is.",
					r.Name, name, r.Name),
				Subject: t.SourceRange().Ptr(),
			})
			attrs[name] = cty.ObjectVal(map[string]cty.Value{"endpoints": cty.UnknownVal(cty.Map(cty.String))})
			continue
		}
		m := cty.MapValEmpty(cty.String)
		if len(eps) > 0 {
			vals := make(map[string]cty.Value, len(eps))
			for k, v := range eps {
				vals[k] = cty.StringVal(v)
			}
			m = cty.MapVal(vals)
		}
		attrs[name] = cty.ObjectVal(map[string]cty.Value{"endpoints": m})
	}
	val, more := decodeBody(r, cty.ObjectVal(attrs))
	diags = append(diags, more...)
	if !diags.HasErrors() && !val.IsWhollyKnown() {
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Config not fully known",
			Detail:   fmt.Sprintf("The config of role %q still holds values that are not known.", r.Name),
			Subject:  r.Range.Ptr(),
		})
	}
	return val, diags
}

// Sensitive is what RedactedConfig puts in place of a sensitive value.
const Sensitive = "(sensitive)"

// RedactedConfig returns v, a config value of this role, with the values of
// the attributes its plugin marks sensitive replaced by "(sensitive)": the
// form of a config that may be logged or printed.
func (r *Role) RedactedConfig(v cty.Value) cty.Value {
	return redact(v, r.Schema)
}

func redact(v cty.Value, s sdk.Schema) cty.Value {
	if v.IsNull() || !v.IsKnown() || !v.Type().IsObjectType() {
		return v
	}
	attrs := v.AsValueMap()
	if attrs == nil {
		return v
	}
	for _, a := range s.Attributes {
		if a.Sensitive {
			if x, ok := attrs[a.Name]; ok && !x.IsNull() {
				attrs[a.Name] = cty.StringVal(Sensitive)
			}
		}
	}
	for _, b := range s.Blocks {
		x, ok := attrs[b.Name]
		if !ok || x.IsNull() || !x.IsKnown() {
			continue
		}
		switch {
		case x.Type().IsObjectType() && b.Nesting == sdk.NestingSingle:
			attrs[b.Name] = redact(x, b.Schema)
		case x.CanIterateElements() && x.LengthInt() > 0:
			if x.Type().IsListType() || x.Type().IsTupleType() || x.Type().IsSetType() {
				var elems []cty.Value
				for it := x.ElementIterator(); it.Next(); {
					_, e := it.Element()
					elems = append(elems, redact(e, b.Schema))
				}
				attrs[b.Name] = cty.TupleVal(elems)
			} else {
				elems := map[string]cty.Value{}
				for it := x.ElementIterator(); it.Next(); {
					k, e := it.Element()
					elems[k.AsString()] = redact(e, b.Schema)
				}
				attrs[b.Name] = cty.ObjectVal(elems)
			}
		}
	}
	return cty.ObjectVal(attrs)
}

// checkCycles reports roles whose references go round: none of them could
// be provisioned first.
func checkCycles(roles []*Role) hcl.Diagnostics {
	byName := map[string]*Role{}
	for _, r := range roles {
		byName[r.Name] = r
	}
	const (
		unseen = iota
		onPath
		done
	)
	state := map[string]int{}
	var diags hcl.Diagnostics
	var path []string
	var visit func(r *Role)
	visit = func(r *Role) {
		state[r.Name] = onPath
		path = append(path, r.Name)
		for _, t := range r.refs {
			name, _ := stepName(t, 1)
			next := byName[name]
			if next == nil || next == r {
				continue
			}
			switch state[name] {
			case onPath:
				i := indexOf(path, name)
				cycle := append(append([]string{}, path[i:]...), name)
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "Reference cycle between roles",
					Detail:   fmt.Sprintf("The roles refer to each other's endpoints in a cycle (%s), so none of them can be provisioned first.", strings.Join(cycle, " → ")),
					Subject:  t.SourceRange().Ptr(),
				})
			case unseen:
				visit(next)
			}
		}
		path = path[:len(path)-1]
		state[r.Name] = done
	}
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if state[n] == unseen {
			visit(byName[n])
		}
	}
	return diags
}

func indexOf(xs []string, x string) int {
	for i, y := range xs {
		if y == x {
			return i
		}
	}
	return -1
}
