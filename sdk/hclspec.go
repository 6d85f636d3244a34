package sdk

import (
	"errors"
	"fmt"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// HCLSpec returns the hcldec spec that decodes a `config` block written to
// this schema: required attributes are required, defaults fill absent
// attributes, and nested blocks decode as an object (NestingSingle), a list
// (NestingList) or a map keyed by the block's one label (NestingMap). Where
// a nested block holds attributes of type Any, a list block decodes as a
// tuple and a map block as an object, since cty collections need one element
// type. hcldec checks MinItems and MaxItems of list blocks and whether a
// single block is required; it has no bounds for map blocks, so callers
// check those on the decoded value.
func (s Schema) HCLSpec() hcldec.Spec {
	obj := hcldec.ObjectSpec{}
	for _, a := range s.Attributes {
		ty := a.Type
		if ty == cty.NilType {
			ty = cty.DynamicPseudoType
		}
		var spec hcldec.Spec = &hcldec.AttrSpec{Name: a.Name, Type: ty, Required: a.Required}
		if !a.Required && a.Default != cty.NilVal && !a.Default.IsNull() {
			spec = &hcldec.DefaultSpec{Primary: spec, Default: &hcldec.LiteralSpec{Value: a.Default}}
		}
		obj[a.Name] = spec
	}
	for _, b := range s.Blocks {
		nested := b.Schema.HCLSpec()
		dynamic := hcldec.ImpliedType(nested).HasDynamicTypes()
		switch b.Nesting {
		case NestingList:
			if dynamic {
				obj[b.Name] = &hcldec.BlockTupleSpec{TypeName: b.Name, Nested: nested, MinItems: b.MinItems, MaxItems: b.MaxItems}
			} else {
				obj[b.Name] = &hcldec.BlockListSpec{TypeName: b.Name, Nested: nested, MinItems: b.MinItems, MaxItems: b.MaxItems}
			}
		case NestingMap:
			if dynamic {
				obj[b.Name] = &hcldec.BlockObjectSpec{TypeName: b.Name, LabelNames: []string{"name"}, Nested: nested}
			} else {
				obj[b.Name] = &hcldec.BlockMapSpec{TypeName: b.Name, LabelNames: []string{"name"}, Nested: nested}
			}
		default:
			obj[b.Name] = &hcldec.BlockSpec{TypeName: b.Name, Nested: nested, Required: b.MinItems > 0}
		}
	}
	return obj
}

// ImpliedType returns the type of the object value that a `config` block
// written to this schema decodes to.
func (s Schema) ImpliedType() Type {
	return hcldec.ImpliedType(s.HCLSpec())
}

// Validate reports the mistakes a plugin author can make in a schema: empty
// or repeated names, a missing type, a required attribute with a default, a
// default that does not convert to its attribute's type, an unknown nesting
// or bounds that contradict each other. Core refuses a plugin whose schema
// does not validate; sdk/roletest checks it too.
func (s Schema) Validate() error {
	return s.validate("")
}

func (s Schema) validate(path string) error {
	var errs []error
	seen := map[string]bool{}
	name := func(n string) string { return path + n }
	for _, a := range s.Attributes {
		switch {
		case a.Name == "":
			errs = append(errs, fmt.Errorf("an attribute of %s has no name", blockPath(path)))
			continue
		case seen[a.Name]:
			errs = append(errs, fmt.Errorf("%s is declared twice", name(a.Name)))
		}
		seen[a.Name] = true
		if a.Type == cty.NilType {
			errs = append(errs, fmt.Errorf("attribute %s has no type", name(a.Name)))
			continue
		}
		if a.Default == cty.NilVal {
			continue
		}
		if a.Required {
			errs = append(errs, fmt.Errorf("attribute %s is required and has a default: pick one", name(a.Name)))
		}
		if !a.Default.IsWhollyKnown() {
			errs = append(errs, fmt.Errorf("attribute %s has an unknown default", name(a.Name)))
		} else if _, err := convert.Convert(a.Default, a.Type); err != nil {
			errs = append(errs, fmt.Errorf("attribute %s: default does not fit type %s: %v", name(a.Name), a.Type.FriendlyName(), err))
		}
	}
	for _, b := range s.Blocks {
		switch {
		case b.Name == "":
			errs = append(errs, fmt.Errorf("a block of %s has no name", blockPath(path)))
			continue
		case seen[b.Name]:
			errs = append(errs, fmt.Errorf("%s is declared twice", name(b.Name)))
		}
		seen[b.Name] = true
		switch b.Nesting {
		case NestingSingle:
			if b.MinItems > 1 || b.MaxItems > 1 {
				errs = append(errs, fmt.Errorf("block %s is single: MinItems and MaxItems may only be 0 or 1", name(b.Name)))
			}
		case NestingList, NestingMap:
		default:
			errs = append(errs, fmt.Errorf("block %s has an unknown nesting %d", name(b.Name), int(b.Nesting)))
		}
		if b.MinItems < 0 || b.MaxItems < 0 {
			errs = append(errs, fmt.Errorf("block %s has negative bounds", name(b.Name)))
		}
		if b.MaxItems > 0 && b.MinItems > b.MaxItems {
			errs = append(errs, fmt.Errorf("block %s has MinItems %d above MaxItems %d", name(b.Name), b.MinItems, b.MaxItems))
		}
		if err := b.Schema.validate(name(b.Name) + "."); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func blockPath(path string) string {
	if path == "" {
		return "the config block"
	}
	return "block " + path[:len(path)-1]
}
