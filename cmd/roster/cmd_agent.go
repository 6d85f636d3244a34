package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/rosterhq/roster/core/agent"
	"github.com/rosterhq/roster/core/pluginhost"
	"github.com/rosterhq/roster/core/protocol"
	"github.com/rosterhq/roster/core/queue"
	"github.com/rosterhq/roster/core/queue/local"
	"github.com/rosterhq/roster/core/queue/sqs"
	"github.com/rosterhq/roster/sdk"
)

func init() {
	register(command{
		name:     "agent",
		synopsis: "Run the agent of a machine: a spare until commissioned, then a server",
		run:      runAgent,
	})
}

// pinFlags collects repeated -pin name=sha256:<hex> flags.
type pinFlags map[string]string

func (p pinFlags) String() string { return fmt.Sprint(map[string]string(p)) }

func (p pinFlags) Set(s string) error {
	name, sum, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return fmt.Errorf("want name=sha256:<hex>, got %q", s)
	}
	c, err := pluginhost.ParseChecksum(sum)
	if err != nil {
		return fmt.Errorf("plugin %q: %w", name, err)
	}
	p[name] = c
	return nil
}

// envFlags collects repeated -plugin-env NAME or NAME=value flags.
type envFlags []string

func (e *envFlags) String() string { return strings.Join(*e, ",") }

func (e *envFlags) Set(s string) error {
	name, _, _ := strings.Cut(s, "=")
	if name == "" || strings.ContainsAny(name, " \t\n") {
		return fmt.Errorf("want NAME or NAME=value, got %q", s)
	}
	*e = append(*e, s)
	return nil
}

func runAgent(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cluster := fs.String("cluster", "", "the cluster's name (prefixes its queue names); required")
	machineID := fs.String("machine-id", "", "this machine's id, as the orchestrator knows it; required")
	workDir := fs.String("work-dir", ".", "the agent's directory: its state file and the servers' work directories")
	queueType := fs.String("queue", "local", "queue backend: local or sqs")
	queueDir := fs.String("queue-dir", "", "the local queue's directory (shared with the orchestrator); required with -queue local")
	sqsRegion := fs.String("sqs-region", "", "SQS region (default: from the AWS environment)")
	sqsEndpoint := fs.String("sqs-endpoint", "", "SQS endpoint override, e.g. http://127.0.0.1:4566")
	keysDir := fs.String("keys", "", "directory holding order.pub and fleet.key; required")
	pluginDir := fs.String("plugin-dir", "", "directory of third-party role plugins (roster-role-<name>)")
	pins := pinFlags{}
	fs.Var(pins, "pin", "pin a plugin to a digest, name=sha256:<hex> (repeatable)")
	var pluginEnv envFlags
	fs.Var(&pluginEnv, "plugin-env", "pass a variable to role plugins: NAME (the agent's value) or NAME=value (repeatable); plugins get none of the agent's AWS_* otherwise")
	spareHeartbeat := fs.Duration("spare-heartbeat", agent.DefaultSpareHeartbeat, "how often a spare reports")
	providerName := fs.String("provider", "local", "the provider that launched this machine, reported in hello")
	logLevel := fs.String("log-level", "info", "trace, debug, info, warn or error")
	logJSON := fs.Bool("log-json", false, "log in JSON")
	setUsage(fs, stderr,
		"Usage: roster agent -cluster NAME -machine-id ID -keys DIR [options]",
		"",
		"Runs a machine's agent. The orchestrator's providers start it; run it by hand",
		"to add a machine of your own. SIGTERM or SIGINT stops it gracefully: a spare",
		"exits, a server finishes its current step and keeps its state, so that the",
		"next start resumes. A second signal exits at once.",
	)
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if fs.NArg() > 0 || *cluster == "" || *machineID == "" || *keysDir == "" {
		fs.Usage()
		return 1
	}
	level := hclog.LevelFromString(*logLevel)
	if level == hclog.NoLevel {
		fmt.Fprintf(stderr, "roster agent: unknown log level %q (want trace, debug, info, warn or error)\n", *logLevel)
		return 1
	}
	logger := hclog.New(&hclog.LoggerOptions{
		Name:       "roster",
		Level:      level,
		Output:     stderr,
		JSONFormat: *logJSON,
	})
	fail := func(format string, a ...any) int {
		logger.Error(fmt.Sprintf(format, a...))
		return 1
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		// A second signal means "now": the step in progress is abandoned
		// and the state file says where a restart resumes.
		<-ctx.Done()
		stop()
		again := make(chan os.Signal, 1)
		signal.Notify(again, syscall.SIGTERM, syscall.SIGINT)
		<-again
		logger.Warn("second signal, exiting at once")
		os.Exit(1)
	}()

	keys, err := protocol.LoadAgentKeys(*keysDir)
	if err != nil {
		return fail("agent: %v", err)
	}
	codec, err := protocol.NewCodec(keys, protocol.Options{Accept: protocol.AcceptOrders, FollowEpoch: true, Logger: logger})
	if err != nil {
		return fail("agent: %v", err)
	}

	var q queue.Queue
	switch *queueType {
	case "local":
		if *queueDir == "" {
			return fail("agent: -queue-dir is required with the local queue")
		}
		lq, err := local.Open(*queueDir, local.Options{Logger: logger})
		if err != nil {
			return fail("agent: %v", err)
		}
		q = lq
	case "sqs":
		sq, err := sqs.New(ctx, sqs.Options{Region: *sqsRegion, Endpoint: *sqsEndpoint, Logger: logger})
		if err != nil {
			return fail("agent: %v", err)
		}
		q = sq
	default:
		return fail("agent: unknown queue backend %q (want local or sqs)", *queueType)
	}
	defer q.Close()

	dir := *pluginDir
	if dir != "" {
		if dir, err = filepath.Abs(dir); err != nil {
			return fail("agent: plugin directory: %v", err)
		}
	}
	host, err := pluginhost.New(pluginhost.Options{PluginDir: dir, Builtins: builtinNames(), Pins: pins, ExtraEnv: pluginEnv, Logger: logger})
	if err != nil {
		return fail("agent: %v", err)
	}
	names, err := host.Names()
	if err != nil {
		logger.Warn("could not list the plugins", "error", err)
	}

	a, err := agent.New(agent.Config{
		Cluster:   *cluster,
		MachineID: *machineID,
		WorkDir:   *workDir,
		Queue:     q,
		Codec:     codec,
		Plugins: agent.LauncherFunc(func(ctx context.Context, name string) (sdk.Role, error) {
			p, err := host.Launch(ctx, name)
			if err != nil {
				return nil, err
			}
			return p, nil
		}),
		SpareHeartbeat: *spareHeartbeat,
		Logger:         logger,
		Provider:       *providerName,
		Version:        Version,
		PluginNames:    names,
	})
	if err != nil {
		return fail("%v", err)
	}
	start := time.Now()
	if err := a.Run(ctx); err != nil {
		return fail("%v", err)
	}
	logger.Info("agent exits", "state", a.State(), "ran_for", time.Since(start).Round(time.Millisecond))
	return 0
}
