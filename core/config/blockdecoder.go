package config

import (
	"fmt"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
)

// BlockDecoder helps the owners of the blocks core/config keeps as an
// hcl.Body (balancers, providers) decode their attributes: it collects every
// diagnostic, so that all mistakes in a block are reported together, each
// pointing at its attribute.
type BlockDecoder struct {
	Diags hcl.Diagnostics
}

// Add records diagnostics.
func (d *BlockDecoder) Add(ds ...*hcl.Diagnostic) { d.Diags = append(d.Diags, ds...) }

// Errorf records an error about subject.
func (d *BlockDecoder) Errorf(subject hcl.Range, summary, format string, args ...any) {
	d.Add(&hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  summary,
		Detail:   fmt.Sprintf(format, args...),
		Subject:  subject.Ptr(),
	})
}

// Decode decodes a's value into dst and reports whether it could.
func (d *BlockDecoder) Decode(a *hcl.Attribute, dst any) bool {
	diags := gohcl.DecodeExpression(a.Expr, nil, dst)
	d.Add(diags...)
	return !diags.HasErrors()
}

// String decodes a string attribute; it returns the attribute when present
// and decoded, so that the caller can check the value and point at it.
func (d *BlockDecoder) String(attrs hcl.Attributes, name string, dst *string) *hcl.Attribute {
	a := attrs[name]
	if a == nil || !d.Decode(a, dst) {
		return nil
	}
	return a
}
