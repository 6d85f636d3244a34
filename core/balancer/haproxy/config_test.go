package haproxy

import (
	"strings"
	"testing"
	"time"
)

func TestDecodeConfig(t *testing.T) {
	cfg, diags := DecodeConfig(parseBody(t, `
frontend       = "127.0.0.1:8080"
role           = "web"
balance        = "leastconn"
check_path     = "/health.php"
check_interval = "1s"
maxconn        = 100
server_maxconn = 8
haproxy        = "/usr/sbin/haproxy"
timeouts {
  connect = "1s"
  server  = "2m"
}
`))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if !cfg.Managed() || cfg.Frontend != "127.0.0.1:8080" || cfg.Role != "web" || cfg.Balance != "leastconn" ||
		cfg.CheckPath != "/health.php" || cfg.CheckInterval != time.Second || cfg.MaxConn != 100 || cfg.ServerMaxConn != 8 ||
		cfg.Binary != "/usr/sbin/haproxy" || cfg.Mode != "http" {
		t.Fatalf("cfg = %+v", cfg)
	}
	if cfg.Timeouts != (Timeouts{Connect: time.Second, Client: DefaultClientTimeout, Server: 2 * time.Minute, Check: DefaultCheckTimeout}) {
		t.Fatalf("timeouts = %+v", cfg.Timeouts)
	}

	cfg, diags = DecodeConfig(parseBody(t, `
socket   = "/run/haproxy/admin.sock"
backends = { web = "be_web", api = "be_api" }
`))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if cfg.Managed() || cfg.Backends["api"] != "be_api" || cfg.Balance != DefaultBalance {
		t.Fatalf("cfg = %+v", cfg)
	}
}

// TestDecodeConfigErrors checks that each mistake is reported, on its line.
func TestDecodeConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		src     string
		summary string
		line    int
	}{
		{``, "Missing frontend or socket", 1},
		{`frontend = "localhost:8080"`, "Invalid frontend", 1},
		{`frontend = "127.0.0.1"`, "Invalid frontend", 1},
		{"frontend = \"127.0.0.1:8080\"\nsocket = \"/x.sock\"\nbackends = { web = \"b\" }", "Both frontend and socket", 2},
		{"frontend = \":8080\"\nbackends = { web = \"b\" }", "Backends without socket", 2},
		{`socket = "/x.sock"`, "Missing backends", 1},
		{"socket = \"/x.sock\"\nbackends = { web = \"be web\" }", "Invalid backend name", 2},
		{"socket = \"/x.sock\"\nbackends = { web = \"b\" }\nrole = \"web\"", "Role in attach mode", 3},
		{"frontend = \":8080\"\nbalance = \"source\"", "Invalid balance", 2},
		{"frontend = \":8080\"\nmode = \"udp\"", "Invalid mode", 2},
		{"frontend = \":8080\"\ncheck_path = \"health\"", "Invalid check path", 2},
		{"frontend = \":8080\"\nmode = \"tcp\"\ncheck_path = \"/health\"", "HTTP check in tcp mode", 3},
		{"frontend = \":8080\"\ncheck_interval = \"often\"", "Invalid duration", 2},
		{"frontend = \":8080\"\nmaxconn = 0", "Invalid maxconn", 2},
		{"frontend = \":8080\"\ntimeouts {\n  client = \"-1s\"\n}", "Invalid duration", 3},
		{"frontend = \":8080\"\ntimeouts {}\ntimeouts {}", "Duplicate timeouts block", 3},
		{"frontend = \":8080\"\nfrontends = 1", "Unsupported argument", 2},
		{"frontend = \":8080\"\nmaxconn = \"many\"", "Unsuitable value type", 2},
	} {
		_, diags := DecodeConfig(parseBody(t, tc.src))
		found := false
		for _, d := range diags {
			if d.Summary == tc.summary && d.Subject != nil && d.Subject.Start.Line == tc.line && d.Subject.Filename == "roster.hcl" {
				found = true
			}
		}
		if !found {
			t.Errorf("%q: diagnostics %v, want %q on line %d", tc.src, diags, tc.summary, tc.line)
		}
	}
	if _, diags := DecodeConfig(nil); !diags.HasErrors() || !strings.Contains(diags.Error(), "Missing balancer block") {
		t.Errorf("nil body: %v", diags)
	}
}
