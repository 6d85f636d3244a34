package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/rosterhq/roster/core/config"
	"github.com/rosterhq/roster/core/queue/fauxqs"
)

const ec2Block = `provider "ec2" {
  region          = "us-east-1"
  launch_template = "roster-agent"
  bootstrap {
    roster_url          = "s3://artifacts/roster"
    roster_sha256       = "0000000000000000000000000000000000000000000000000000000000000000"
    fleet_key_parameter = "/roster/t/fleet-key"
  }
}
`

// writeOrchestrator writes a roster.hcl (and no role files) in a new
// directory and returns its path.
func writeOrchestrator(t *testing.T, body string) string {
	t.Helper()
	dir := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(dir, "roles"), 0o755))
	p := filepath.Join(dir, "roster.hcl")
	must(t, os.WriteFile(p, []byte(`cluster  = "t"
data_dir = ".roster"
roles    = ["roles/*.hcl"]
api {
  address = "127.0.0.1:0"
}
`+body), 0o644))
	return p
}

func TestValidateExampleAWS(t *testing.T) {
	inProcessSchemas(t)
	code, out, errs := runCmd("validate", "../../examples/aws")
	if code != 0 || errs != "" {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
}

// TestValidateEC2Mistakes: roster validate decodes the ec2 block with the
// provider's own decoder and refuses ec2 with the local queue, each mistake
// with its file and line.
func TestValidateEC2Mistakes(t *testing.T) {
	inProcessSchemas(t)
	p := writeOrchestrator(t, `queue "local" {}
provider "ec2" {
  region          = "Virginia"
  launch_template = "roster-agent"
  bootstrap {
    roster_url          = "http://example.com/roster"
    roster_sha256       = "0000000000000000000000000000000000000000000000000000000000000000"
    fleet_key_parameter = "/roster/t/fleet-key"
  }
}
`)
	code, _, errs := runCmd("validate", "-no-color", p)
	if code != 1 {
		t.Fatalf("exit %d, want 1: %s", code, errs)
	}
	for _, want := range []string{
		"Error: The ec2 provider needs the sqs queue",
		`roster.hcl line 8`,
		"Error: Invalid region",
		`"Virginia" is not one`,
		`roster.hcl line 9`,
		"http://",
	} {
		if !strings.Contains(errs, want) {
			t.Errorf("diagnostics lack %q:\n%s", want, errs)
		}
	}

	// The same block with the sqs queue and good values is valid.
	p = writeOrchestrator(t, "queue \"sqs\" {\n  region = \"us-east-1\"\n}\n"+ec2Block)
	if code, out, errs := runCmd("validate", p); code != 0 {
		t.Fatalf("exit %d: %s%s", code, out, errs)
	}
}

// TestOpenStackEC2 assembles an orchestrator on provider "ec2" (New makes
// no request) and refuses it on the local queue before anything starts.
func TestOpenStackEC2(t *testing.T) {
	fauxAWSEnv(t, "http://127.0.0.1:9")
	logger := hclog.NewNullLogger()

	var diags bytes.Buffer
	p := writeOrchestrator(t, "queue \"local\" {}\n"+ec2Block)
	if st, err := openStack(context.Background(), stackOptions{ConfigPath: p, Logger: logger, Diags: &diags}); err == nil {
		st.Close()
		t.Fatal("openStack accepted provider ec2 with the local queue")
	}
	if !strings.Contains(diags.String(), "The ec2 provider needs the sqs queue") {
		t.Errorf("diagnostics: %s", diags.String())
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(p), ".roster")); !os.IsNotExist(err) {
		t.Errorf("data_dir made for a config that does not load: %v", err)
	}

	p = writeOrchestrator(t, "queue \"sqs\" {\n  endpoint = \"http://127.0.0.1:9\"\n}\n"+ec2Block)
	st, err := openStack(context.Background(), stackOptions{ConfigPath: p, Logger: logger, Diags: &diags})
	if err != nil {
		t.Fatalf("openStack: %v\n%s", err, diags.String())
	}
	defer st.Close()
	if got := st.prov.Name(); got != "ec2" {
		t.Errorf("provider %q, want ec2", got)
	}
}

// TestAgentArgsFollowTheQueue: agents started on this host get the queue
// backend of the config, with its region (else the ec2 provider's) and
// endpoint.
func TestAgentArgsFollowTheQueue(t *testing.T) {
	cfg := &config.Orchestrator{Cluster: "c", Queue: config.Queue{Type: "sqs", Endpoint: "http://10.0.0.1:4566"},
		Agent: config.AgentSettings{SpareHeartbeat: 30e9}, Plugins: []config.PluginPin{{Name: "web", Checksum: "sha256:ab"}}}
	ps := providerSetup{Config: cfg, KeysDir: "/k", Queue: "sqs", QueueDir: "/q"}
	args := ps.AgentArgs("m-1", "netns")
	for _, pair := range [][2]string{{"-queue", "sqs"}, {"-sqs-endpoint", "http://10.0.0.1:4566"}, {"-machine-id", "m-1"},
		{"-provider", "netns"}, {"-pin", "web=sha256:ab"}, {"-spare-heartbeat", "30s"}} {
		if !containsPair(args, pair[0], pair[1]) {
			t.Errorf("args %q lack %s %s", args, pair[0], pair[1])
		}
	}
	if slices.Contains(args, "-queue-dir") || slices.Contains(args, "-sqs-region") {
		t.Errorf("args %q: no -queue-dir with sqs, no -sqs-region when none is configured", args)
	}
	cfg.Queue.Region = fauxqs.Region
	if args := ps.AgentArgs("m-1", "local"); !containsPair(args, "-sqs-region", fauxqs.Region) {
		t.Errorf("args %q lack the queue's region", args)
	}
	cfg.Queue = config.Queue{Type: "local"}
	ps.Queue = "local"
	if args := ps.AgentArgs("m-1", "local"); !containsPair(args, "-queue-dir", "/q") || slices.Contains(args, "-sqs-endpoint") {
		t.Errorf("local args %q", args)
	}
}
