package config

import (
	"fmt"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
)

// decoder collects the diagnostics of one file's envelope, so that every
// mistake in it is reported together rather than the first one alone.
type decoder struct {
	diags hcl.Diagnostics
}

func (d *decoder) add(ds ...*hcl.Diagnostic) { d.diags = append(d.diags, ds...) }

func (d *decoder) errorf(subject hcl.Range, summary, format string, args ...any) {
	d.add(&hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  summary,
		Detail:   fmt.Sprintf(format, args...),
		Subject:  subject.Ptr(),
	})
}

func (d *decoder) warnf(subject hcl.Range, summary, format string, args ...any) {
	d.add(&hcl.Diagnostic{
		Severity: hcl.DiagWarning,
		Summary:  summary,
		Detail:   fmt.Sprintf(format, args...),
		Subject:  subject.Ptr(),
	})
}

// content returns body's content under schema; a nil body (a file that did
// not parse) gives empty content.
func (d *decoder) content(body hcl.Body, schema *hcl.BodySchema) *hcl.BodyContent {
	if body == nil {
		return &hcl.BodyContent{Attributes: hcl.Attributes{}}
	}
	c, diags := body.Content(schema)
	d.add(diags...)
	if c == nil {
		c = &hcl.BodyContent{Attributes: hcl.Attributes{}}
	}
	return c
}

// value decodes the named attribute into dst (a pointer, as gohcl takes
// it). It returns the attribute when it is present and decoded cleanly, so
// that callers can check the value and point at it.
func (d *decoder) value(attrs hcl.Attributes, name string, dst any) *hcl.Attribute {
	a, ok := attrs[name]
	if !ok {
		return nil
	}
	// An expression that did not parse or refers to variables has been
	// reported already; its unknown value would only add a second error.
	v, diags := a.Expr.Value(nil)
	if diags.HasErrors() || !v.IsWhollyKnown() {
		d.add(diags...)
		return nil
	}
	diags = gohcl.DecodeExpression(a.Expr, nil, dst)
	d.add(diags...)
	if diags.HasErrors() {
		return nil
	}
	return a
}

// nonNegative decodes a whole number that must not be negative.
func (d *decoder) nonNegative(attrs hcl.Attributes, name string, dst *int) *hcl.Attribute {
	var n int
	a := d.value(attrs, name, &n)
	if a == nil {
		return nil
	}
	if n < 0 {
		d.errorf(a.Expr.Range(), "Invalid "+name, "The value of %s must not be negative; it is %d.", name, n)
		return nil
	}
	*dst = n
	return a
}

// duration decodes a duration written as a string ("30s", "2m"). Zero is
// refused where positive is set.
func (d *decoder) duration(attrs hcl.Attributes, name string, dst *time.Duration, positive bool) *hcl.Attribute {
	var s string
	a := d.value(attrs, name, &s)
	if a == nil {
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		d.errorf(a.Expr.Range(), "Invalid duration",
			"The value of %s must be a duration such as \"30s\", \"2m\" or \"1h30m\" (units ns, us, ms, s, m, h); %q is not one.", name, s)
		return nil
	}
	if v < 0 || (positive && v == 0) {
		want := "must not be negative"
		if positive {
			want = "must be longer than zero"
		}
		d.errorf(a.Expr.Range(), "Invalid duration", "The value of %s %s; it is %q.", name, want, s)
		return nil
	}
	*dst = v
	return a
}

// single returns the one block of a type that may appear at most once,
// reporting every further one with the place of the first.
func (d *decoder) single(blocks hcl.Blocks, typ string) *hcl.Block {
	var first *hcl.Block
	for _, b := range blocks {
		if b.Type != typ {
			continue
		}
		if first != nil {
			d.errorf(b.DefRange, fmt.Sprintf("Duplicate %s block", typ),
				"Only one %s block is allowed here; the first one is at %s.", typ, first.DefRange)
			continue
		}
		first = b
	}
	return first
}
