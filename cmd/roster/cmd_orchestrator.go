package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2"

	"github.com/rosterhq/roster/core/balancer"
	"github.com/rosterhq/roster/core/config"
	"github.com/rosterhq/roster/core/orchestrator"
	"github.com/rosterhq/roster/core/protocol"
	"github.com/rosterhq/roster/core/provider"
	"github.com/rosterhq/roster/core/provider/ec2"
	"github.com/rosterhq/roster/core/queue"
	"github.com/rosterhq/roster/core/queue/local"
	"github.com/rosterhq/roster/core/queue/sqs"
)

func init() {
	register(command{
		name:     "orchestrator",
		synopsis: "Run the orchestrator: keep every role's pool, spares and balancers",
		run:      runOrchestrator,
	})
}

// APIAddrFile is written in data_dir with the address the API listens on,
// so that tools find an API started on port 0.
const APIAddrFile = "api.addr"

func runOrchestrator(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("orchestrator", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "roster.hcl", "the orchestrator's config file")
	apiAddr := fs.String("api", "", "listen address of the HTTP API (default: the config's api.address)")
	logLevel := fs.String("log-level", "info", "trace, debug, info, warn or error")
	logJSON := fs.Bool("log-json", false, "log in JSON")
	setUsage(fs, stderr,
		"Usage: roster orchestrator [-config roster.hcl] [options]",
		"",
		"Runs the orchestrator with the queue backend, provider and balancers of the",
		"config. SIGTERM or SIGINT stops it and leaves the fleet running: the next",
		"start on the same data_dir carries on (`roster up` drains the fleet instead).",
		"SIGHUP reloads the roles and the spare target; a role whose plugin or config",
		"changed has its servers replaced one at a time. A config with errors changes",
		"nothing.",
	)
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return 1
	}
	logger := hclog.New(&hclog.LoggerOptions{Name: "roster", Level: hclog.LevelFromString(*logLevel), Output: stderr, JSONFormat: *logJSON})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	st, err := openStack(ctx, stackOptions{ConfigPath: *cfgPath, APIAddress: *apiAddr, Logger: logger, Diags: stderr})
	if err != nil {
		logger.Error(err.Error())
		return 1
	}
	defer st.Close()
	st.reloadOnHangup(ctx, *cfgPath, stderr)
	if err := st.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		logger.Error(err.Error())
		return 1
	}
	logger.Info("orchestrator stopped; the fleet runs on")
	return 0
}

// stackOptions say how to assemble an orchestrator.
type stackOptions struct {
	ConfigPath string
	APIAddress string // overrides the config's
	// ForceLocal uses the embedded queue and the local provider whatever
	// the config says (roster up).
	ForceLocal bool
	Logger     hclog.Logger
	// NewProvider, when set, builds the provider instead of the config's
	// provider block (tests: machines as hosts in network namespaces).
	NewProvider func(context.Context, providerSetup) (provider.Provider, error)
	// Diags receives the config's diagnostics.
	Diags io.Writer
}

// stack is an orchestrator with everything it runs on: the queue backend,
// the provider, the balancers and the API server.
type stack struct {
	cfg *config.Orchestrator
	// current is the config as last loaded: cfg, or a reload's.
	current atomic.Pointer[config.Orchestrator]
	// ForceLocal, as opened.
	forceLocal bool
	log        hclog.Logger
	q          queue.Queue
	prov       provider.Provider
	bals       map[string]balancer.Balancer
	o          *orchestrator.Orchestrator
	ln         net.Listener
	srv        *http.Server
}

