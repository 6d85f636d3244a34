package db

import (
	"os"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/rosterhq/roster/sdk/roletest"
)

// TestExampleRoleFileFitsSchema decodes the `config` block of the lamp
// example's role file against the role's schema, as `roster validate` does,
// and checks the values Provision checks.
func TestExampleRoleFileFitsSchema(t *testing.T) {
	const path = "../../examples/lamp/roles/db.hcl"
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, diags := hclsyntax.ParseConfig(src, path, hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	var body string
	for _, role := range f.Body.(*hclsyntax.Body).Blocks {
		if role.Type != "role" {
			continue
		}
		for _, b := range role.Body.Blocks {
			if b.Type == "config" {
				body = string(src[b.OpenBraceRange.End.Byte:b.CloseBraceRange.Start.Byte])
			}
		}
	}
	if body == "" {
		t.Fatalf("%s has no role with a config block", path)
	}
	cfg, diags := roletest.DecodeHCL(Schema(), body)
	if diags.HasErrors() {
		t.Fatalf("%s: %s", path, diags.Error())
	}
	s, err := decode(cfg)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if s.Database != "lamp" || s.User != "lamp" || s.Schema != "file://../sql/schema.sql" || s.ReplicaOf != "" {
		t.Fatalf("%s decoded to %+v", path, s)
	}
	// The schema it names is the one the lifecycle test loads.
	if _, err := os.Stat(exampleSchema); err != nil {
		t.Fatal(err)
	}
}
