package file

import (
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/zclconf/go-cty/cty"

	"github.com/rosterhq/roster/core/config"
)

// DefaultReloadTimeout bounds the reload command when the block sets none.
const DefaultReloadTimeout = 30 * time.Second

// Config is a decoded `balancer "file" "<name>"` block.
type Config struct {
	// Path is the file the balancer writes (relative paths are relative to
	// the directory of the file that declares the block).
	Path string
	// Template is a Go text/template file rendered into Path; empty: the
	// built-in template, an nginx upstream block per role.
	Template string
	// Reload is the command run after the file changed, as argv; a string
	// in the block runs through /bin/sh -c. Empty: none.
	Reload []string
	// ReloadTimeout bounds one run of Reload.
	ReloadTimeout time.Duration
	// DrainWait is how long Drain waits after it took the server out of the
	// file: the file balancer cannot see sessions.
	DrainWait time.Duration

	Range hcl.Range
}

var configSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "path", Required: true},
		{Name: "template"},
		{Name: "reload"},
		{Name: "reload_timeout"},
		{Name: "drain_wait"},
	},
}

// DecodeConfig decodes the body of a `balancer "file"` block. Every mistake
// is a diagnostic pointing at the attribute at fault; it reads no file, so
// that `roster validate` can call it.
func DecodeConfig(body hcl.Body) (Config, hcl.Diagnostics) {
	cfg := Config{ReloadTimeout: DefaultReloadTimeout}
	var d config.BlockDecoder
	errorf := d.Errorf
	if body == nil {
		errorf(hcl.Range{}, "Missing balancer block", "The file balancer needs its block.")
		return cfg, d.Diags
	}
	cfg.Range = body.MissingItemRange()
	c, more := body.Content(configSchema)
	d.Add(more...)
	if c == nil {
		return cfg, d.Diags
	}
	str := func(name string, dst *string) *hcl.Attribute { return d.String(c.Attributes, name, dst) }
	if a := str("path", &cfg.Path); a != nil && cfg.Path == "" {
		errorf(a.Expr.Range(), "Invalid path", "path is the file the balancer writes; it cannot be empty.")
	}
	if a := str("template", &cfg.Template); a != nil && cfg.Template == "" {
		errorf(a.Expr.Range(), "Invalid template", "template is the path of a Go text/template file; leave it out for the built-in nginx upstream template.")
	}
	if a := c.Attributes["reload"]; a != nil {
		v, vd := a.Expr.Value(nil)
		d.Add(vd...)
		switch {
		case vd.HasErrors():
		case v.Type() == cty.String && v.IsKnown() && !v.IsNull():
			if v.AsString() == "" {
				errorf(a.Expr.Range(), "Invalid reload command", "reload is a command line or a list of arguments; it cannot be empty.")
			} else {
				cfg.Reload = []string{"/bin/sh", "-c", v.AsString()}
			}
		default:
			var argv []string
			if err := gohcl.DecodeExpression(a.Expr, nil, &argv); err.HasErrors() || len(argv) == 0 || argv[0] == "" {
				errorf(a.Expr.Range(), "Invalid reload command",
					"reload is a command line run by /bin/sh (\"nginx -s reload\") or a list of arguments ([\"nginx\", \"-s\", \"reload\"]).")
			} else {
				cfg.Reload = argv
			}
		}
	}
	dur := func(name string, dst *time.Duration, allowZero bool) {
		var s string
		a := str(name, &s)
		if a == nil {
			return
		}
		v, err := time.ParseDuration(s)
		if err != nil || v < 0 || (v == 0 && !allowZero) {
			kind := "positive"
			if allowZero {
				kind = "non-negative"
			}
			errorf(a.Expr.Range(), "Invalid duration", "%s is a %s duration such as \"5s\"; %q is not one.", name, kind, s)
			return
		}
		*dst = v
	}
	dur("reload_timeout", &cfg.ReloadTimeout, false)
	dur("drain_wait", &cfg.DrainWait, true)
	if a := c.Attributes["reload_timeout"]; a != nil && c.Attributes["reload"] == nil {
		errorf(a.Range, "Reload timeout without reload", "reload_timeout bounds the reload command; set reload too, or leave it out.")
	}
	return cfg, d.Diags
}
