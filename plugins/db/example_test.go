package db

import (
	"os"
	"testing"

	"github.com/rosterhq/roster/sdk/rolekit"
	"github.com/rosterhq/roster/sdk/roletest"
)

// TestExampleRoleFileFitsSchema decodes the `config` block of the lamp
// example's role file against the role's schema, as `roster validate` does,
// and checks the values Provision checks.
func TestExampleRoleFileFitsSchema(t *testing.T) {
	const path = "../../examples/lamp/roles/db.hcl"
	body, err := rolekit.ConfigBlock(path)
	if err != nil {
		t.Fatal(err)
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
