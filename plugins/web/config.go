package web

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"regexp"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/rosterhq/roster/sdk"
	"github.com/rosterhq/roster/sdk/rolekit"
)

// Schema returns the role's config schema; ConfigSchema answers it.
func Schema() sdk.Schema {
	attrs := []sdk.Attribute{
		{Name: "document_root", Type: sdk.String, Required: true,
			Description: "artifact URL of the site: a directory, a .tar.gz or a git repository (file://, http(s)://, s3://, git+https://…#ref)"},
		{Name: "document_root_sha256", Type: sdk.String, Default: sdk.StringVal(""),
			Description: "expected sha256 of the document root artifact (of the archive, or of the directory manifest); checked before use"},
		{Name: "apache_config", Type: sdk.String, Default: sdk.StringVal(""),
			Description: "artifact URL of extra apache configuration: a file, or a directory or .tar.gz of *.conf files, included last"},
		{Name: "apache_config_sha256", Type: sdk.String, Default: sdk.StringVal(""),
			Description: "expected sha256 of the apache_config artifact"},
		{Name: "listen_address", Type: sdk.String, Default: sdk.StringVal("127.0.0.1"),
			Description: "address apache listens on; the http endpoint names it (the machine's own address when it is 0.0.0.0)"},
		{Name: "port", Type: sdk.Number, Default: sdk.NumberIntVal(0),
			Description: "apache's port; 0 picks a free one"},
		{Name: "memcached_port", Type: sdk.Number, Default: sdk.NumberIntVal(0),
			Description: "memcached's port on 127.0.0.1; 0 picks a free one"},
		{Name: "memcached_mb", Type: sdk.Number, Default: sdk.NumberIntVal(64),
			Description: "memcached's memory for items, in MiB"},
		{Name: "php", Type: sdk.Bool, Default: sdk.BoolVal(false),
			Description: "serve *.php with mod_php (libapache2-mod-php); needs the prefork MPM"},
		{Name: "mpm", Type: sdk.String, Default: sdk.StringVal("auto"),
			Description: `apache's MPM: "event", "prefork", or "auto" (prefork when php = true, else event)`},
		{Name: "max_request_workers", Type: sdk.Number, Default: sdk.NumberIntVal(150),
			Description: "MaxRequestWorkers: requests served at once; busy_ratio is relative to it"},
		{Name: "keep_alive", Type: sdk.Bool, Default: sdk.BoolVal(true),
			Description: "KeepAlive"},
		{Name: "keep_alive_timeout", Type: sdk.Number, Default: sdk.NumberIntVal(5),
			Description: "KeepAliveTimeout, in seconds"},
		// Sensitive: env carries what the site needs to reach its backends,
		// passwords included, so core never prints its values.
		{Name: "env", Type: sdk.Map(sdk.String), Default: sdk.NoValue, Sensitive: true,
			Description: "environment of the site's pages, NAME = value, as apache SetEnv lines (PHP: $_SERVER['NAME']); may refer to other roles (LAMP_DB_HOST_PORT = role.db.endpoints.postgres); Configure applies new values with a graceful reload"},
	}
	attrs = append(attrs, rolekit.HealthAttributes()...)
	attrs = append(attrs, rolekit.PackagesAttributes("apache2 and memcached (and libapache2-mod-php with php), such as php-memcached")...)
	return sdk.Schema{Attributes: attrs}
}

// settings is the decoded and checked config.
type settings struct {
	DocumentRoot       string
	DocumentRootSHA256 string
	ApacheConfig       string
	ApacheConfigSHA256 string
	ListenAddress      string
	Port               int
	MemcachedPort      int
	MemcachedMB        int
	PHP                bool
	MPM                string // event or prefork, never auto
	MaxRequestWorkers  int
	KeepAlive          bool
	KeepAliveTimeout   int
	Env                map[string]string // SetEnv, for the site's pages
	rolekit.HTTPHealth
	Packages       []string
	InstallMissing bool
}

