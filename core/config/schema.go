package config

import (
	"fmt"

	"github.com/hashicorp/hcl/v2"

	"github.com/rosterhq/roster/sdk"
)

// CheckBlockCounts reports the nested map blocks of body that break their
// MinItems and MaxItems, which hcldec has no place for. List blocks and
// single blocks (at most one; required when MinItems > 0) are hcldec's.
func CheckBlockCounts(body hcl.Body, s sdk.Schema) hcl.Diagnostics {
	if len(s.Blocks) == 0 {
		return nil
	}
	var diags hcl.Diagnostics
	bs := &hcl.BodySchema{}
	for _, b := range s.Blocks {
		var labels []string
		if b.Nesting == sdk.NestingMap {
			labels = []string{"name"}
		}
		bs.Blocks = append(bs.Blocks, hcl.BlockHeaderSchema{Type: b.Name, LabelNames: labels})
	}
	// Errors of the body's content are hcldec's to report, once.
	content, _, _ := body.PartialContent(bs)
	if content == nil {
		return nil
	}
	for _, b := range s.Blocks {
		blocks := content.Blocks.OfType(b.Name)
		for _, blk := range blocks {
			diags = append(diags, CheckBlockCounts(blk.Body, b.Schema)...)
		}
		if b.Nesting != sdk.NestingMap {
			continue
		}
		if len(blocks) < b.MinItems {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  fmt.Sprintf("Insufficient %s blocks", b.Name),
				Detail:   fmt.Sprintf("At least %d %q blocks are required.", b.MinItems, b.Name),
				Subject:  content.MissingItemRange.Ptr(),
			})
		} else if b.MaxItems > 0 && len(blocks) > b.MaxItems {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  fmt.Sprintf("Too many %s blocks", b.Name),
				Detail:   fmt.Sprintf("No more than %d %q blocks are allowed.", b.MaxItems, b.Name),
				Subject:  blocks[b.MaxItems].DefRange.Ptr(),
			})
		}
	}
	return diags
}

// sensitiveRanges returns the source ranges of the attributes that the
// schema marks sensitive, so that diagnostics about them can be stripped of
// the values an expression evaluated to.
func sensitiveRanges(body hcl.Body, s sdk.Schema) []hcl.Range {
	bs := &hcl.BodySchema{}
	var sensitive []string
	for _, a := range s.Attributes {
		bs.Attributes = append(bs.Attributes, hcl.AttributeSchema{Name: a.Name})
		if a.Sensitive {
			sensitive = append(sensitive, a.Name)
		}
	}
	for _, b := range s.Blocks {
		var labels []string
		if b.Nesting == sdk.NestingMap {
			labels = []string{"name"}
		}
		bs.Blocks = append(bs.Blocks, hcl.BlockHeaderSchema{Type: b.Name, LabelNames: labels})
	}
	content, _, _ := body.PartialContent(bs)
	if content == nil {
		return nil
	}
	var out []hcl.Range
	for _, name := range sensitive {
		if a, ok := content.Attributes[name]; ok {
			out = append(out, a.Range)
		}
	}
	for _, b := range s.Blocks {
		for _, blk := range content.Blocks.OfType(b.Name) {
			out = append(out, sensitiveRanges(blk.Body, b.Schema)...)
		}
	}
	return out
}
