package sdk

import (
	"github.com/zclconf/go-cty/cty"
)

// Type is the type of a config attribute: one of String, Number, Bool, or a
// collection built with List, Set, Map or Object. It is go-cty's type, so
// that core and plugins agree on values without conversion; plugin authors
// need not import go-cty themselves.
type Type = cty.Type

// Value is a typed config value (go-cty's Value).
type Value = cty.Value

// The primitive attribute types.
var (
	String = cty.String
	Number = cty.Number
	Bool   = cty.Bool
	// Any accepts a value of any type; prefer a concrete type where you can,
	// since only concrete types are checked before anything starts.
	Any = cty.DynamicPseudoType
)

// List is the type of a list whose elements are of type elem.
func List(elem Type) Type { return cty.List(elem) }

// Set is the type of a set whose elements are of type elem.
func Set(elem Type) Type { return cty.Set(elem) }

// Map is the type of a map with string keys and values of type elem.
func Map(elem Type) Type { return cty.Map(elem) }

// Object is the type of an object with the given attribute types.
func Object(attrs map[string]Type) Type { return cty.Object(attrs) }

// StringVal returns a String value, for defaults.
func StringVal(s string) Value { return cty.StringVal(s) }

// NumberIntVal returns a whole Number value, for defaults.
func NumberIntVal(n int64) Value { return cty.NumberIntVal(n) }

// NumberFloatVal returns a Number value, for defaults.
func NumberFloatVal(f float64) Value { return cty.NumberFloatVal(f) }

// BoolVal returns a Bool value, for defaults.
func BoolVal(b bool) Value { return cty.BoolVal(b) }

// ListVal returns a List value of the given elements, for defaults. With no
// elements, use ListValEmpty.
func ListVal(elems ...Value) Value { return cty.ListVal(elems) }

// ListValEmpty returns an empty list of elements of type elem, for defaults.
func ListValEmpty(elem Type) Value { return cty.ListValEmpty(elem) }

// NoValue is the absent value: an Attribute whose Default is NoValue has no
// default.
var NoValue = cty.NilVal

// Schema is the HCL schema of a role's `config` block (or of a nested block
// within it), in the spirit of Packer's and Terraform's plugin schemas.
type Schema struct {
	Attributes []Attribute
	Blocks     []Block
}

// Attribute is one attribute of a config block.
type Attribute struct {
	Name string
	Type Type
	// Required attributes must be set by the operator.
	Required bool
	// Default is used when the attribute is absent; NoValue for none.
	Default Value
	// Description is shown by `roster plugins` and in docs.
	Description string
	// Sensitive values are never printed nor logged by core.
	Sensitive bool
}

// Nesting says how often a nested block may appear.
type Nesting int

const (
	// NestingSingle is a block that appears at most once (or exactly once
	// when MinItems is 1); its value is an object, or null when absent.
	NestingSingle Nesting = iota
	// NestingList is a block that may be repeated; its value is a list.
	NestingList
	// NestingMap is a block with one label that may be repeated; its value is
	// a map keyed by the label.
	NestingMap
)

// String returns the nesting's name as written in docs.
func (n Nesting) String() string {
	switch n {
	case NestingSingle:
		return "single"
	case NestingList:
		return "list"
	case NestingMap:
		return "map"
	}
	return "unknown"
}

// Block is a nested block of a config block.
type Block struct {
	Name        string
	Nesting     Nesting
	MinItems    int
	MaxItems    int // 0: no limit
	Schema      Schema
	Description string
}
