package ec2

import (
	"path"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"

	"github.com/rosterhq/roster/core/config"
)

// Config is a decoded `provider "ec2" { … }` block.
type Config struct {
	// Region is the AWS region machines are launched in; empty means the
	// one the standard chain finds (AWS_REGION, the shared config file).
	Region string

	// LaunchTemplateID or LaunchTemplateName names the launch template
	// (one of them, or neither when AMI is set); LaunchTemplateVersion is
	// a version number, "$Latest" or "$Default" (empty: the template's
	// default version).
	LaunchTemplateID      string
	LaunchTemplateName    string
	LaunchTemplateVersion string

	// AMI and InstanceType launch without a template; with a template they
	// override the template's values.
	AMI          string
	InstanceType string

	// Subnets are tried in turn, starting at one chosen from the launch
	// token, so that machines spread over them and a subnet without
	// capacity is skipped.
	Subnets         []string
	SecurityGroups  []string
	InstanceProfile string // a name or an ARN
	KeyName         string

	// Tags are added to every instance and volume, after Roster's own.
	Tags map[string]string

	// Spot, when set, launches one-time Spot instances.
	Spot *Spot

	// RequireIMDSv2 makes the instances refuse IMDSv1 (default true).
	RequireIMDSv2 bool

	// Bootstrap is what the user data installs and starts.
	Bootstrap Bootstrap

	Range hcl.Range // the block, for errors found later
}

// Spot configures Spot instances.
type Spot struct {
	// MaxPrice is the highest hourly price in USD, as a decimal string;
	// empty means the On-Demand price (AWS's recommendation).
	MaxPrice string
}

// Bootstrap is what a new machine's user data does at first boot.
type Bootstrap struct {
	// RosterURL is where the `roster` binary is fetched from: s3:// (with
	// the instance profile's credentials) or https://.
	RosterURL string
	// RosterSHA256 is the binary's SHA-256 digest in hex; the boot stops
	// when the fetched file differs.
	RosterSHA256 string
	// FleetKeyParameter is the SSM Parameter Store name of the fleet key
	// (a SecureString holding fleet.key's PEM text).
	FleetKeyParameter string
	// PluginDir is where third-party role plugins live on the machine
	// (baked into the AMI); empty means none.
	PluginDir string
	// LogLevel is the agent's log level (default "info").
	LogLevel string
}

// Defaults of the ec2 provider block.
const (
	DefaultLogLevel = "info"
)

// LaunchTemplate reports whether the config launches from a template.
func (c Config) LaunchTemplate() bool {
	return c.LaunchTemplateID != "" || c.LaunchTemplateName != ""
}

var (
	amiRe       = regexp.MustCompile(`^ami-[0-9a-f]{8,17}$`)
	subnetRe    = regexp.MustCompile(`^subnet-[0-9a-f]{8,17}$`)
	sgRe        = regexp.MustCompile(`^sg-[0-9a-f]{8,17}$`)
	ltIDRe      = regexp.MustCompile(`^lt-[0-9a-f]{8,17}$`)
	ltNameRe    = regexp.MustCompile(`^[A-Za-z0-9().\-/_]{3,128}$`)
	ltVersionRe = regexp.MustCompile(`^([1-9][0-9]*|\$Latest|\$Default)$`)
	itypeRe     = regexp.MustCompile(`^[a-z][a-z0-9-]*\.[a-z0-9]+$`)
	regionRe    = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]+$`)
	profileRe   = regexp.MustCompile(`^([A-Za-z0-9+=,.@_-]{1,128}|arn:aws[a-z-]*:iam::[0-9]{12}:instance-profile/[A-Za-z0-9+=,.@_/-]{1,128})$`)
	keyNameRe   = regexp.MustCompile(`^[\x20-\x7e]{1,255}$`)
	sha256Re    = regexp.MustCompile(`^[0-9a-f]{64}$`)
	priceRe     = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?$`)
	// SSM parameter names: letters, digits, . - _ and / for the hierarchy.
	ssmNameRe = regexp.MustCompile(`^/?[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*$`)
	// safeRe is what may go into the rendered user data unquoted: no
	// spaces, quotes, $ or shell and YAML metacharacters.
	safeRe = regexp.MustCompile(`^[A-Za-z0-9._:/=+@,%-]*$`)
)

