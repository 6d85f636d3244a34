package tomcat

import (
	"encoding/hex"
	"net"
	"regexp"
	"strings"

	"github.com/rosterhq/roster/sdk"
	"github.com/rosterhq/roster/sdk/rolekit"
)

// Schema returns the role's config schema; ConfigSchema answers it.
func Schema() sdk.Schema {
	attrs := []sdk.Attribute{
		{Name: "war", Type: sdk.String, Required: true,
			Description: "artifact URL of the web application: a .war file, or an exploded webapp as a directory, .tar.gz or git repository (file://, http(s)://, s3://, git+https://…#ref)"},
		{Name: "war_sha256", Type: sdk.String, Default: sdk.StringVal(""),
			Description: "expected sha256 of the war artifact (of the file, or of the directory manifest); checked before use"},
		{Name: "context_path", Type: sdk.String, Default: sdk.StringVal("/"),
			Description: `context path the application is served at: "/" deploys it as ROOT, "/shop" as shop`},
		{Name: "listen_address", Type: sdk.String, Default: sdk.StringVal("127.0.0.1"),
			Description: "address the http endpoint listens on (Tomcat's connector, or apache's with apache_front); the endpoint names 127.0.0.1 when it is 0.0.0.0"},
		{Name: "port", Type: sdk.Number, Default: sdk.NumberIntVal(0),
			Description: "Tomcat's HTTP connector port; 0 picks a free one"},
		{Name: "heap_mb", Type: sdk.Number, Default: sdk.NumberIntVal(256),
			Description: "JVM maximum heap (-Xmx), in MiB"},
		{Name: "jvm_options", Type: sdk.List(sdk.String), Default: sdk.ListValEmpty(sdk.String),
			Description: "extra JVM options, each starting with -, added after the role's own (so they win)"},
		{Name: "max_threads", Type: sdk.Number, Default: sdk.NumberIntVal(200),
			Description: "the connector's maxThreads: requests served at once; busy_ratio is relative to it"},
		{Name: "keep_alive_timeout", Type: sdk.Number, Default: sdk.NumberIntVal(5),
			Description: "seconds an idle keep-alive connection is held open (the connector's keepAliveTimeout); Drain waits for such connections too"},
	}
	attrs = append(attrs, rolekit.HealthAttributes()...)
	attrs = append(attrs, []sdk.Attribute{
		{Name: "apache_front", Type: sdk.Bool, Default: sdk.BoolVal(false),
			Description: "put apache2 (mod_proxy_http) in front of Tomcat; the http endpoint is then apache's and the tomcat endpoint Tomcat's"},
		{Name: "front_port", Type: sdk.Number, Default: sdk.NumberIntVal(0),
			Description: "apache's port with apache_front; 0 picks a free one"},
	}...)
	attrs = append(attrs, rolekit.PackagesAttributes("tomcat10 (and apache2 with apache_front)")...)
	return sdk.Schema{Attributes: attrs}
}

// settings is the decoded and checked config.
type settings struct {
	War              string
	WarSHA256        string
	ContextPath      string
	ListenAddress    string
	Port             int
	HeapMB           int
	JVMOptions       []string
	MaxThreads       int
	KeepAliveTimeout int
	rolekit.HTTPHealth
	ApacheFront    bool
	FrontPort      int
	Packages       []string
	InstallMissing bool
}

// contextPathRE is what a context path may be: segments of safe characters.
// '#' is refused since Tomcat reads it as its own separator in file names.
var contextPathRE = regexp.MustCompile(`^(/[A-Za-z0-9._~-]+)+$`)

