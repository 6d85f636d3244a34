package dns

import (
	"encoding/base64"
	"net"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	mdns "github.com/miekg/dns"

	"github.com/rosterhq/roster/core/config"
)

// DefaultTTL is the records' TTL when the block sets none.
const DefaultTTL = 30

// DefaultAlgorithm is the TSIG algorithm when the block sets none.
const DefaultAlgorithm = "hmac-sha256"

// DefaultTimeout bounds one exchange with the server when the block sets none.
const DefaultTimeout = 10 * time.Second

// Record types a block may ask for.
const (
	// TypeAddress writes A or AAAA records, as the endpoint's address is
	// IPv4 or IPv6; clients must know the port.
	TypeAddress = "A"
	// TypeSRV writes an SRV record per server, carrying the port, whose
	// target is an address record of its own, <server>.<zone>.
	TypeSRV = "SRV"
)

// algorithms maps the names a block may use to miekg/dns's algorithm names.
// hmac-md5 is left out on purpose: it is broken.
var algorithms = map[string]string{
	"hmac-sha1":   mdns.HmacSHA1,
	"hmac-sha224": mdns.HmacSHA224,
	"hmac-sha256": mdns.HmacSHA256,
	"hmac-sha384": mdns.HmacSHA384,
	"hmac-sha512": mdns.HmacSHA512,
}

// Secret is a TSIG secret (base64). It prints as "(sensitive)", so that a
// config logged with %v or %+v never shows it.
type Secret string

// String hides the secret.
func (Secret) String() string { return "(sensitive)" }

// GoString hides the secret from %#v too.
func (Secret) GoString() string { return `"(sensitive)"` }

// Config is a decoded `balancer "dns" "<name>"` block.
type Config struct {
	// Server is the authoritative server's host:port ("127.0.0.1:53").
	Server string
	// Zone is the zone the records live in, fully qualified ("example.test.").
	Zone string
	// Name is the record name; empty: the role's name. A relative name is
	// below Zone, one ending in "." is used as written.
	Name string
	// Type is TypeAddress or TypeSRV.
	Type string
	// TTL is the records' TTL in seconds; it is also how long Drain waits
	// after removing a server's records.
	TTL uint32
	// KeyName, Algorithm (miekg/dns form, "hmac-sha256.") and Secret sign
	// every update with TSIG. SecretFile, when set, holds the secret instead.
	KeyName    string
	Algorithm  string
	Secret     Secret
	SecretFile string
	// Timeout bounds one exchange with the server.
	Timeout time.Duration

	Range hcl.Range
}

var configSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "server", Required: true},
		{Name: "zone", Required: true},
		{Name: "name"},
		{Name: "type"},
		{Name: "ttl"},
		{Name: "tsig_key_name", Required: true},
		{Name: "tsig_algorithm"},
		{Name: "tsig_secret"},
		{Name: "tsig_secret_file"},
		{Name: "timeout"},
	},
}