var logLevels = []string{"trace", "debug", "info", "warn", "error"}

var configSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "region"},
		{Name: "launch_template"},
		{Name: "launch_template_version"},
		{Name: "ami"},
		{Name: "instance_type"},
		{Name: "subnets"},
		{Name: "security_groups"},
		{Name: "instance_profile"},
		{Name: "key_name"},
		{Name: "tags"},
		{Name: "require_imdsv2"},
	},
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "spot"},
		{Type: "bootstrap"},
	},
}

var spotSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "max_price"}},
}

var bootstrapSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "roster_url", Required: true},
		{Name: "roster_sha256", Required: true},
		{Name: "fleet_key_parameter", Required: true},
		{Name: "plugin_dir"},
		{Name: "log_level"},
	},
}

// DecodeConfig decodes the body of a `provider "ec2"` block. Every mistake
// is a diagnostic pointing at the attribute or block at fault.
func DecodeConfig(body hcl.Body) (Config, hcl.Diagnostics) {
	d := &decoder{}
	cfg := Config{RequireIMDSv2: true, Bootstrap: Bootstrap{LogLevel: DefaultLogLevel}}
	if body == nil {
		d.Errorf(hcl.Range{}, "Missing provider block", "The ec2 provider needs its block.")
		return cfg, d.Diags
	}
	cfg.Range = body.MissingItemRange()
	c, diags := body.Content(configSchema)
	d.Add(diags...)
	if c == nil {
		return cfg, d.Diags
	}
	attrs := c.Attributes

	if a := d.String(attrs, "region", &cfg.Region); a != nil && !regionRe.MatchString(cfg.Region) {
		d.Errorf(a.Expr.Range(), "Invalid region", "The region must be an AWS region such as \"us-east-1\"; %q is not one.", cfg.Region)
	}

	var lt string
	ltAttr := d.String(attrs, "launch_template", &lt)
	if ltAttr != nil {
		switch {
		case strings.HasPrefix(lt, "lt-"):
			if !ltIDRe.MatchString(lt) {
				d.Errorf(ltAttr.Expr.Range(), "Invalid launch template", "A launch template id looks like \"lt-0123456789abcdef0\"; %q is not one.", lt)
			}
			cfg.LaunchTemplateID = lt
		case ltNameRe.MatchString(lt):
			cfg.LaunchTemplateName = lt
		default:
			d.Errorf(ltAttr.Expr.Range(), "Invalid launch template",
				"launch_template is a template id (lt-…) or a name of 3 to 128 letters, digits and ( ) . - / _; %q is neither.", lt)
		}
	}
	if a := d.String(attrs, "launch_template_version", &cfg.LaunchTemplateVersion); a != nil {
		if ltAttr == nil {
			d.Errorf(a.Range, "Launch template version without a template", "launch_template_version needs launch_template.")
		} else if !ltVersionRe.MatchString(cfg.LaunchTemplateVersion) {
			d.Errorf(a.Expr.Range(), "Invalid launch template version",
				"The version is a number, \"$Latest\" or \"$Default\"; %q is none of these.", cfg.LaunchTemplateVersion)
		}
	}
	amiAttr := d.String(attrs, "ami", &cfg.AMI)
	if amiAttr != nil && !amiRe.MatchString(cfg.AMI) {
		d.Errorf(amiAttr.Expr.Range(), "Invalid AMI", "An AMI id looks like \"ami-0123456789abcdef0\"; %q is not one.", cfg.AMI)
	}
	itAttr := d.String(attrs, "instance_type", &cfg.InstanceType)
	if itAttr != nil && !itypeRe.MatchString(cfg.InstanceType) {
		d.Errorf(itAttr.Expr.Range(), "Invalid instance type", "An instance type looks like \"t3.small\"; %q is not one.", cfg.InstanceType)
	}
	_, ltOK := attrs["launch_template"]
	_, amiOK := attrs["ami"]
	switch {
	case !ltOK && !amiOK:
		d.Errorf(cfg.Range, "Missing launch template or AMI",
			"The ec2 provider launches from a launch template (launch_template = \"lt-…\" or a name) or from an AMI (ami and instance_type); set one.")
	case !ltOK && attrs["instance_type"] == nil:
		d.Errorf(attrs["ami"].Range, "Missing instance type", "Without a launch template, ami needs instance_type as well.")
	}

	d.ids(attrs, "subnets", &cfg.Subnets, subnetRe, "subnet-0123456789abcdef0")
	d.ids(attrs, "security_groups", &cfg.SecurityGroups, sgRe, "sg-0123456789abcdef0")
	if a := d.String(attrs, "instance_profile", &cfg.InstanceProfile); a != nil && !profileRe.MatchString(cfg.InstanceProfile) {
		d.Errorf(a.Expr.Range(), "Invalid instance profile", "instance_profile is an instance profile's name or ARN; %q is neither.", cfg.InstanceProfile)
	}
	if a := d.String(attrs, "key_name", &cfg.KeyName); a != nil && !keyNameRe.MatchString(cfg.KeyName) {
		d.Errorf(a.Expr.Range(), "Invalid key name", "key_name is the name of an EC2 key pair, 1 to 255 printable ASCII characters.")
	}
	if a := attrs["tags"]; a != nil && d.Decode(a, &cfg.Tags) {
		for _, k := range sortedKeys(cfg.Tags) {
			lk := strings.ToLower(k)
			switch {
			case strings.HasPrefix(lk, "aws:"), strings.HasPrefix(lk, "roster:"):
				d.Errorf(a.Expr.Range(), "Reserved tag", "The tag %q uses a reserved prefix (aws: belongs to AWS, roster: to Roster).", k)
			case len(k) == 0 || len(k) > 128:
				d.Errorf(a.Expr.Range(), "Invalid tag", "A tag key has 1 to 128 characters; %q does not.", k)
			case len(cfg.Tags[k]) > 256:
				d.Errorf(a.Expr.Range(), "Invalid tag", "The value of tag %q is longer than 256 characters.", k)
			}
		}
	}
	if a := attrs["require_imdsv2"]; a != nil {
		d.Decode(a, &cfg.RequireIMDSv2)
	}

	var spot, boot *hcl.Block
	for _, b := range c.Blocks {
		first := &boot
		if b.Type == "spot" {
			first = &spot
		}
		if *first != nil {
			d.Errorf(b.DefRange, "Duplicate "+b.Type+" block", "The ec2 provider takes one %s block; the first is at %s.", b.Type, (*first).DefRange)
			continue
		}
		*first = b
	}
	if spot != nil {
		cfg.Spot = d.spot(spot)
	}
	if boot == nil {
		d.Errorf(cfg.Range, "Missing bootstrap block",
			"The ec2 provider needs a bootstrap block saying where a new machine gets roster and its fleet key: bootstrap { roster_url = \"s3://…\"  roster_sha256 = \"…\"  fleet_key_parameter = \"/roster/<cluster>/fleet-key\" }.")
	} else {
		d.bootstrap(boot, &cfg.Bootstrap)
	}
	return cfg, d.Diags
}

