package config

import (
	"regexp"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// Defaults of role files.
const (
	DefaultCountMin         = 1
	DefaultMetric           = "load"
	DefaultTolerance        = 0.1
	DefaultWindow           = 30 * time.Second
	DefaultCooldownUp       = 30 * time.Second
	DefaultCooldownDown     = 2 * time.Minute
	DefaultHealthInterval   = 5 * time.Second
	DefaultHealthTimeout    = 2 * time.Second
	DefaultUnhealthyAfter   = 3
	DefaultLostAfterFactor  = 3 // lost_after defaults to 3 × interval
	DefaultProvisionTimeout = 10 * time.Minute
	DefaultDrainTimeout     = 60 * time.Second
	DefaultRegisterEndpoint = "http"
)

// Role names become server names (<role>-<n>), parts of queue names and
// HCL traversals (role.<name>.endpoints…).
var roleNameRe = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)

var roleFileSchema = &hcl.BodySchema{
	Blocks: []hcl.BlockHeaderSchema{{Type: "role", LabelNames: []string{"name"}}},
}

var roleSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "plugin", Required: true},
		{Name: "reuse"},
		{Name: "refresh"},
	},
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "count"},
		{Type: "scale"},
		{Type: "health"},
		{Type: "provision"},
		{Type: "drain"},
		{Type: "register"},
		{Type: "config"},
	},
}

// roleDecl is a role whose envelope is decoded, waiting for its config to
// be decoded once every role's name is known.
type roleDecl struct {
	role       *Role
	pluginAttr *hcl.Attribute // nil when the plugin attribute is broken
}

// decodeRoleFile decodes the envelope of every role block in a role file.
func decodeRoleFile(body hcl.Body, path string) ([]roleDecl, hcl.Diagnostics) {
	d := &decoder{}
	c := d.content(body, roleFileSchema)
	var out []roleDecl
	for _, b := range c.Blocks {
		out = append(out, d.role(b, path))
	}
	if body != nil && len(c.Blocks) == 0 && !d.diags.HasErrors() {
		d.warnf(c.MissingItemRange, "No role in file", "The role file %s declares no role block.", path)
	}
	return out, d.diags
}

func (d *decoder) role(b *hcl.Block, path string) roleDecl {
	r := &Role{
		Name:       b.Labels[0],
		File:       path,
		Count:      Count{Min: DefaultCountMin, Max: DefaultCountMin},
		Health:     Health{Interval: DefaultHealthInterval, Timeout: DefaultHealthTimeout, UnhealthyAfter: DefaultUnhealthyAfter},
		Provision:  Provision{Timeout: DefaultProvisionTimeout},
		Drain:      Drain{Timeout: DefaultDrainTimeout},
		ConfigBody: hcl.EmptyBody(),
		Range:      b.DefRange,
	}
	if !roleNameRe.MatchString(r.Name) {
		d.errorf(b.LabelRanges[0], "Invalid role name",
			"The role name %q names servers (%s-1) and queues: use 1 to 32 lower-case letters, digits, dashes or underscores, starting with a letter.", r.Name, r.Name)
	}
	c := d.content(b.Body, roleSchema)
	decl := roleDecl{role: r}
	if a := d.value(c.Attributes, "plugin", &r.Plugin); a != nil {
		if !pluginNameRe.MatchString(r.Plugin) {
			d.errorf(a.Expr.Range(), "Invalid plugin name",
				"The plugin name %q must be lower-case letters, digits, dashes or underscores.", r.Plugin)
		} else {
			decl.pluginAttr = a
		}
	}
	d.value(c.Attributes, "reuse", &r.Reuse)
	var refresh bool
	if d.value(c.Attributes, "refresh", &refresh) != nil {
		r.Refresh = &refresh
	}

	if cb := d.single(c.Blocks, "count"); cb != nil {
		d.count(cb, r)
	}
	if sb := d.single(c.Blocks, "scale"); sb != nil {
		d.scale(sb, r)
	}
	if hb := d.single(c.Blocks, "health"); hb != nil {
		d.health(hb, r)
	} else {
		r.Health.LostAfter = DefaultLostAfterFactor * r.Health.Interval
	}
	if pb := d.single(c.Blocks, "provision"); pb != nil {
		pc := d.content(pb.Body, &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "timeout"}}})
		d.duration(pc.Attributes, "timeout", &r.Provision.Timeout, true)
	}
	if db := d.single(c.Blocks, "drain"); db != nil {
		dc := d.content(db.Body, &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "timeout"}}})
		d.duration(dc.Attributes, "timeout", &r.Drain.Timeout, false)
	}
	if rb := d.single(c.Blocks, "register"); rb != nil {
		rc := d.content(rb.Body, &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "balancer", Required: true}, {Name: "endpoint"}}})
		reg := &Register{Endpoint: DefaultRegisterEndpoint}
		d.value(rc.Attributes, "balancer", &reg.Balancer)
		d.value(rc.Attributes, "endpoint", &reg.Endpoint)
		r.Register = reg
		r.registerRange = rangeOf(rc.Attributes["balancer"], rb.DefRange)
	}
	if cb := d.single(c.Blocks, "config"); cb != nil {
		r.ConfigBody = cb.Body
	}
	return decl
}

