package config

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zclconf/go-cty/cty"

	"github.com/rosterhq/roster/sdk"
)

const refRoster = `
cluster    = "refs"
plugin_dir = "bin"
roles      = ["*.role.hcl"]

plugin "lamp" {
  checksum = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
}
`

const refWeb = `
role "web" {
  plugin = "lamp"
  config {
    document_root  = "file://site"
    admin_password = "hunter2-${role.db.endpoints.postgres}"
    database       = "postgres://${role.db.endpoints.postgres}/app"
    backend "main" {
      host     = role.cache.endpoints.memcached
      password = "s3cret"
    }
  }
}

role "api" {
  plugin = "lamp"
  config {
    document_root = "/srv/api"
    backend "main" { host = "10.0.0.1" }
  }
}
`

const refOthers = `
role "db" {
  plugin = "db"
}

role "cache" {
  plugin = "db"
}
`

func loadRefs(t *testing.T) (*Orchestrator, string) {
	t.Helper()
	dir := writeFiles(t, map[string]string{
		"roster.hcl":      refRoster,
		"web.role.hcl":    refWeb,
		"others.role.hcl": refOthers,
	})
	schemas := testSchemas()
	var seen *Orchestrator
	o, diags := Load(context.Background(), filepath.Join(dir, "roster.hcl"), func(o *Orchestrator) (PluginSchemas, error) {
		seen = o
		// Phase two needs what phase one decoded.
		if o.PluginDir != filepath.Join(dir, "bin") || len(o.Plugins) != 1 || o.Plugins[0].Name != "lamp" {
			t.Errorf("schemas asked with plugin_dir %q and pins %+v", o.PluginDir, o.Plugins)
		}
		return schemas, nil
	})
	if diags.HasErrors() || len(diags) > 0 {
		t.Fatalf("diagnostics: %s", diags.Error())
	}
	if seen != o {
		t.Error("the schemas function was not given the orchestrator Load returns")
	}
	if schemas.calls["lamp"] != 1 || schemas.calls["db"] != 1 {
		t.Errorf("plugins asked %v times, want once each", schemas.calls)
	}
	return o, dir
}

func TestReferencesAtLoad(t *testing.T) {
	o, _ := loadRefs(t)
	web := o.Role("web")
	if got := strings.Join(web.References, ","); got != "cache,db" {
		t.Errorf("references = %q", got)
	}
	if len(o.Role("api").References) != 0 || len(o.Role("db").References) != 0 {
		t.Error("roles without references have some")
	}
	// At load time, the referenced endpoints are unknown but typed.
	db := web.Config.GetAttr("database")
	if db.IsKnown() || !db.Type().Equals(cty.String) {
		t.Errorf("database = %#v, want an unknown string", db)
	}
	if web.Config.IsWhollyKnown() {
		t.Error("config is wholly known before endpoints are")
	}
	if !o.Role("api").Config.IsWhollyKnown() {
		t.Error("a config without references is not known")
	}
}

func TestResolveConfig(t *testing.T) {
	o, dir := loadRefs(t)
	web := o.Role("web")
	val, diags := web.ResolveConfig(map[string]map[string]string{
		"db":    {"postgres": "10.0.0.5:5432"},
		"cache": {"memcached": "10.0.0.6:11211", "stats": "10.0.0.6:9000"},
		"other": {"http": "x"},
	})
	if len(diags) > 0 {
		t.Fatalf("diagnostics: %s", diags.Error())
	}
	if !val.IsWhollyKnown() {
		t.Fatal("resolved config holds unknown values")
	}
	if got := val.GetAttr("database").AsString(); got != "postgres://10.0.0.5:5432/app" {
		t.Errorf("database = %q", got)
	}
	if got := val.GetAttr("backend").Index(cty.StringVal("main")).GetAttr("host").AsString(); got != "10.0.0.6:11211" {
		t.Errorf("backend host = %q", got)
	}
	// Relative file:// URLs stay resolved against the role file.
	if got := val.GetAttr("document_root").AsString(); got != "file://"+filepath.Join(dir, "site") {
		t.Errorf("document_root = %q", got)
	}
	// Resolving does not change what Load decoded.
	if web.Config.GetAttr("database").IsKnown() {
		t.Error("ResolveConfig changed Role.Config")
	}
	// The config the plugin gets is an sdk.Config.
	if got := sdk.NewConfig(val).Int("memcached_mb"); got != 64 {
		t.Errorf("memcached_mb = %d", got)
	}
}

func TestResolveConfigMissingServer(t *testing.T) {
	o, _ := loadRefs(t)
	web := o.Role("web")
	val, diags := web.ResolveConfig(map[string]map[string]string{
		"db": {"postgres": "10.0.0.5:5432"},
	})
	if !diags.HasErrors() {
		t.Fatal("no error for a role without a ready server")
	}
	var found bool
	for _, d := range diags {
		if d.Summary == `Role "cache" has no ready server` {
			found = true
			if d.Subject == nil || !strings.HasSuffix(d.Subject.Filename, "web.role.hcl") || d.Subject.Start.Line != 9 {
				t.Errorf("subject = %v", d.Subject)
			}
		}
	}
	if !found {
		t.Errorf("diagnostics: %s", diags.Error())
	}
	if val.GetAttr("backend").IsWhollyKnown() {
		t.Error("the missing role's endpoints are known")
	}
	if !val.GetAttr("database").IsKnown() {
		t.Error("the known role's endpoints are not used")
	}

	// A server of the role that lacks the endpoint named.
	_, diags = web.ResolveConfig(map[string]map[string]string{
		"db":    {"http": "10.0.0.5:80"},
		"cache": {"memcached": "10.0.0.6:11211"},
	})
	if !diags.HasErrors() {
		t.Fatal("no error for a missing endpoint")
	}
}