// decode reads the config and checks what the schema's types cannot: ranges
// and choices. Every mistake is an sdk.ErrInvalidConfig naming the
// attribute.
func decode(c sdk.Config) (settings, error) {
	s := settings{
		DocumentRoot:       strings.TrimSpace(c.String("document_root")),
		DocumentRootSHA256: strings.TrimSpace(c.String("document_root_sha256")),
		ApacheConfig:       strings.TrimSpace(c.String("apache_config")),
		ApacheConfigSHA256: strings.TrimSpace(c.String("apache_config_sha256")),
		ListenAddress:      strings.TrimSpace(c.String("listen_address")),
		Port:               int(c.Int("port")),
		MemcachedPort:      int(c.Int("memcached_port")),
		MemcachedMB:        int(c.Int("memcached_mb")),
		PHP:                c.Bool("php"),
		MPM:                strings.TrimSpace(c.String("mpm")),
		MaxRequestWorkers:  int(c.Int("max_request_workers")),
		KeepAlive:          c.Bool("keep_alive"),
		KeepAliveTimeout:   int(c.Int("keep_alive_timeout")),
		Packages:           c.Strings("packages"),
		InstallMissing:     c.Bool("install_missing"),
	}
	// Absent attributes (a Config built by hand, without the schema's
	// defaults) take the defaults.
	if !c.Has("keep_alive") {
		s.KeepAlive = true
	}
	if !c.Has("memcached_mb") {
		s.MemcachedMB = 64
	}
	if !c.Has("max_request_workers") {
		s.MaxRequestWorkers = 150
	}
	if !c.Has("keep_alive_timeout") {
		s.KeepAliveTimeout = 5
	}
	if s.ListenAddress == "" {
		s.ListenAddress = "127.0.0.1"
	}
	if s.MPM == "" {
		s.MPM = "auto"
	}

	bad := func(format string, args ...any) (settings, error) {
		return settings{}, sdk.Errorf(sdk.ErrInvalidConfig, "web: "+format, args...)
	}
	h, err := rolekit.DecodeHTTPHealth(c)
	if err != nil {
		return bad("%v", err)
	}
	s.HTTPHealth = h
	if s.Env, err = decodeEnv(c); err != nil {
		return bad("%v", err)
	}
	switch {
	case s.DocumentRoot == "":
		return bad("document_root is required")
	case s.Port < 0 || s.Port > 65535:
		return bad("port %d: want 0..65535 (0 picks a free port)", s.Port)
	case s.MemcachedPort < 0 || s.MemcachedPort > 65535:
		return bad("memcached_port %d: want 0..65535 (0 picks a free port)", s.MemcachedPort)
	case s.Port != 0 && s.Port == s.MemcachedPort:
		return bad("port and memcached_port are both %d", s.Port)
	case s.MemcachedMB < 1:
		return bad("memcached_mb %d: want at least 1", s.MemcachedMB)
	case s.MaxRequestWorkers < 1 || s.MaxRequestWorkers > 20000:
		return bad("max_request_workers %d: want 1..20000", s.MaxRequestWorkers)
	case s.KeepAliveTimeout < 0:
		return bad("keep_alive_timeout %d: want 0 or more seconds", s.KeepAliveTimeout)
	case net.ParseIP(s.ListenAddress) == nil:
		return bad("listen_address %q: want an IP address", s.ListenAddress)
	}
	switch s.MPM {
	case "auto":
		s.MPM = "event"
		if s.PHP {
			s.MPM = "prefork"
		}
	case "event", "prefork":
		if s.PHP && s.MPM != "prefork" {
			return bad("mpm %q with php = true: Debian's mod_php is not thread-safe and needs mpm = \"prefork\" (or \"auto\")", s.MPM)
		}
	case "worker":
		return bad("mpm \"worker\" is not offered: use \"event\", which serves keep-alive connections better")
	default:
		return bad("mpm %q: want \"event\", \"prefork\" or \"auto\"", s.MPM)
	}
	return s, nil
}

// envName is what an env name must look like: a portable environment
// variable name, which every language's pages can read.
var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// maxEnvValue bounds an env value: apache refuses configuration lines
// longer than 8 KiB, quoting may double a value, and the line holds the
// directive and the name too.
const maxEnvValue = 3000

// decodeEnv reads the env map and checks every name and value, so that
// what reaches httpd.conf is one SetEnv line that apache reads back as the
// very value given.
func decodeEnv(c sdk.Config) (map[string]string, error) {
	v := c.Get("env")
	if v.IsNull() {
		return nil, nil
	}
	if !v.IsKnown() || !(v.Type().IsMapType() || v.Type().IsObjectType()) {
		return nil, fmt.Errorf("env: want a map of strings")
	}
	env := map[string]string{}
	for it := v.ElementIterator(); it.Next(); {
		k, e := it.Element()
		name := k.AsString()
		if !e.IsKnown() {
			return nil, fmt.Errorf("env %s: the value is not known yet (a reference to a role without a ready server?)", name)
		}
		if e.IsNull() || !e.Type().Equals(sdk.String) {
			return nil, fmt.Errorf("env %s: want a string", name)
		}
		if err := checkEnv(name, e.AsString()); err != nil {
			return nil, err
		}
		env[name] = e.AsString()
	}
	return env, nil
}

