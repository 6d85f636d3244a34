package ec2_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/rosterhq/roster/core/provider/ec2"
)

const examples = "../../../examples/aws"

// The example agent unit is the one the user data writes, so that a
// machine set up by hand runs the agent the same way.
func TestExampleAgentUnitIsTheTemplate(t *testing.T) {
	want, err := os.ReadFile(ec2.UnitFile)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(examples, "roster-agent.service"))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("examples/aws/roster-agent.service differs from %s: copy it over", ec2.UnitFile)
	}
}

func TestExampleProviderBlockDecodes(t *testing.T) {
	cfg, diags := decodeFile(t, filepath.Join(examples, "roster.hcl"))
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	if cfg.LaunchTemplateName == "" || len(cfg.Subnets) != 3 || cfg.Bootstrap.FleetKeyParameter != "/roster/demo/fleet-key" {
		t.Errorf("decoded %+v", cfg)
	}
}

// The policies are JSON documents IAM would take: parseable, versioned,
// every statement with an id, an effect, actions and resources (a trust
// policy names a principal instead: IAM refuses a resource there).
func TestExamplePoliciesAreWellFormed(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(examples, "iam", "*.json"))
	if len(files) < 3 {
		t.Fatalf("%d policy files, want the orchestrator's, the agents' and the queue policy", len(files))
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Version   string
			Statement []struct {
				Sid, Effect         string
				Action, NotAction   any
				Resource, Principal any
			}
		}
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if doc.Version != "2012-10-17" || len(doc.Statement) == 0 {
			t.Errorf("%s: version %q, %d statements", f, doc.Version, len(doc.Statement))
		}
		sids := map[string]bool{}
		for _, s := range doc.Statement {
			if (s.Effect != "Allow" && s.Effect != "Deny") || (s.Action == nil && s.NotAction == nil) || (s.Resource == nil && s.Principal == nil) || s.Sid == "" || sids[s.Sid] {
				t.Errorf("%s: statement %q is incomplete or repeated", f, s.Sid)
			}
			sids[s.Sid] = true
		}
	}
}