func TestSensitiveNeverPrinted(t *testing.T) {
	o, _ := loadRefs(t)
	web := o.Role("web")
	_, diags := web.ResolveConfig(map[string]map[string]string{
		"db":    {"http": "10.0.0.5:80"}, // no postgres: admin_password fails
		"cache": {"memcached": "10.0.0.6:11211"},
	})
	onSecret := 0
	for _, d := range diags {
		if d.Subject != nil && d.Subject.Start.Line == 6 {
			onSecret++
			if d.Expression != nil || d.EvalContext != nil {
				t.Errorf("a diagnostic about a sensitive attribute keeps its expression: %s", d.Error())
			}
		}
	}
	if onSecret == 0 {
		t.Fatalf("no diagnostic about admin_password: %s", diags.Error())
	}
	val, diags := web.ResolveConfig(map[string]map[string]string{
		"db":    {"postgres": "10.0.0.5:5432"},
		"cache": {"memcached": "10.0.0.6:11211"},
	})
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	red := web.RedactedConfig(val)
	if got := red.GetAttr("admin_password").AsString(); got != Sensitive {
		t.Errorf("admin_password = %q", got)
	}
	main := red.GetAttr("backend").GetAttr("main")
	if got := main.GetAttr("password").AsString(); got != Sensitive {
		t.Errorf("backend password = %q", got)
	}
	if got := main.GetAttr("host").AsString(); got != "10.0.0.6:11211" {
		t.Errorf("backend host = %q", got)
	}
	if s := red.GoString(); strings.Contains(s, "hunter2") || strings.Contains(s, "s3cret") {
		t.Errorf("redacted config shows a secret: %s", s)
	}
}

func TestLoadRoleFilesAlone(t *testing.T) {
	dir := writeFiles(t, map[string]string{"web.hcl": refWeb})
	schemas := testSchemas()
	roles, diags := LoadRoleFiles(context.Background(), []string{filepath.Join(dir, "web.hcl")}, schemas)
	if diags.HasErrors() {
		t.Fatalf("errors: %s", diags.Error())
	}
	// db and cache are declared elsewhere: warnings, one per reference.
	if len(diags) != 3 {
		t.Errorf("want 3 warnings, got %d: %s", len(diags), diags.Error())
	}
	if len(roles) != 2 || schemas.calls["lamp"] != 1 {
		t.Errorf("roles %d, calls %v", len(roles), schemas.calls)
	}
}

func TestLoadWithoutSchemas(t *testing.T) {
	o, diags := Load(context.Background(), "testdata/good/full/roster.hcl", nil)
	if len(diags) > 0 {
		t.Fatal(diags.Error())
	}
	if len(o.Roles) != 3 || o.Role("web").Config != cty.NilVal {
		t.Errorf("roles %d, config %#v", len(o.Roles), o.Role("web").Config)
	}
}

func TestValidateRoleFileUsesNearbyRoster(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"roster.hcl":    "plugin_dir = \"bin\"\nbalancer \"none\" \"front\" {}\n",
		"roles/web.hcl": "role \"web\" {\n  plugin = \"static\"\n  register { balancer = \"elsewhere\" }\n}\n",
	})
	var got string
	l := NewLoader()
	_, roles, diags := l.Validate(context.Background(), []string{filepath.Join(dir, "roles/web.hcl")}, func(o *Orchestrator) (PluginSchemas, error) {
		got = o.PluginDir
		return testSchemas(), nil
	})
	if len(diags) > 0 {
		t.Fatal(diags.Error())
	}
	if got != filepath.Join(dir, "bin") {
		t.Errorf("plugin_dir = %q, want the nearby roster.hcl's", got)
	}
	if len(roles) != 1 || roles[0].Config.GetAttr("port").AsBigFloat().String() != "0" {
		t.Errorf("roles: %+v", roles)
	}

	// The whole directory: roster.hcl with its role files, balancers checked.
	_, roles, diags = NewLoader().Validate(context.Background(), []string{dir}, testSchemas().schemasFunc())
	if len(roles) != 1 || len(diags) != 1 || diags[0].Summary != "Undeclared balancer" {
		t.Errorf("roles %d, diagnostics: %s", len(roles), diags.Error())
	}
}

func TestResolveConfigHandBuilt(t *testing.T) {
	v, diags := (&Role{Name: "web"}).ResolveConfig(nil)
	if len(diags) > 0 || !v.RawEquals(cty.EmptyObjectVal) {
		t.Errorf("%#v %s", v, diags.Error())
	}
	cfg := cty.ObjectVal(map[string]cty.Value{"port": cty.NumberIntVal(80)})
	if v, _ := (&Role{Name: "web", Config: cfg}).ResolveConfig(nil); !v.RawEquals(cfg) {
		t.Errorf("%#v", v)
	}
}
