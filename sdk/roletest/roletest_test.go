package roletest_test

import (
	"strings"
	"testing"

	"github.com/rosterhq/roster/sdk"
	"github.com/rosterhq/roster/sdk/internal/testrole"
	"github.com/rosterhq/roster/sdk/roletest"
	"github.com/zclconf/go-cty/cty"
)

const echoPkg = "github.com/rosterhq/roster/sdk/internal/testrole/roster-role-echo"

func echoCase() roletest.Case {
	return roletest.Case{
		Config: map[string]any{
			"greeting": "hi",
			"listener": []any{map[string]any{"port": 80}},
			"vhost":    map[string]any{"a": map[string]any{"root": "/srv/a"}},
		},
		WantEndpoints: []string{"echo"},
	}
}

func checkEcho(t *testing.T, r *roletest.Result) {
	t.Helper()
	if len(r.Progress) != 3 || r.Progress[0].Step != "prepare" || r.Progress[2].Fraction != 1 {
		t.Errorf("progress = %+v, want prepare, write, done", r.Progress)
	}
	if r.Drain.OpenConnections != 7 {
		t.Errorf("drain open connections = %d, want 7", r.Drain.OpenConnections)
	}
	if len(r.Teardown.Logs) != 1 || r.Teardown.Logs[0].Name != "echo.log" {
		t.Errorf("teardown logs = %+v", r.Teardown.Logs)
	}
	got, err := testrole.DecodeConfig(r.Health.Reason)
	if err != nil {
		t.Fatalf("decoding the echoed config: %v", err)
	}
	if !got.RawEquals(r.Config.Value()) {
		t.Errorf("the role saw %#v\nthe harness sent %#v", got, r.Config.Value())
	}
	if g := got.GetAttr("listener").Index(cty.NumberIntVal(0)).GetAttr("host"); g != cty.StringVal("127.0.0.1") {
		t.Errorf("listener host default not applied: %#v", g)
	}
	if !r.Info.Configurable {
		t.Errorf("info says echo is not configurable")
	}
}

func TestRunInProcess(t *testing.T) {
	r := roletest.Run(t, &testrole.Echo{}, echoCase())
	checkEcho(t, r)
}

func TestRunBinary(t *testing.T) {
	bin := roletest.Build(t, echoPkg)
	r := roletest.RunBinary(t, bin, echoCase())
	checkEcho(t, r)
}

func TestRunHCL(t *testing.T) {
	r := roletest.Run(t, &testrole.Echo{}, roletest.Case{
		ConfigHCL: `
greeting = "hey"
tags     = ["a", "b"]
limits   = { cpu = 2, mem = "1G" }
listener {
  port = 8080
}
tls {
  cert = "c.pem"
}
`,
	})
	checkEcho(t, r)
	if got := r.Config.Strings("tags"); strings.Join(got, ",") != "a,b" {
		t.Errorf("tags = %v", got)
	}
}

func TestConfigError(t *testing.T) {
	for name, c := range map[string]roletest.Case{
		"wrong type":      {Config: map[string]any{"count": "many"}, WantConfigError: "number is required"},
		"unknown":         {Config: map[string]any{"colour": "red"}, WantConfigError: "colour"},
		"missing":         {ConfigHCL: "listener {\n}\n", WantConfigError: `"port" is required`},
		"too many blocks": {ConfigHCL: strings.Repeat("listener {\n port = 1\n}\n", 4), WantConfigError: "listener"},
	} {
		t.Run(name, func(t *testing.T) { roletest.Run(t, &testrole.Echo{}, c) })
	}
}

func TestProvisionError(t *testing.T) {
	for name, kind := range testrole.Kinds {
		t.Run(name, func(t *testing.T) {
			roletest.Run(t, &testrole.Echo{}, roletest.Case{
				Config:             map[string]any{"fail": name},
				WantProvisionError: kind,
			})
		})
	}
}

func TestDecodeMapBlocks(t *testing.T) {
	cfg, diags := roletest.DecodeMap(testrole.Schema(), map[string]any{
		"tls":   map[string]any{"cert": "x"},
		"vhost": map[string]any{"a": map[string]any{"root": "/a"}, "b": map[string]any{"root": "/b"}},
	})
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	v := cfg.Get("vhost")
	if !v.Type().IsMapType() || v.LengthInt() != 2 || v.Index(cty.StringVal("b")).GetAttr("root").AsString() != "/b" {
		t.Errorf("vhost = %#v", v)
	}
	if cfg.String("greeting") != "hello" || cfg.Int("count") != 1 || !cfg.Bool("enabled") {
		t.Errorf("defaults not applied: %#v", cfg.Value())
	}
	if !cfg.Get("secret").IsNull() {
		t.Errorf("secret = %#v, want null", cfg.Get("secret"))
	}
}

// A schema that does not validate is refused before anything runs.
func TestInvalidSchema(t *testing.T) {
	s := sdk.Schema{Attributes: []sdk.Attribute{{Name: "a", Type: sdk.Number, Default: sdk.StringVal("x")}}}
	if err := s.Validate(); err == nil {
		t.Fatal("a string default for a number validated")
	}
}

func TestDecodeHCLWithRoles(t *testing.T) {
	schema := sdk.Schema{Attributes: []sdk.Attribute{
		{Name: "database", Type: sdk.String, Required: true},
		{Name: "cache", Type: sdk.String},
	}}
	const src = `
database = role.db.endpoints.postgres
cache    = "memcached://${role.cache.endpoints.memcached}"
`
	cfg, diags := roletest.DecodeHCLWithRoles(schema, src, map[string]sdk.Endpoints{
		"db":    {"postgres": "10.0.0.5:5432"},
		"cache": {"memcached": "10.0.0.6:11211"},
	})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if cfg.String("database") != "10.0.0.5:5432" || cfg.String("cache") != "memcached://10.0.0.6:11211" {
		t.Errorf("database %q, cache %q", cfg.String("database"), cfg.String("cache"))
	}
	// A role the test did not give, and no roles at all, are diagnostics.
	if _, diags := roletest.DecodeHCLWithRoles(schema, src, map[string]sdk.Endpoints{"db": {"postgres": "x"}}); !diags.HasErrors() {
		t.Error("a reference to a role not given decoded")
	}
	if _, diags := roletest.DecodeHCL(schema, src); !diags.HasErrors() {
		t.Error("DecodeHCL resolved role references")
	}
}
