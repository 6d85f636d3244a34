package sdk_test

import (
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/rosterhq/roster/sdk"
	"github.com/rosterhq/roster/sdk/internal/testrole"
	"github.com/zclconf/go-cty/cty"
)

func decode(t *testing.T, s sdk.Schema, src string) (cty.Value, hcl.Diagnostics) {
	t.Helper()
	f, diags := hclsyntax.ParseConfig([]byte(src), "test.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	return hcldec.Decode(f.Body, s.HCLSpec(), nil)
}

func TestHCLSpecDecodes(t *testing.T) {
	v, diags := decode(t, testrole.Schema(), `
count    = "3"
ports    = [80, 443, 80]
labels   = { team = "web" }
anything = { deep = [1, "two"] }
listener {
  port = 80
}
listener {
  port = 81
  host = "0.0.0.0"
}
tls {
  cert = "c.pem"
}
vhost "a" {
  root = "/srv/a"
}
`)
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	if errs := v.Type().TestConformance(testrole.Schema().ImpliedType()); errs != nil {
		t.Errorf("the value does not conform to the implied type: %v", errs)
	}
	c := sdk.NewConfig(v)
	checks := map[string]bool{
		"default string":       c.String("greeting") == "hello",
		"string converted":     c.Int("count") == 3,
		"default bool":         c.Bool("enabled"),
		"default empty list":   c.Get("tags").RawEquals(cty.ListValEmpty(cty.String)),
		"set dedups":           c.Get("ports").LengthInt() == 2,
		"map":                  c.Get("labels").Index(cty.StringVal("team")).AsString() == "web",
		"absent object null":   c.Get("limits").IsNull(),
		"dynamic keeps type":   c.Get("anything").Type().IsObjectType(),
		"list blocks":          c.Get("listener").LengthInt() == 2,
		"nested default":       c.Get("listener").Index(cty.NumberIntVal(0)).GetAttr("host").AsString() == "127.0.0.1",
		"nested value":         c.Get("listener").Index(cty.NumberIntVal(1)).GetAttr("host").AsString() == "0.0.0.0",
		"single block":         c.Get("tls").GetAttr("cert").AsString() == "c.pem",
		"map block":            c.Get("vhost").Index(cty.StringVal("a")).GetAttr("root").AsString() == "/srv/a",
		"absent secret is nul": c.Get("secret").IsNull(),
	}
	for name, ok := range checks {
		if !ok {
			t.Errorf("%s: %#v", name, v)
		}
	}
}

func TestHCLSpecDiagnostics(t *testing.T) {
	for src, want := range map[string]string{
		`count = "many"`:  "a number is required",
		`colour = "red"`:  `An argument named "colour" is not expected here`,
		"listener {\n}\n": `The argument "port" is required`,
		strings.Repeat("listener {\nport=1\n}\n", 4):       "No more than 3",
		"tls {\ncert = \"a\"\n}\ntls {\ncert = \"b\"\n}\n": "Duplicate tls block",
	} {
		_, diags := decode(t, testrole.Schema(), src)
		if !diags.HasErrors() || !strings.Contains(diags.Error(), want) {
			t.Errorf("%q: diagnostics %q, want %q", src, diags.Error(), want)
		}
	}
}

func TestHCLSpecDynamicBlocks(t *testing.T) {
	s := sdk.Schema{Blocks: []sdk.Block{
		{Name: "item", Nesting: sdk.NestingList, Schema: sdk.Schema{Attributes: []sdk.Attribute{{Name: "v", Type: sdk.Any}}}},
		{Name: "named", Nesting: sdk.NestingMap, Schema: sdk.Schema{Attributes: []sdk.Attribute{{Name: "v", Type: sdk.Any}}}},
		{Name: "one", Nesting: sdk.NestingSingle, MinItems: 1, Schema: sdk.Schema{}},
	}}
	v, diags := decode(t, s, "one {}\nitem { v = 1 }\nitem { v = \"x\" }\nnamed \"a\" { v = true }\nnamed \"b\" { v = [1] }\n")
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	if !v.GetAttr("item").Type().IsTupleType() || !v.GetAttr("named").Type().IsObjectType() {
		t.Errorf("blocks with dynamic attributes: %#v", v)
	}
	if _, diags := decode(t, s, ""); !diags.HasErrors() {
		t.Errorf("a missing required single block decoded")
	}
}

func TestSchemaValidate(t *testing.T) {
	if err := testrole.Schema().Validate(); err != nil {
		t.Fatalf("the test schema: %v", err)
	}
	attr := func(a sdk.Attribute) sdk.Schema { return sdk.Schema{Attributes: []sdk.Attribute{a}} }
	for want, s := range map[string]sdk.Schema{
		"has no name":                attr(sdk.Attribute{Type: sdk.String}),
		"has no type":                attr(sdk.Attribute{Name: "a"}),
		"required and has a default": attr(sdk.Attribute{Name: "a", Type: sdk.String, Required: true, Default: sdk.StringVal("x")}),
		"does not fit type":          attr(sdk.Attribute{Name: "a", Type: sdk.Number, Default: sdk.StringVal("x")}),
		"declared twice":             {Attributes: []sdk.Attribute{{Name: "a", Type: sdk.String}}, Blocks: []sdk.Block{{Name: "a"}}},
		"unknown nesting":            {Blocks: []sdk.Block{{Name: "b", Nesting: sdk.Nesting(7)}}},
		"above MaxItems":             {Blocks: []sdk.Block{{Name: "b", Nesting: sdk.NestingList, MinItems: 3, MaxItems: 2}}},
		"may only be 0 or 1":         {Blocks: []sdk.Block{{Name: "b", MaxItems: 2}}},
		"b.c has no type":            {Blocks: []sdk.Block{{Name: "b", Schema: attr(sdk.Attribute{Name: "c"})}}},
	} {
		err := s.Validate()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate = %v, want %q", err, want)
		}
	}
}

func TestLogger(t *testing.T) {
	if sdk.Logger(t.Context()) != hclog.Default() {
		t.Errorf("outside a call, Logger is not hclog's default")
	}
	l := hclog.NewNullLogger()
	if sdk.Logger(sdk.ContextWithLogger(t.Context(), l)) != l {
		t.Errorf("Logger does not return the context's logger")
	}
}

func TestServeConfig(t *testing.T) {
	cfg := sdk.ServeConfig(&testrole.Echo{})
	if cfg.MagicCookieKey != sdk.MagicCookieKey || cfg.MagicCookieValue != sdk.MagicCookieValue || cfg.ProtocolVersion != sdk.ProtocolVersion {
		t.Errorf("handshake %+v", cfg.HandshakeConfig)
	}
	set := cfg.VersionedPlugins[sdk.ProtocolVersion]
	if _, ok := set[sdk.PluginName].(plugin.GRPCPlugin); !ok || cfg.GRPCServer == nil {
		t.Errorf("protocol %d is not served over gRPC: %+v", sdk.ProtocolVersion, set)
	}
	if _, err := set[sdk.PluginName].Server(nil); err == nil {
		t.Errorf("net/rpc is served")
	}
}