// decode reads the config and checks what the schema's types cannot: ranges
// and forms. Every mistake is an sdk.ErrInvalidConfig naming the attribute.
func decode(c sdk.Config) (settings, error) {
	s := settings{
		War:              strings.TrimSpace(c.String("war")),
		WarSHA256:        strings.ToLower(strings.TrimSpace(c.String("war_sha256"))),
		ContextPath:      strings.TrimSpace(c.String("context_path")),
		ListenAddress:    strings.TrimSpace(c.String("listen_address")),
		Port:             int(c.Int("port")),
		HeapMB:           int(c.Int("heap_mb")),
		JVMOptions:       c.Strings("jvm_options"),
		MaxThreads:       int(c.Int("max_threads")),
		KeepAliveTimeout: int(c.Int("keep_alive_timeout")),
		ApacheFront:      c.Bool("apache_front"),
		FrontPort:        int(c.Int("front_port")),
		Packages:         c.Strings("packages"),
		InstallMissing:   c.Bool("install_missing"),
	}
	// Absent attributes (a Config built by hand, without the schema's
	// defaults) take the defaults.
	if s.ContextPath == "" {
		s.ContextPath = "/"
	}
	if s.ListenAddress == "" {
		s.ListenAddress = "127.0.0.1"
	}
	if !c.Has("heap_mb") {
		s.HeapMB = 256
	}
	if !c.Has("max_threads") {
		s.MaxThreads = 200
	}
	if !c.Has("keep_alive_timeout") {
		s.KeepAliveTimeout = 5
	}

	bad := func(format string, args ...any) (settings, error) {
		return settings{}, sdk.Errorf(sdk.ErrInvalidConfig, "tomcat: "+format, args...)
	}
	h, err := rolekit.DecodeHTTPHealth(c)
	if err != nil {
		return bad("%v", err)
	}
	s.HTTPHealth = h
	switch {
	case s.War == "":
		return bad("war is required")
	case s.WarSHA256 != "" && !isSHA256(s.WarSHA256):
		return bad("war_sha256 %q: want 64 hex digits", s.WarSHA256)
	case s.ContextPath != "/" && !contextPathRE.MatchString(s.ContextPath):
		return bad("context_path %q: want \"/\" or a path such as \"/shop\" (letters, digits, . _ ~ -; no trailing slash)", s.ContextPath)
	case strings.Contains(s.ContextPath, "/./") || strings.Contains(s.ContextPath+"/", "/../") || strings.HasSuffix(s.ContextPath, "/."):
		return bad("context_path %q: no . or .. segments", s.ContextPath)
	case net.ParseIP(s.ListenAddress) == nil:
		return bad("listen_address %q: want an IP address", s.ListenAddress)
	case s.Port < 0 || s.Port > 65535:
		return bad("port %d: want 0..65535 (0 picks a free port)", s.Port)
	case s.FrontPort < 0 || s.FrontPort > 65535:
		return bad("front_port %d: want 0..65535 (0 picks a free port)", s.FrontPort)
	case s.FrontPort != 0 && !s.ApacheFront:
		return bad("front_port is set but apache_front is false")
	case s.Port != 0 && s.Port == s.FrontPort:
		return bad("port and front_port are both %d", s.Port)
	case s.HeapMB < 16 || s.HeapMB > 1<<20:
		return bad("heap_mb %d: want 16..1048576", s.HeapMB)
	case s.MaxThreads < 1 || s.MaxThreads > 10000:
		return bad("max_threads %d: want 1..10000", s.MaxThreads)
	case s.KeepAliveTimeout < 0 || s.KeepAliveTimeout > 3600:
		return bad("keep_alive_timeout %d: want 0..3600 seconds", s.KeepAliveTimeout)
	}
	for _, o := range s.JVMOptions {
		// Each option is one argument of java's command line: anything not
		// an option would be taken for the main class.
		if !strings.HasPrefix(o, "-") || strings.TrimSpace(o) != o || o == "-" {
			return bad("jvm_options: %q is not a JVM option (each must start with - and have no surrounding spaces)", o)
		}
		if o == "-jar" || o == "-cp" || o == "-classpath" || strings.HasPrefix(o, "--class-path") {
			return bad("jvm_options: %q would change how Tomcat is started", o)
		}
	}
	return s, nil
}

func isSHA256(s string) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) == 32
}

// packages returns the Debian packages the settings need.
func (s settings) packages() []string {
	p := []string{"tomcat10"}
	if s.ApacheFront {
		p = append(p, "apache2")
	}
	return append(p, s.Packages...)
}

// appName is the name the application is deployed under in webapps:
// ROOT for "/", and the path with '#' for '/' otherwise (Tomcat's rule).
func (s settings) appName() string {
	if s.ContextPath == "/" {
		return "ROOT"
	}
	return strings.ReplaceAll(strings.TrimPrefix(s.ContextPath, "/"), "/", "#")
}

// endpointHost is the host the http endpoint names.
func (s settings) endpointHost() string { return rolekit.EndpointHost(s.ListenAddress) }
