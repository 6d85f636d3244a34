package web

import (
	"strconv"
	"strings"
	"testing"

	"github.com/rosterhq/roster/sdk/rolekit"
	"github.com/rosterhq/roster/sdk/roletest"
)

// TestExampleRoleFileFitsSchema decodes the `config` block of the lamp
// example's role file against the role's schema, as `roster validate` does,
// and checks the values Provision checks. The file refers to the db role's
// endpoint, which core fills in before Provision (core/config's
// ResolveConfig); the test puts an address in its place.
func TestExampleRoleFileFitsSchema(t *testing.T) {
	const path = "../../examples/lamp/roles/web.hcl"
	const ref, dbAddr = "role.db.endpoints.postgres", "127.0.0.1:5432"
	body, err := rolekit.ConfigBlock(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(body, ref) != 1 {
		t.Fatalf("%s: want the site to find the db through %s, once", path, ref)
	}
	body = strings.Replace(body, ref, strconv.Quote(dbAddr), 1)
	cfg, diags := roletest.DecodeHCL(Schema(), body)
	if diags.HasErrors() {
		t.Fatalf("%s: %s", path, diags.Error())
	}
	s, err := decode(cfg)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if s.MPM != "prefork" || !s.PHP || s.HealthPath != "/health.php" {
		t.Fatalf("%s decoded to %+v", path, s)
	}
	if s.Env["LAMP_DB_HOST_PORT"] != dbAddr || !strings.Contains(s.Env["LAMP_DB"], "dbname=lamp") {
		t.Fatalf("%s: env decoded to %q", path, s.Env)
	}
}
