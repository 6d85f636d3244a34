package main

import (
	"context"
	"fmt"
	"os"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2"

	"github.com/rosterhq/roster/core/config"
	"github.com/rosterhq/roster/core/protocol"
	"github.com/rosterhq/roster/core/provider"
	"github.com/rosterhq/roster/core/provider/ec2"
	localprov "github.com/rosterhq/roster/core/provider/local"
)

// providerConfig checks what core/config leaves to the providers: the ec2
// block is decoded by the ec2 package (every mistake a diagnostic with its
// range), and a provider whose machines are other hosts needs a queue that
// other hosts reach. cfg may be nil (a config that did not load).
func providerConfig(cfg *config.Orchestrator) (ec2.Config, hcl.Diagnostics) {
	if cfg == nil || cfg.Provider.Type != "ec2" {
		return ec2.Config{}, nil
	}
	var diags hcl.Diagnostics
	var pc ec2.Config
	if cfg.Provider.Body != nil {
		pc, diags = ec2.DecodeConfig(cfg.Provider.Body)
	}
	if cfg.Queue.Type != "sqs" {
		qtype := cfg.Queue.Type
		if qtype == "" {
			qtype = "local"
		}
		rng := cfg.Provider.Range
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "The ec2 provider needs the sqs queue",
			Detail: fmt.Sprintf("EC2 instances cannot reach the %q queue, which lives in this host's data_dir; "+
				"add queue \"sqs\" { region = \"…\" } to use provider \"ec2\".", qtype),
			Subject: &rng,
		})
	}
	return pc, diags
}

// validateProviders is providerConfig over every orchestrator config that
// `roster validate` loaded.
func validateProviders(orchs []*config.Orchestrator) hcl.Diagnostics {
	var diags hcl.Diagnostics
	for _, o := range orchs {
		_, ds := providerConfig(o)
		diags = append(diags, ds...)
	}
	return diags
}

// queueRegion is the SQS region of the orchestrator's own client: the
// queue block's, else the ec2 provider's (its agents use the provider's
// region when the queue names none, and both sides must agree), else the
// AWS environment's.
func queueRegion(cfg *config.Orchestrator, pc ec2.Config) string {
	if cfg.Queue.Region != "" {
		return cfg.Queue.Region
	}
	if cfg.Provider.Type == "ec2" {
		return pc.Region
	}
	return ""
}

// pluginPins are the config's plugin checksum pins, name → "sha256:<hex>".
func pluginPins(cfg *config.Orchestrator) map[string]string {
	pins := map[string]string{}
	for _, p := range cfg.Plugins {
		pins[p.Name] = p.Checksum
	}
	return pins
}

// providerSetup is what a provider is built from.
type providerSetup struct {
	Config *config.Orchestrator
	// EC2 is the decoded ec2 block (provider "ec2" only).
	EC2     ec2.Config
	Keys    protocol.Keys
	KeysDir string
	// Queue is the backend the agents use: "local" or "sqs".
	Queue    string
	QueueDir string
	Logger   hclog.Logger
}

// AgentArgs are the arguments of `roster agent` for a machine that runs on
// this host (the local provider, or a test's namespaced hosts): the
// cluster, the keys, the queue backend and its settings, the plugins.
// providerName is reported in hello.
func (ps providerSetup) AgentArgs(id, providerName string) []string {
	cfg := ps.Config
	a := []string{"agent", "-cluster", cfg.Cluster, "-machine-id", id, "-keys", ps.KeysDir,
		"-queue", ps.Queue, "-spare-heartbeat", cfg.Agent.SpareHeartbeat.String(), "-provider", providerName}
	if ps.Queue == "local" {
		a = append(a, "-queue-dir", ps.QueueDir)
	} else {
		if r := queueRegion(cfg, ps.EC2); r != "" {
			a = append(a, "-sqs-region", r)
		}
		if cfg.Queue.Endpoint != "" {
			a = append(a, "-sqs-endpoint", cfg.Queue.Endpoint)
		}
	}
	if cfg.PluginDir != "" {
		a = append(a, "-plugin-dir", cfg.PluginDir)
	}
	for _, p := range cfg.Plugins {
		a = append(a, "-pin", p.Name+"="+p.Checksum)
	}
	return a
}

// openProvider builds the provider the config names ("local" when force
// is set: roster up). Agents of local machines inherit the orchestrator's
// environment, so the AWS credential chain and AWS_ENDPOINT_URL_S3 reach
// them (the plugin host strips AWS_* from role plugins, not from agents).
func openProvider(ctx context.Context, ps providerSetup, force bool) (provider.Provider, error) {
	cfg := ps.Config
	ptype := cfg.Provider.Type
	if force || ptype == "" {
		ptype = "local"
	}
	switch ptype {
	case "local":
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find the roster executable: %w", err)
		}
		return localprov.New(localprov.Options{Exe: exe, DataDir: cfg.DataDir,
			AgentArgs: func(id string) []string { return ps.AgentArgs(id, "local") },
			BootDelay: cfg.Provider.BootDelay, MaxMachines: cfg.Provider.MaxMachines, Logger: ps.Logger.Named("provider")})
	case "ec2":
		if ps.Queue != "sqs" {
			// providerConfig reports this as a diagnostic; this is for
			// callers that skipped it.
			return nil, fmt.Errorf("provider \"ec2\" needs queue \"sqs\": instances cannot reach the %q queue", ps.Queue)
		}
		return ec2.New(ctx, ps.EC2, ec2.Options{
			Cluster:        cfg.Cluster,
			OrderPublicKey: ps.Keys.OrderPublic,
			Agent: ec2.AgentOptions{
				QueueRegion:    cfg.Queue.Region,
				QueueEndpoint:  cfg.Queue.Endpoint,
				SpareHeartbeat: cfg.Agent.SpareHeartbeat,
				Pins:           pluginPins(cfg),
			},
			Logger: ps.Logger.Named("provider"),
		})
	default:
		return nil, fmt.Errorf("provider %q: unknown type", ptype)
	}
}
