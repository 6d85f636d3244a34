package config

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

func diagText(t *testing.T, l *Loader, diags hcl.Diagnostics) string {
	t.Helper()
	var b strings.Builder
	w := hcl.NewDiagnosticTextWriter(&b, l.Files(), 0, false)
	if err := w.WriteDiagnostics(diags); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestLoadFull(t *testing.T) {
	schemas := testSchemas()
	l := NewLoader()
	o, diags := l.Load(context.Background(), "testdata/good/full/roster.hcl", schemas.schemasFunc())
	if len(diags) > 0 {
		t.Fatalf("unexpected diagnostics:\n%s", diagText(t, l, diags))
	}
	dir, _ := filepath.Abs("testdata/good/full")
	check := func(name string, got, want any) {
		t.Helper()
		if got != want {
			t.Errorf("%s = %#v, want %#v", name, got, want)
		}
	}
	check("cluster", o.Cluster, "demo")
	check("data_dir", o.DataDir, filepath.Join(dir, "state"))
	check("plugin_dir", o.PluginDir, "/opt/roster/plugins")
	check("spares", o.Spares, 2)
	check("pins", len(o.Plugins), 1)
	check("pin", o.Plugins[0].Checksum, "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")
	check("queue", o.Queue.Type, "sqs")
	check("region", o.Queue.Region, "us-east-1")
	check("endpoint", o.Queue.Endpoint, "http://127.0.0.1:4566")
	check("provider", o.Provider.Type, "local")
	check("boot_delay", o.Provider.BootDelay, 1500*time.Millisecond)
	check("max_machines", o.Provider.MaxMachines, 10)
	check("balancers", len(o.Balancers), 2)
	check("balancer", o.Balancer("front").Type, "haproxy")
	check("logs", o.Logs.Destination, "file://"+filepath.Join(dir, "logs"))
	check("api", o.API.Address, "127.0.0.1:9090")
	check("spare_heartbeat", o.Agent.SpareHeartbeat, 10*time.Second)
	check("role files", strings.Join(o.RoleFiles, " "), "testdata/good/full/roles/db.hcl testdata/good/full/roles/web.hcl")
	check("roles", len(o.Roles), 3)
	for name, n := range schemas.calls {
		check("calls of "+name, n, 1)
	}

	web := o.Role("web")
	check("web plugin", web.Plugin, "lamp")
	check("web reuse", web.Reuse, true)
	check("web count", web.Count, Count{Min: 2, Max: 8})
	check("web scale", *web.Scale, Scale{Metric: "busy_workers", UpAbove: 0.75, DownBelow: 0.25, Tolerance: DefaultTolerance, Window: time.Minute, CooldownUp: 45 * time.Second, CooldownDown: 5 * time.Minute})
	check("web health", web.Health, Health{Interval: 10 * time.Second, Timeout: 3 * time.Second, UnhealthyAfter: 5, LostAfter: 30 * time.Second})
	check("web provision", web.Provision.Timeout, 20*time.Minute)
	check("web drain", web.Drain.Timeout, time.Duration(0))
	check("web register", *web.Register, Register{Balancer: "front", Endpoint: "https"})
	check("web references", strings.Join(web.References, ","), "db")
	cfg := web.Config
	check("document_root", cfg.GetAttr("document_root").AsString(), "file://"+filepath.Join(dir, "roles/site"))
	check("memcached_mb default", cfg.GetAttr("memcached_mb").AsBigFloat().String(), "64")
	check("database unknown", cfg.GetAttr("database").IsKnown(), false)
	check("vhost", cfg.GetAttr("vhost").GetAttr("server_name").AsString(), "example.org")
	check("packages", cfg.GetAttr("package").LengthInt(), 2)
	check("package version default", cfg.GetAttr("package").Index(cty.NumberIntVal(0)).GetAttr("version").AsString(), "latest")
	check("backend host known", cfg.GetAttr("backend").Index(cty.StringVal("main")).GetAttr("host").IsKnown(), false)
	check("backend type", cfg.GetAttr("backend").Type().Equals(cty.Map(cty.Object(map[string]cty.Type{"host": cty.String, "password": cty.String}))), true)

	db := o.Role("db")
	check("db count", db.Count, Count{Min: 1, Max: 3})
	check("db scale", *db.Scale, Scale{Metric: "load", Target: 0.6, Tolerance: DefaultTolerance, Window: DefaultWindow, CooldownUp: DefaultCooldownUp, CooldownDown: DefaultCooldownDown})
	check("db health", db.Health, Health{Interval: 5 * time.Second, Timeout: 2 * time.Second, UnhealthyAfter: 3, LostAfter: 15 * time.Second})
	check("db port", db.Config.GetAttr("port").AsBigFloat().String(), "5432")
	check("db register", db.Register == nil, true)
	// The db plugin says it is stateful: not refreshed unless the role
	// file says so; web's is not, and refreshes.
	check("db stateful", db.Stateful, true)
	check("db refreshes", db.Refreshes(), false)
	check("web refreshes", web.Refreshes(), true)

	cache := o.Role("cache")
	check("cache tolerance", cache.Scale.Tolerance, 0.2)
	check("cache register", *cache.Register, Register{Balancer: "list", Endpoint: "http"})
	check("cache root", cache.Config.GetAttr("root").AsString(), "/srv/cache")
	check("cache provision_delay", cache.Config.GetAttr("provision_delay").AsString(), "0s")
	check("cache refresh", *cache.Refresh, false)
	check("cache refreshes", cache.Refreshes(), false)
}

func TestLoadDefaults(t *testing.T) {
	l := NewLoader()
	o, diags := l.Load(context.Background(), "testdata/good/minimal/roster.hcl", testSchemas().schemasFunc())
	if len(diags) > 0 {
		t.Fatalf("unexpected diagnostics:\n%s", diagText(t, l, diags))
	}
	dir, _ := filepath.Abs("testdata/good/minimal")
	want := DefaultOrchestrator("testdata/good/minimal")
	if o.Cluster != "roster" || o.DataDir != filepath.Join(dir, ".roster") || o.PluginDir != filepath.Join(dir, ".roster", "plugins") ||
		o.Spares != 0 || o.Queue.Type != "local" || o.Provider.Type != "local" || o.API.Address != "127.0.0.1:7070" ||
		o.Agent.SpareHeartbeat != 30*time.Second || o.Logs.Destination != "file://"+filepath.Join(dir, ".roster", "logs") ||
		o.Logs != want.Logs || len(o.Balancers) != 0 {
		t.Errorf("defaults: %+v", o)
	}
	if len(o.Roles) != 1 {
		t.Fatalf("roles: %d", len(o.Roles))
	}
	r := o.Roles[0]
	if r.Count != (Count{1, 1}) || r.Scale != nil || r.Register != nil || r.Reuse ||
		r.Health != (Health{5 * time.Second, 2 * time.Second, 3, 15 * time.Second}) ||
		r.Provision.Timeout != 10*time.Minute || r.Drain.Timeout != 60*time.Second {
		t.Errorf("role defaults: %+v", r)
	}
	// No config block: the schema's defaults.
	if got := r.Config.GetAttr("port").AsBigFloat().String(); got != "0" {
		t.Errorf("port = %s", got)
	}
	if !r.Config.GetAttr("root").IsNull() {
		t.Errorf("root = %#v", r.Config.GetAttr("root"))
	}
}

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, src := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
