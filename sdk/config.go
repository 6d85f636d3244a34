package sdk

import (
	"fmt"

	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/gocty"
)

// Config is the decoded `config` block of a role file: an object value whose
// attributes follow the role's Schema, defaults applied. The accessors return
// the zero value for an attribute that is absent or null; Decode fills a
// struct whose fields carry `cty:"name"` tags.
type Config struct {
	v cty.Value
}

// NewConfig wraps an object value. Core and the sdk's transport use it;
// plugin tests may too.
func NewConfig(v cty.Value) Config { return Config{v: v} }

// ConfigFromMap builds a Config from plain Go values (string, bool, int,
// int64, float64, []string, map[string]string), for tests.
func ConfigFromMap(m map[string]any) (Config, error) {
	attrs := make(map[string]cty.Value, len(m))
	for k, x := range m {
		t, err := gocty.ImpliedType(x)
		if err != nil {
			return Config{}, fmt.Errorf("config attribute %q: %w", k, err)
		}
		v, err := gocty.ToCtyValue(x, t)
		if err != nil {
			return Config{}, fmt.Errorf("config attribute %q: %w", k, err)
		}
		attrs[k] = v
	}
	return Config{v: cty.ObjectVal(attrs)}, nil
}

// Value returns the whole config as one object value.
func (c Config) Value() Value {
	if c.v == cty.NilVal {
		return cty.EmptyObjectVal
	}
	return c.v
}

// Get returns the named attribute, or a null value when it is absent.
func (c Config) Get(name string) Value {
	v := c.Value()
	if v.IsNull() || !v.IsKnown() || !v.Type().IsObjectType() || !v.Type().HasAttribute(name) {
		return cty.NullVal(cty.DynamicPseudoType)
	}
	return v.GetAttr(name)
}

// Has says whether the named attribute is present and not null.
func (c Config) Has(name string) bool {
	v := c.Get(name)
	return !v.IsNull() && v.IsKnown()
}

// String returns a string attribute, or "".
func (c Config) String(name string) string {
	v := c.Get(name)
	if v.IsNull() || !v.IsKnown() || v.Type() != cty.String {
		return ""
	}
	return v.AsString()
}

// Int returns a number attribute as an int64, truncating, or 0.
func (c Config) Int(name string) int64 {
	v := c.Get(name)
	if v.IsNull() || !v.IsKnown() || v.Type() != cty.Number {
		return 0
	}
	i, _ := v.AsBigFloat().Int64()
	return i
}

// Float returns a number attribute, or 0.
func (c Config) Float(name string) float64 {
	v := c.Get(name)
	if v.IsNull() || !v.IsKnown() || v.Type() != cty.Number {
		return 0
	}
	f, _ := v.AsBigFloat().Float64()
	return f
}

// Bool returns a bool attribute, or false.
func (c Config) Bool(name string) bool {
	v := c.Get(name)
	if v.IsNull() || !v.IsKnown() || v.Type() != cty.Bool {
		return false
	}
	return v.True()
}

// Strings returns a list or set of strings, or nil.
func (c Config) Strings(name string) []string {
	v := c.Get(name)
	if v.IsNull() || !v.IsKnown() || !(v.Type().IsListType() || v.Type().IsSetType() || v.Type().IsTupleType()) {
		return nil
	}
	var out []string
	for it := v.ElementIterator(); it.Next(); {
		_, e := it.Element()
		if e.IsNull() || e.Type() != cty.String {
			continue
		}
		out = append(out, e.AsString())
	}
	return out
}

// Decode copies the config into target, a pointer to a struct whose fields
// carry `cty:"attribute_name"` tags (go-cty's gocty rules).
func (c Config) Decode(target any) error {
	return gocty.FromCtyValue(c.Value(), target)
}