func (d *decoder) spot(b *hcl.Block) *Spot {
	s := &Spot{}
	c, diags := b.Body.Content(spotSchema)
	d.Add(diags...)
	if c == nil {
		return s
	}
	if a := d.String(c.Attributes, "max_price", &s.MaxPrice); a != nil {
		if f, err := strconv.ParseFloat(s.MaxPrice, 64); !priceRe.MatchString(s.MaxPrice) || err != nil || f <= 0 {
			d.Errorf(a.Expr.Range(), "Invalid Spot price", "max_price is a positive hourly price in USD written as a string, such as \"0.0125\"; %q is not one.", s.MaxPrice)
		}
	}
	return s
}

func (d *decoder) bootstrap(b *hcl.Block, bs *Bootstrap) {
	c, diags := b.Body.Content(bootstrapSchema)
	d.Add(diags...)
	if c == nil {
		return
	}
	attrs := c.Attributes
	if a := d.String(attrs, "roster_url", &bs.RosterURL); a != nil {
		switch {
		case strings.HasPrefix(bs.RosterURL, "http://"):
			d.Errorf(a.Expr.Range(), "Insecure roster URL", "roster_url must use https:// or s3://, not http://: the binary runs as the agent on every machine.")
		case !strings.HasPrefix(bs.RosterURL, "https://") && !strings.HasPrefix(bs.RosterURL, "s3://"):
			d.Errorf(a.Expr.Range(), "Invalid roster URL", "roster_url must be an s3://bucket/key or https:// URL; %q is neither.", bs.RosterURL)
		case !safeRe.MatchString(bs.RosterURL) || len(bs.RosterURL) > 1024:
			d.Errorf(a.Expr.Range(), "Invalid roster URL", "roster_url may hold letters, digits and . _ : / = + @ , %% - only (percent-encode anything else), up to 1024 characters.")
		case strings.HasPrefix(bs.RosterURL, "s3://") && !strings.Contains(strings.TrimPrefix(bs.RosterURL, "s3://"), "/"):
			d.Errorf(a.Expr.Range(), "Invalid roster URL", "An s3:// roster_url names a bucket and a key: s3://bucket/path/roster.")
		}
	}
	if a := d.String(attrs, "roster_sha256", &bs.RosterSHA256); a != nil {
		bs.RosterSHA256 = strings.ToLower(strings.TrimPrefix(bs.RosterSHA256, "sha256:"))
		if !sha256Re.MatchString(bs.RosterSHA256) {
			d.Errorf(a.Expr.Range(), "Invalid checksum", "roster_sha256 is the binary's SHA-256 digest: 64 hexadecimal digits (sha256sum prints it), optionally after \"sha256:\".")
		}
	}
	if a := d.String(attrs, "fleet_key_parameter", &bs.FleetKeyParameter); a != nil {
		if !ssmNameRe.MatchString(bs.FleetKeyParameter) || len(bs.FleetKeyParameter) > 1011 {
			d.Errorf(a.Expr.Range(), "Invalid parameter name",
				"fleet_key_parameter is an SSM Parameter Store name such as \"/roster/demo/fleet-key\" (letters, digits, . - _ and /); %q is not one.", bs.FleetKeyParameter)
		}
	}
	if a := d.String(attrs, "plugin_dir", &bs.PluginDir); a != nil {
		if !path.IsAbs(bs.PluginDir) || !safeRe.MatchString(bs.PluginDir) {
			d.Errorf(a.Expr.Range(), "Invalid plugin directory", "plugin_dir is an absolute path on the machine, such as \"/opt/roster/plugins\", without spaces or quotes.")
		}
	}
	if a := d.String(attrs, "log_level", &bs.LogLevel); a != nil && !slices.Contains(logLevels, bs.LogLevel) {
		d.Errorf(a.Expr.Range(), "Invalid log level", "log_level is one of %s; %q is not.", strings.Join(logLevels, ", "), bs.LogLevel)
	}
}

// decoder collects diagnostics so that every mistake is reported at once.
type decoder struct {
	config.BlockDecoder
}

// ids decodes a list of AWS resource ids, each checked against re; a
// duplicate is an error too, since it would skew the spread over subnets.
func (d *decoder) ids(attrs hcl.Attributes, name string, dst *[]string, re *regexp.Regexp, example string) {
	a := attrs[name]
	if a == nil || !d.Decode(a, dst) {
		return
	}
	seen := map[string]bool{}
	for _, id := range *dst {
		switch {
		case !re.MatchString(id):
			d.Errorf(a.Expr.Range(), "Invalid id in "+name, "Each of %s looks like %q; %q does not.", name, example, id)
		case seen[id]:
			d.Errorf(a.Expr.Range(), "Duplicate id in "+name, "%q appears twice in %s.", id, name)
		}
		seen[id] = true
	}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