// checkEnv refuses what apache's configuration syntax cannot carry
// faithfully in a quoted argument: line breaks and other control
// characters (a line break would end the directive and start another),
// and "${", which apache replaces with a variable from Define or its own
// environment before it parses the line, with no escape. Names the site's
// pages could not tell from the role's own variables (ROSTER_*) or from a
// request header (HTTP_*: what CGI and PHP call the headers) are refused
// too.
func checkEnv(name, value string) error {
	switch {
	case !envName.MatchString(name):
		return fmt.Errorf("env %q: a name is letters, digits and underscores, not starting with a digit", name)
	case strings.HasPrefix(strings.ToUpper(name), "ROSTER_"):
		return fmt.Errorf("env %s: names starting with ROSTER_ are the role's own (ROSTER_SERVER, ROSTER_MEMCACHED)", name)
	case strings.HasPrefix(strings.ToUpper(name), "HTTP_"):
		return fmt.Errorf("env %s: names starting with HTTP_ are how pages see request headers", name)
	case !utf8.ValidString(value):
		return fmt.Errorf("env %s: the value is not valid UTF-8", name)
	case len(value) > maxEnvValue:
		return fmt.Errorf("env %s: the value is %d bytes, want at most %d", name, len(value), maxEnvValue)
	case strings.Contains(value, "${"):
		return fmt.Errorf("env %s: the value holds \"${\", which apache would replace with a variable of its own", name)
	}
	for i, r := range value {
		if unicode.IsControl(r) {
			return fmt.Errorf("env %s: the value holds the control character %q at byte %d (apache's configuration cannot carry line breaks in a value)", name, r, i)
		}
	}
	return nil
}

// EnvLines returns env as name/value pairs sorted by name, so that the
// same env always renders the same configuration.
func (s settings) EnvLines() []envVar {
	out := make([]envVar, 0, len(s.Env))
	for k, v := range s.Env {
		out = append(out, envVar{Name: k, Value: v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

type envVar struct{ Name, Value string }

// fixed returns a digest of each attribute that only Provision applies:
// the site, the ports and the shape of apache and memcached. Configure
// applies the others (env, keep_alive, keep_alive_timeout, health_path,
// health_status), which a graceful reload, or nothing at all, carries.
func (s settings) fixed() map[string]string {
	vals := map[string]any{
		"document_root":        s.DocumentRoot,
		"document_root_sha256": s.DocumentRootSHA256,
		"apache_config":        s.ApacheConfig,
		"apache_config_sha256": s.ApacheConfigSHA256,
		"listen_address":       s.ListenAddress,
		"port":                 s.Port,
		"memcached_port":       s.MemcachedPort,
		"memcached_mb":         s.MemcachedMB,
		"php":                  s.PHP,
		"mpm":                  s.MPM,
		"max_request_workers":  s.MaxRequestWorkers,
		"packages":             strings.Join(s.Packages, "\x00"),
		"install_missing":      s.InstallMissing,
	}
	out := make(map[string]string, len(vals))
	for k, v := range vals {
		sum := sha256.Sum256(fmt.Appendf(nil, "%v", v))
		out[k] = hex.EncodeToString(sum[:8])
	}
	return out
}

// changedFixed names the attributes of fixed, sorted, whose digest differs
// from was's.
func changedFixed(was, now map[string]string) []string {
	var out []string
	for k, v := range now {
		if w, ok := was[k]; ok && w != v {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// packages returns the Debian packages the settings need.
func (s settings) packages() []string {
	p := []string{"apache2", "memcached"}
	if s.PHP {
		p = append(p, "libapache2-mod-php")
	}
	return append(p, s.Packages...)
}

// endpointHost is the host the http endpoint names: the listen address,
// or for a wildcard the machine's own address, so that a balancer on
// another host can reach the server.
func (s settings) endpointHost() string {
	if ip := net.ParseIP(s.ListenAddress); ip != nil && ip.IsUnspecified() {
		return machineAddress()
	}
	return s.ListenAddress
}

// machineAddress is the IPv4 address other hosts reach this machine at:
// the source address of its default route, else the first global unicast
// address of an interface that is up (a host without a default route,
// such as a network namespace on a private bridge), else 127.0.0.1.
func machineAddress() string {
	// Dialling UDP sends nothing: the kernel only picks the route and the
	// source address (TEST-NET-2 stands for "anywhere beyond this host").
	if c, err := net.Dial("udp4", "198.51.100.1:9"); err == nil {
		ip := c.LocalAddr().(*net.UDPAddr).IP
		c.Close()
		if ip.IsGlobalUnicast() {
			return ip.String()
		}
	}
	ifs, _ := net.Interfaces()
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && n.IP.IsGlobalUnicast() {
				return n.IP.String()
			}
		}
	}
	return "127.0.0.1"
}

func (s settings) String() string {
	return fmt.Sprintf("mpm=%s php=%v port=%d memcached_port=%d", s.MPM, s.PHP, s.Port, s.MemcachedPort)
}