func (d *decoder) count(b *hcl.Block, r *Role) {
	c := d.content(b.Body, &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "min"}, {Name: "max"}}})
	minA := d.nonNegative(c.Attributes, "min", &r.Count.Min)
	maxA := d.nonNegative(c.Attributes, "max", &r.Count.Max)
	switch {
	case minA != nil && maxA == nil && c.Attributes["max"] == nil:
		r.Count.Max = r.Count.Min
	case minA == nil && maxA != nil && c.Attributes["min"] == nil:
		r.Count.Min = min(DefaultCountMin, r.Count.Max)
	case minA != nil && maxA != nil && r.Count.Min > r.Count.Max:
		d.errorf(maxA.Expr.Range(), "Invalid count",
			"count.min (%d) is greater than count.max (%d): the pool can never hold both.", r.Count.Min, r.Count.Max)
	}
}

func (d *decoder) scale(b *hcl.Block, r *Role) {
	c := d.content(b.Body, &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "metric"}, {Name: "up_above"}, {Name: "down_below"}, {Name: "target"}, {Name: "tolerance"},
		{Name: "window"}, {Name: "cooldown_up"}, {Name: "cooldown_down"},
	}})
	s := &Scale{
		Metric:       DefaultMetric,
		Tolerance:    DefaultTolerance,
		Window:       DefaultWindow,
		CooldownUp:   DefaultCooldownUp,
		CooldownDown: DefaultCooldownDown,
	}
	ok := true
	if a := d.value(c.Attributes, "metric", &s.Metric); a != nil && s.Metric == "" {
		d.errorf(a.Expr.Range(), "Invalid metric", "The metric must name \"load\" or a metric the plugin reports.")
		ok = false
	}
	d.duration(c.Attributes, "window", &s.Window, true)
	d.duration(c.Attributes, "cooldown_up", &s.CooldownUp, false)
	d.duration(c.Attributes, "cooldown_down", &s.CooldownDown, false)

	up := d.value(c.Attributes, "up_above", &s.UpAbove)
	down := d.value(c.Attributes, "down_below", &s.DownBelow)
	target := d.value(c.Attributes, "target", &s.Target)
	tol := d.value(c.Attributes, "tolerance", &s.Tolerance)
	hasUp, hasDown := c.Attributes["up_above"] != nil, c.Attributes["down_below"] != nil
	hasTarget := c.Attributes["target"] != nil

	switch {
	case hasTarget && (hasUp || hasDown):
		d.errorf(c.Attributes["target"].Expr.Range(), "Conflicting scale modes",
			"A scale block tracks a target or keeps between thresholds, not both: remove target, or remove up_above and down_below.")
		ok = false
	case hasTarget:
		if target != nil && s.Target <= 0 {
			d.errorf(target.Expr.Range(), "Invalid scale target", "The target must be greater than zero; it is %g.", s.Target)
			ok = false
		}
		if tol != nil && (s.Tolerance < 0 || s.Tolerance >= 1) {
			d.errorf(tol.Expr.Range(), "Invalid scale tolerance",
				"The tolerance is a fraction of the target, at least 0 and less than 1; it is %g.", s.Tolerance)
			ok = false
		}
	case hasUp || hasDown:
		if tol != nil {
			d.errorf(tol.Expr.Range(), "Tolerance without target", "The tolerance applies to target tracking only; this scale block uses thresholds.")
			ok = false
		}
		if !hasUp || !hasDown {
			missing := "down_below"
			if !hasUp {
				missing = "up_above"
			}
			d.errorf(b.DefRange, "Missing "+missing, "A threshold scale block needs both up_above and down_below.")
			ok = false
		} else if up != nil && down != nil && s.UpAbove <= s.DownBelow {
			d.errorf(up.Expr.Range(), "Invalid scale thresholds",
				"up_above (%g) must be greater than down_below (%g), or the pool would grow and shrink at once.", s.UpAbove, s.DownBelow)
			ok = false
		}
	default:
		d.errorf(b.DefRange, "Missing scale mode",
			"A scale block needs either target (target tracking) or up_above and down_below (thresholds).")
		ok = false
	}
	if ok {
		r.Scale = s
		r.scaleRange = b.DefRange
	}
}

func (d *decoder) health(b *hcl.Block, r *Role) {
	c := d.content(b.Body, &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "interval"}, {Name: "timeout"}, {Name: "unhealthy_after"}, {Name: "lost_after"},
	}})
	h := &r.Health
	d.duration(c.Attributes, "interval", &h.Interval, true)
	timeout := d.duration(c.Attributes, "timeout", &h.Timeout, true)
	if a := d.value(c.Attributes, "unhealthy_after", &h.UnhealthyAfter); a != nil && h.UnhealthyAfter < 1 {
		d.errorf(a.Expr.Range(), "Invalid unhealthy_after", "unhealthy_after counts failed checks and must be at least 1; it is %d.", h.UnhealthyAfter)
	}
	h.LostAfter = DefaultLostAfterFactor * h.Interval
	if a := d.duration(c.Attributes, "lost_after", &h.LostAfter, true); a != nil && h.LostAfter <= h.Interval {
		d.errorf(a.Expr.Range(), "Invalid lost_after",
			"lost_after (%s) must be longer than interval (%s), or a server would be lost between two heartbeats.", h.LostAfter, h.Interval)
	}
	if timeout != nil && h.Timeout > h.Interval {
		d.warnf(timeout.Expr.Range(), "Health check timeout longer than interval",
			"A check may still run when the next one is due (timeout %s, interval %s); checks do not overlap, so some are skipped.", h.Timeout, h.Interval)
	}
}

func rangeOf(a *hcl.Attribute, fallback hcl.Range) hcl.Range {
	if a == nil {
		return fallback
	}
	return a.Expr.Range()
}