// openStack loads the config, the keys (made on first run), the queue
// backend, the provider and the balancers, and listens for the API.
func openStack(ctx context.Context, so stackOptions) (*stack, error) {
	cfg, pc, err := loadConfig(ctx, so.ConfigPath, so.ForceLocal, so.Diags)
	if err != nil {
		return nil, err
	}
	s := &stack{cfg: cfg, log: so.Logger, bals: map[string]balancer.Balancer{}, forceLocal: so.ForceLocal}
	s.current.Store(cfg)
	ok := false
	defer func() {
		if !ok {
			s.Close()
		}
	}()
	// Traversable (0711): the services of local machines' servers run as
	// their own users and reach their files below data_dir.
	if err := orchestrator.MkdirDataDir(cfg.DataDir); err != nil {
		return nil, fmt.Errorf("data_dir %s: %w", cfg.DataDir, err)
	}
	keysDir := filepath.Join(cfg.DataDir, "keys")
	keys, err := protocol.LoadOrchestratorKeys(keysDir)
	if errors.Is(err, fs.ErrNotExist) {
		if keys, err = protocol.GenerateKeys(); err == nil {
			err = protocol.WriteKeys(keysDir, keys)
			so.Logger.Info("generated keys", "dir", keysDir)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("keys in %s: %w", keysDir, err)
	}

	queueDir := filepath.Join(cfg.DataDir, "queue")
	qtype := cfg.Queue.Type
	if so.ForceLocal || qtype == "" {
		qtype = "local"
	}
	switch qtype {
	case "local":
		lq, err := local.Open(queueDir, local.Options{Logger: so.Logger.Named("queue")})
		if err != nil {
			return nil, err
		}
		s.q = lq
	case "sqs":
		sq, err := sqs.New(ctx, sqs.Options{Region: queueRegion(cfg, pc), Endpoint: cfg.Queue.Endpoint, Logger: so.Logger.Named("queue")})
		if err != nil {
			return nil, err
		}
		s.q = sq
	default:
		return nil, fmt.Errorf("queue %q: unknown backend", qtype)
	}

	ps := providerSetup{Config: cfg, EC2: pc, Keys: keys, KeysDir: keysDir, Queue: qtype, QueueDir: queueDir, Logger: so.Logger}
	newProvider := openProvider
	if so.NewProvider != nil {
		newProvider = func(ctx context.Context, ps providerSetup, _ bool) (provider.Provider, error) {
			return so.NewProvider(ctx, ps)
		}
	}
	if s.prov, err = newProvider(ctx, ps, so.ForceLocal); err != nil {
		return nil, err
	}

	for _, b := range cfg.Balancers {
		bal, err := balancer.Open(ctx, b, balancer.Options{DataDir: cfg.DataDir, Logger: so.Logger.Named("balancer")})
		if err != nil {
			return nil, err
		}
		s.bals[b.Name] = bal
	}

	s.o, err = orchestrator.New(orchestrator.Options{Config: cfg, Queue: s.q, Provider: s.prov, Balancers: s.bals, Keys: keys,
		Logger: so.Logger})
	if err != nil {
		return nil, err
	}

	addr := cfg.API.Address
	if so.APIAddress != "" {
		addr = so.APIAddress
	}
	if addr == "" {
		addr = config.DefaultAPIAddress
	}
	s.ln, err = net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("api: listen on %s: %w", addr, err)
	}
	s.srv = &http.Server{Handler: s.o.Handler(), ReadHeaderTimeout: 5 * time.Second}
	if err := os.WriteFile(filepath.Join(cfg.DataDir, APIAddrFile), []byte(s.ln.Addr().String()+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("write %s: %w", APIAddrFile, err)
	}
	so.Logger.Info("api listening", "address", s.ln.Addr().String())
	ok = true
	return s, nil
}

// loadConfig decodes roster.hcl at path with its role files, against the
// plugins' schemas, and (unless forceLocal) its provider block. Every
// diagnostic goes to diags, with its source; any error makes it fail.
func loadConfig(ctx context.Context, path string, forceLocal bool, diags io.Writer) (*config.Orchestrator, ec2.Config, error) {
	loader := config.NewLoader()
	cfg, ds := loader.Load(ctx, path, pluginSchemasFor)
	var pc ec2.Config
	if !forceLocal && cfg != nil {
		var pdiags hcl.Diagnostics
		pc, pdiags = providerConfig(cfg)
		ds = append(ds, pdiags...)
	}
	if len(ds) > 0 && diags != nil {
		w := hcl.NewDiagnosticTextWriter(diags, loader.Files(), 100, false)
		_ = w.WriteDiagnostics(ds)
	}
	if ds.HasErrors() || cfg == nil {
		return nil, ec2.Config{}, fmt.Errorf("config %s has errors", path)
	}
	return cfg, pc, nil
}

// reload decodes the config at path again and applies its roles and spare
// target (orchestrator.Reload). A config with errors changes nothing: its
// diagnostics, with file, line and field, go to diags.
func (s *stack) reload(ctx context.Context, path string, diags io.Writer) ([]string, error) {
	cfg, _, err := loadConfig(ctx, path, s.forceLocal, diags)
	if err != nil {
		return nil, fmt.Errorf("%w; the running config is unchanged", err)
	}
	changes, err := s.o.Reload(cfg)
	if err != nil {
		return nil, err
	}
	s.current.Store(cfg)
	return changes, nil
}

// reloadOnHangup reloads the config on every SIGHUP until ctx is done.
func (s *stack) reloadOnHangup(ctx context.Context, path string, diags io.Writer) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
			}
			s.log.Info("SIGHUP: reloading the config", "path", path)
			changes, err := s.reload(ctx, path, diags)
			if err != nil {
				s.log.Error("reload refused", "error", err)
				s.o.ReloadRefused(err)
				continue
			}
			for _, c := range changes {
				s.log.Info("reloaded: " + c)
			}
		}
	}()
}

// Run serves the API and runs the orchestrator until ctx is done.
func (s *stack) Run(ctx context.Context) error {
	go func() {
		if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("api stopped", "error", err)
		}
	}()
	return s.o.Run(ctx)
}

// Close stops the API and releases the backends; machines keep running.
func (s *stack) Close() {
	if s.srv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = s.srv.Shutdown(sctx)
		cancel()
	} else if s.ln != nil {
		s.ln.Close()
	}
	for _, b := range s.bals {
		_ = b.Close()
	}
	if s.prov != nil {
		_ = s.prov.Close()
	}
	if s.q != nil {
		_ = s.q.Close()
	}
}

// terminateAll ends every machine of the cluster the provider still lists.
func (s *stack) terminateAll(ctx context.Context) (int, error) {
	ms, err := s.prov.List(ctx, map[string]string{provider.TagCluster: s.cfg.Cluster})
	if err != nil {
		return 0, err
	}
	var errs []error
	for _, m := range ms {
		if err := s.prov.Terminate(ctx, m.ID); err != nil {
			errs = append(errs, err)
		}
	}
	return len(ms), errors.Join(errs...)
}

// longestDrain is the longest drain timeout of the config's roles.
func longestDrain(cfg *config.Orchestrator) time.Duration {
	d := config.DefaultDrainTimeout
	for _, r := range cfg.Roles {
		if r.Drain.Timeout > d {
			d = r.Drain.Timeout
		}
	}
	return d
}

// stateNames sorts map keys for printing.
func stateNames(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