// DecodeConfig decodes the body of a `balancer "dns"` block. Every mistake
// is a diagnostic pointing at the attribute at fault; it reads no file and
// asks no server, so that `roster validate` can call it. A diagnostic never
// quotes tsig_secret.
func DecodeConfig(body hcl.Body) (Config, hcl.Diagnostics) {
	cfg := Config{Type: TypeAddress, TTL: DefaultTTL, Algorithm: algorithms[DefaultAlgorithm], Timeout: DefaultTimeout}
	var d config.BlockDecoder
	errorf := d.Errorf
	if body == nil {
		errorf(hcl.Range{}, "Missing balancer block", "The dns balancer needs its block.")
		return cfg, d.Diags
	}
	cfg.Range = body.MissingItemRange()
	c, more := body.Content(configSchema)
	d.Add(more...)
	if c == nil {
		return cfg, d.Diags
	}
	str := func(name string, dst *string) *hcl.Attribute { return d.String(c.Attributes, name, dst) }
	if a := str("server", &cfg.Server); a != nil {
		host, port, err := net.SplitHostPort(cfg.Server)
		if err != nil || host == "" || port == "" {
			errorf(a.Expr.Range(), "Invalid server", "server is the authoritative server's host:port, such as \"127.0.0.1:53\"; %q is not one.", cfg.Server)
		}
	}
	if a := str("zone", &cfg.Zone); a != nil {
		if _, ok := mdns.IsDomainName(cfg.Zone); !ok || cfg.Zone == "" || cfg.Zone == "." {
			errorf(a.Expr.Range(), "Invalid zone", "zone is a domain name such as \"example.test.\"; %q is not one.", cfg.Zone)
		} else {
			cfg.Zone = mdns.CanonicalName(cfg.Zone)
		}
	}
	if a := str("name", &cfg.Name); a != nil {
		if _, ok := mdns.IsDomainName(cfg.Name); !ok || cfg.Name == "" || cfg.Name == "." {
			errorf(a.Expr.Range(), "Invalid name", "name is the record name, relative to the zone (\"web\") or absolute (\"web.example.test.\"); %q is not one. Leave it out for the role's name.", cfg.Name)
		} else if mdns.IsFqdn(cfg.Name) && cfg.Zone != "" && !mdns.IsSubDomain(cfg.Zone, mdns.CanonicalName(cfg.Name)) {
			errorf(a.Expr.Range(), "Name outside the zone", "name %q is not in zone %q.", cfg.Name, cfg.Zone)
		}
	}
	if a := str("type", &cfg.Type); a != nil {
		switch strings.ToUpper(cfg.Type) {
		case "A", "AAAA":
			cfg.Type = TypeAddress
		case "SRV":
			cfg.Type = TypeSRV
		default:
			errorf(a.Expr.Range(), "Invalid record type", "type is \"A\" (A or AAAA records, as the endpoint's address is IPv4 or IPv6) or \"SRV\" (the endpoint's port too); %q is neither.", cfg.Type)
		}
	}
	if a := c.Attributes["ttl"]; a != nil {
		var ttl int64
		if d.Decode(a, &ttl) {
			// A TTL of 0 would make Drain pointless and some resolvers
			// misbehave; a week is more than any pool wants.
			if ttl < 1 || ttl > 7*24*3600 {
				errorf(a.Expr.Range(), "Invalid ttl", "ttl is the records' TTL in seconds, from 1 to 604800; %d is not.", ttl)
			} else {
				cfg.TTL = uint32(ttl)
			}
		}
	}
	if a := str("tsig_key_name", &cfg.KeyName); a != nil {
		if _, ok := mdns.IsDomainName(cfg.KeyName); !ok || cfg.KeyName == "" || cfg.KeyName == "." {
			errorf(a.Expr.Range(), "Invalid TSIG key name", "tsig_key_name is the name of the key the server knows (key \"roster\" { … } in named.conf); %q is not a valid key name.", cfg.KeyName)
		} else {
			cfg.KeyName = mdns.CanonicalName(cfg.KeyName)
		}
	}
	var alg string
	if a := str("tsig_algorithm", &alg); a != nil {
		if v, ok := algorithms[strings.ToLower(strings.TrimSuffix(alg, "."))]; ok {
			cfg.Algorithm = v
		} else {
			errorf(a.Expr.Range(), "Invalid TSIG algorithm", "tsig_algorithm is one of hmac-sha256 (the default), hmac-sha512, hmac-sha384, hmac-sha224 or hmac-sha1; %q is not.", alg)
		}
	}
	var secret string
	sa := str("tsig_secret", &secret)
	if sa != nil {
		// Never quote the value: it is the key.
		if _, err := base64.StdEncoding.DecodeString(secret); err != nil || secret == "" {
			errorf(sa.Expr.Range(), "Invalid TSIG secret", "tsig_secret is the key's secret in base64, as tsig-keygen prints it; this value is not base64.")
		} else {
			cfg.Secret = Secret(secret)
		}
	}
	fa := str("tsig_secret_file", &cfg.SecretFile)
	if fa != nil && cfg.SecretFile == "" {
		errorf(fa.Expr.Range(), "Invalid TSIG secret file", "tsig_secret_file is the path of a file holding the secret in base64; it cannot be empty.")
	}
	switch {
	case sa != nil && fa != nil:
		errorf(fa.Range, "Two TSIG secrets", "Set tsig_secret or tsig_secret_file, not both.")
	case c.Attributes["tsig_secret"] == nil && c.Attributes["tsig_secret_file"] == nil:
		errorf(cfg.Range, "Missing TSIG secret", "The dns balancer signs its updates: set tsig_secret_file (a file holding the base64 secret) or tsig_secret.")
	}
	var timeout string
	if a := str("timeout", &timeout); a != nil {
		v, err := time.ParseDuration(timeout)
		if err != nil || v <= 0 {
			errorf(a.Expr.Range(), "Invalid duration", "timeout is a positive duration such as \"5s\"; %q is not one.", timeout)
		} else {
			cfg.Timeout = v
		}
	}
	return cfg, d.Diags
}
