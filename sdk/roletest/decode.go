package roletest

import (
	"encoding/json"
	"fmt"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	hcljson "github.com/hashicorp/hcl/v2/json"
	"github.com/rosterhq/roster/sdk"
	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"
)

// DecodeHCL decodes src, the body of a role file's `config` block (without
// the `config {` and `}` around it), against schema, exactly as core does:
// defaults applied, types converted, every mistake a diagnostic.
func DecodeHCL(schema sdk.Schema, src string) (sdk.Config, hcl.Diagnostics) {
	f, diags := hclsyntax.ParseConfig([]byte(src), "config.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		return sdk.Config{}, diags
	}
	return decodeBody(schema, f.Body, nil)
}

// DecodeHCLWithRoles is DecodeHCL for a config that refers to other roles'
// endpoints (`database = role.db.endpoints.postgres`): roles gives the
// endpoints each reference resolves to, as core resolves them from the
// referenced role's first ready server when it commissions a server. A
// reference to a role or an endpoint not in roles is a diagnostic.
func DecodeHCLWithRoles(schema sdk.Schema, src string, roles map[string]sdk.Endpoints) (sdk.Config, hcl.Diagnostics) {
	f, diags := hclsyntax.ParseConfig([]byte(src), "config.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		return sdk.Config{}, diags
	}
	vars := map[string]cty.Value{}
	for name, eps := range roles {
		m := cty.MapValEmpty(cty.String)
		if len(eps) > 0 {
			vals := map[string]cty.Value{}
			for k, v := range eps {
				vals[k] = cty.StringVal(v)
			}
			m = cty.MapVal(vals)
		}
		vars[name] = cty.ObjectVal(map[string]cty.Value{"endpoints": m})
	}
	ctx := &hcl.EvalContext{Variables: map[string]cty.Value{"role": cty.ObjectVal(vars)}}
	return decodeBody(schema, f.Body, ctx)
}

// DecodeMap decodes config values given as plain Go values against schema:
// strings, numbers, bools, slices and maps for attributes; for a nested
// block, a map of its content (single), a slice of them (list) or a map of
// them keyed by label (map). It goes through HCL's JSON syntax, so the
// values are checked and converted as they would be in a role file.
func DecodeMap(schema sdk.Schema, m map[string]any) (sdk.Config, hcl.Diagnostics) {
	src, err := json.Marshal(jsonable(m))
	if err != nil {
		return sdk.Config{}, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Config values cannot be encoded",
			Detail:   err.Error(),
		}}
	}
	f, diags := hcljson.Parse(src, "config.json")
	if diags.HasErrors() {
		return sdk.Config{}, diags
	}
	return decodeBody(schema, f.Body, nil)
}

// jsonable lets cty values stand among plain Go values.
func jsonable(x any) any {
	switch v := x.(type) {
	case cty.Value:
		return ctyjson.SimpleJSONValue{Value: v}
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = jsonable(e)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = jsonable(e)
		}
		return out
	case []map[string]any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = jsonable(e)
		}
		return out
	}
	return x
}

func decodeBody(schema sdk.Schema, body hcl.Body, ctx *hcl.EvalContext) (sdk.Config, hcl.Diagnostics) {
	v, diags := hcldec.Decode(body, schema.HCLSpec(), ctx)
	if diags.HasErrors() {
		return sdk.Config{}, diags
	}
	if err := checkMapBounds(schema, v, ""); err != nil {
		return sdk.Config{}, append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Wrong number of blocks",
			Detail:   err.Error(),
		})
	}
	return sdk.NewConfig(v), diags
}

// checkMapBounds checks MinItems and MaxItems of map blocks, which hcldec
// has no place for.
func checkMapBounds(s sdk.Schema, v cty.Value, path string) error {
	if v.IsNull() || !v.IsKnown() || !v.Type().IsObjectType() {
		return nil
	}
	for _, b := range s.Blocks {
		if !v.Type().HasAttribute(b.Name) {
			continue
		}
		bv := v.GetAttr(b.Name)
		if bv.IsNull() || !bv.IsKnown() {
			continue
		}
		var elems []cty.Value
		if b.Nesting == sdk.NestingSingle {
			elems = []cty.Value{bv}
		} else {
			for it := bv.ElementIterator(); it.Next(); {
				_, e := it.Element()
				elems = append(elems, e)
			}
		}
		if b.Nesting == sdk.NestingMap {
			n := len(elems)
			if n < b.MinItems {
				return fmt.Errorf("at least %d %q blocks are required in %s, %d given", b.MinItems, b.Name, where(path), n)
			}
			if b.MaxItems > 0 && n > b.MaxItems {
				return fmt.Errorf("at most %d %q blocks are allowed in %s, %d given", b.MaxItems, b.Name, where(path), n)
			}
		}
		for _, e := range elems {
			if err := checkMapBounds(b.Schema, e, path+b.Name+"."); err != nil {
				return err
			}
		}
	}
	return nil
}

func where(path string) string {
	if path == "" {
		return "the config block"
	}
	return "block " + path[:len(path)-1]
}
