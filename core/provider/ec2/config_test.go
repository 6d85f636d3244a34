package ec2_test

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"

	"github.com/rosterhq/roster/core/provider/ec2"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// decodeFile decodes the provider "ec2" block of an HCL file.
func decodeFile(t *testing.T, path string) (ec2.Config, hcl.Diagnostics) {
	t.Helper()
	p := hclparse.NewParser()
	f, diags := p.ParseHCLFile(path)
	if diags.HasErrors() {
		t.Fatalf("%s: %v", path, diags)
	}
	c, _, diags := f.Body.PartialContent(&hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{{Type: "provider", LabelNames: []string{"type"}}}})
	if diags.HasErrors() {
		t.Fatalf("%s: %v", path, diags)
	}
	for _, b := range c.Blocks {
		if b.Labels[0] == "ec2" {
			return ec2.DecodeConfig(b.Body)
		}
	}
	t.Fatalf("%s: no provider \"ec2\" block", path)
	return ec2.Config{}, nil
}

func TestDecodeConfigFull(t *testing.T) {
	cfg, diags := decodeFile(t, "testdata/config/good/full.hcl")
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	cfg.Range = hcl.Range{}
	want := ec2.Config{
		Region:                "eu-west-1",
		LaunchTemplateName:    "roster-agent",
		LaunchTemplateVersion: "3",
		InstanceType:          "t3.small",
		Subnets:               []string{"subnet-0aaaaaaaaaaaaaaaa", "subnet-0bbbbbbbbbbbbbbbb"},
		SecurityGroups:        []string{"sg-0123456789abcdef0"},
		InstanceProfile:       "roster-agent",
		KeyName:               "ops",
		Tags:                  map[string]string{"team": "web", "cost-center": "42"},
		Spot:                  &ec2.Spot{MaxPrice: "0.0125"},
		RequireIMDSv2:         false,
		Bootstrap: ec2.Bootstrap{
			RosterURL:         "https://releases.example.com/roster/v0.1.0/roster-linux-amd64",
			RosterSHA256:      strings.Repeat("ab", 32),
			FleetKeyParameter: "/roster/demo/fleet-key",
			PluginDir:         "/opt/roster/plugins",
			LogLevel:          "debug",
		},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("got  %+v\nwant %+v", cfg, want)
	}
}

func TestDecodeConfigDefaults(t *testing.T) {
	cfg, diags := decodeFile(t, "testdata/config/good/minimal.hcl")
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	if cfg.LaunchTemplateID != "lt-0123456789abcdef0" || !cfg.RequireIMDSv2 || cfg.Spot != nil ||
		cfg.Bootstrap.LogLevel != ec2.DefaultLogLevel || cfg.Region != "" || len(cfg.Subnets) != 0 {
		t.Errorf("defaults: %+v", cfg)
	}
}

// TestDecodeConfigBad checks the bad-input corpus against its golden
// diagnostics: every mistake reported, each at its place.
func TestDecodeConfigBad(t *testing.T) {
	files, _ := filepath.Glob("testdata/config/bad/*.hcl")
	if len(files) == 0 {
		t.Fatal("no bad inputs")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			_, diags := decodeFile(t, file)
			if !diags.HasErrors() {
				t.Fatal("no error")
			}
			var b strings.Builder
			for _, d := range diags {
				if d.Subject == nil {
					t.Errorf("diagnostic without a range: %s", d.Summary)
					continue
				}
				fmt.Fprintf(&b, "%s:%d,%d-%d,%d: %s; %s\n", filepath.Base(d.Subject.Filename),
					d.Subject.Start.Line, d.Subject.Start.Column, d.Subject.End.Line, d.Subject.End.Column, d.Summary, d.Detail)
			}
			golden(t, strings.TrimSuffix(file, ".hcl")+".golden", []byte(b.String()))
		})
	}
}

// golden compares got with a golden file; -update rewrites it.
func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs (go test -update rewrites it); got:\n%s", path, got)
	}
}
