// Package orchestrator keeps pools of servers in their roles: it commissions
// servers onto spare machines, watches their heartbeats, scales each pool
// between count.min and count.max on a metric, replaces servers that are lost
// or unhealthy, keeps spare machines warm, drains and halts the servers it
// retires, and explains every decision as an event.
//
// One goroutine (the loop) owns every change to the state: it handles the
// agents' reports as they arrive and runs a level-triggered reconcile pass
// every second and after every lifecycle report. Slow work (a machine launch
// or termination through the provider, a balancer drain) runs on its own
// goroutine and reports back to the loop. The durable state is written before
// every order that depends on it is sent, so that a restart after SIGKILL
// carries on where the last one stopped; see docs/orchestrator.md.
package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/zclconf/go-cty/cty"

	"github.com/rosterhq/roster/core/balancer"
	"github.com/rosterhq/roster/core/config"
	"github.com/rosterhq/roster/core/protocol"
	"github.com/rosterhq/roster/core/provider"
	"github.com/rosterhq/roster/core/queue"
)

// Sender is the name the orchestrator signs its orders with.
const Sender = "orchestrator"

// Options configure an orchestrator.
type Options struct {
	// Config is the decoded roster.hcl with its roles.
	Config *config.Orchestrator
	// Queue is the queue backend; the orchestrator does not close it.
	Queue queue.Queue
	// Provider launches and terminates machines; not closed either.
	Provider provider.Provider
	// Balancers by name; a role that registers with a balancer missing
	// here gets a `none` balancer of that name.
	Balancers map[string]balancer.Balancer
	// Keys hold the order private key and the fleet key.
	Keys   protocol.Keys
	Logger hclog.Logger

	// ResolveConfig returns a role's config with its references to other
	// roles resolved from peers (the role's own ready servers and those of
	// each referenced role, sorted by name). Nil means ResolveConfig, which
	// takes the first ready server of each referenced role.
	ResolveConfig func(role *config.Role, peers map[string][]protocol.Peer) (cty.Value, error)

	// ReconcileInterval is how often reconcile runs without a report
	// (default 1s).
	ReconcileInterval time.Duration
	// SyncInterval is how often the queues, machines and balancer routes
	// are compared with the provider's, the queue backend's and the
	// balancers' own lists (default 30s; always at start).
	SyncInterval time.Duration
	// OrphanGrace is how long a machine the provider lists with this
	// cluster's tag, and that the state does not know, may live before it
	// is terminated (default 2m): time for its agent to say hello and be
	// adopted.
	OrphanGrace time.Duration
	// LaunchTimeout is how long a launched machine may take to say hello
	// before it is terminated (default 5m).
	LaunchTimeout time.Duration
	// HaltGrace is how long, beyond the role's drain timeout, a halting
	// server may take to report halting before its machine is terminated
	// (default 30s).
	HaltGrace time.Duration
	// SpareLostAfter is how long a spare may stay silent before it is
	// taken for dead (default 3 × agent.spare_heartbeat + 15s: a spare
	// waiting for a grant does not heartbeat).
	SpareLostAfter time.Duration
	// ProvisionGrace is how long after the role's provision.timeout (which
	// the agent enforces, and reports) the orchestrator abandons a
	// provisioning server that did not report (default 5s).
	ProvisionGrace time.Duration
	// Receivers is how many goroutines long-poll the orchestrator's queue
	// (default 2).
	Receivers int
}

// Orchestrator is one running orchestrator. Create it with New, then Run.
type Orchestrator struct {
	opts  Options
	cfg   *config.Orchestrator
	log   hclog.Logger
	q     queue.Queue
	prov  provider.Provider
	codec *protocol.Codec
	bals  map[string]balancer.Balancer
	roles []*config.Role
	byRol map[string]*config.Role
	store store
	met   *metrics

	globalQ, ordersQ string

	// mu guards st and rt: the loop holds it while it changes them, the API
	// while it reads them.
	mu sync.Mutex
	st *State
	rt runtime

	started  time.Time
	lastSync time.Time
	dirty    bool

	reports chan report
	results chan func()
	wake    chan struct{}
	// draining is set by Shutdown: every pool goes to zero, spares too.
	draining bool
	// ready is closed once recovery is done and the loop runs.
	ready chan struct{}
	// notify is closed and replaced on every state change, for waiters.
	notify chan struct{}
}

// New checks the options and prepares an orchestrator; Run starts it.
func New(opts Options) (*Orchestrator, error) {
	if opts.Config == nil || opts.Queue == nil || opts.Provider == nil {
		return nil, errors.New("orchestrator: Config, Queue and Provider are required")
	}
	cfg := opts.Config
	if cfg.Cluster == "" || cfg.DataDir == "" {
		return nil, errors.New("orchestrator: config has no cluster or data_dir")
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.ReconcileInterval <= 0 {
		opts.ReconcileInterval = time.Second
	}
	if opts.SyncInterval <= 0 {
		opts.SyncInterval = 30 * time.Second
	}
	if opts.OrphanGrace <= 0 {
		opts.OrphanGrace = 2 * time.Minute
	}
	if opts.LaunchTimeout <= 0 {
		opts.LaunchTimeout = 5 * time.Minute
	}
	if opts.HaltGrace <= 0 {
		opts.HaltGrace = 30 * time.Second
	}
	if opts.SpareLostAfter <= 0 {
		hb := cfg.Agent.SpareHeartbeat
		if hb <= 0 {
			hb = 30 * time.Second
		}
		// A spare that claimed a commission waits for the grant (10 s in
		// the agent) without heartbeating: it must not be taken for dead.
		opts.SpareLostAfter = 3*hb + 15*time.Second
	}
	if opts.ProvisionGrace <= 0 {
		opts.ProvisionGrace = 5 * time.Second
	}
	if opts.Receivers <= 0 {
		opts.Receivers = 2
	}
	o := &Orchestrator{
		opts:    opts,
		cfg:     cfg,
		log:     opts.Logger.Named("orchestrator"),
		q:       opts.Queue,
		prov:    opts.Provider,
		bals:    map[string]balancer.Balancer{},
		byRol:   map[string]*config.Role{},
		store:   store{path: filepath.Join(cfg.DataDir, StateFile)},
		globalQ: protocol.GlobalQueue(cfg.Cluster),
		ordersQ: protocol.OrchestratorQueue(cfg.Cluster),
		rt:      newRuntime(),
		reports: make(chan report, 1024),
		results: make(chan func(), 256),
		wake:    make(chan struct{}, 1),
		ready:   make(chan struct{}),
		notify:  make(chan struct{}),
	}
	o.met = newMetrics(o)
	codec, err := protocol.NewCodec(opts.Keys, protocol.Options{
		Accept:   protocol.AcceptReports,
		OnReject: o.met.rejected,
		Logger:   o.log,
	})
	if err != nil {
		return nil, fmt.Errorf("orchestrator: keys: %w", err)
	}
	o.codec = codec
	for name, b := range opts.Balancers {
		o.bals[name] = b
	}
	for _, r := range cfg.Roles {
		// A copy: SetCount changes the orchestrator's, not the caller's.
		rc := *r
		o.roles = append(o.roles, &rc)
	}
	for _, r := range o.roles {
		o.byRol[r.Name] = r
		if r.Register != nil && o.bals[r.Register.Balancer] == nil {
			o.bals[r.Register.Balancer] = balancer.NewNone(r.Register.Balancer)
		}
	}
	return o, nil
}

// SetCount overrides a role's count.min and count.max until the
// orchestrator restarts (the role file is what a restart reads); reconcile
// applies it at once. It is what benchmarks and a future `roster scale`
// drive.
func (o *Orchestrator) SetCount(role string, min, max int) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	r := o.byRol[role]
	if r == nil {
		return fmt.Errorf("orchestrator: no role %q", role)
	}
	if min < 0 || max < min {
		return fmt.Errorf("orchestrator: count %d..%d is not a range", min, max)
	}
	r.Count = config.Count{Min: min, Max: max}
	o.poke()
	return nil
}

// Ready is closed once the orchestrator has recovered its state and runs.
func (o *Orchestrator) Ready() <-chan struct{} { return o.ready }

// Epoch is the orchestrator's epoch (0 before Run took the lock).
func (o *Orchestrator) Epoch() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.st == nil {
		return 0
	}
	return o.st.Epoch
}

// Run takes the data_dir lock (waiting while another orchestrator holds it),
// recovers the state, and runs until ctx is done. It leaves servers and
// machines as they are when it returns: stopping the orchestrator does not
// stop the fleet (Shutdown does).
func (o *Orchestrator) Run(ctx context.Context) error {
	if err := MkdirDataDir(o.cfg.DataDir); err != nil {
		return fmt.Errorf("orchestrator: data_dir %s: %w", o.cfg.DataDir, err)
	}
	lock, err := lockDataDir(ctx, o.cfg.DataDir, o.log)
	if err != nil {
		return err
	}
	defer lock.Close()

	st, err := o.store.load()
	if err != nil {
		return err
	}
	st.Epoch++
	o.mu.Lock()
	o.st = st
	o.started = time.Now()
	o.mu.Unlock()
	// The new epoch is durable before any order carries it, so that a
	// crash now can never hand the same epoch to two runs.
	if err := o.store.save(st); err != nil {
		return err
	}
	o.log.Info("started", "epoch", st.Epoch, "cluster", o.cfg.Cluster, "servers", len(st.Servers), "machines", len(st.Machines))

	for _, name := range []string{o.globalQ, o.ordersQ} {
		if err := o.q.CreateQueue(ctx, name, queue.QueueOptions{Tags: map[string]string{provider.TagCluster: o.cfg.Cluster}}); err != nil {
			return fmt.Errorf("orchestrator: create queue %s: %w", name, err)
		}
	}

	o.mu.Lock()
	o.recover(ctx)
	o.mu.Unlock()

	var wg sync.WaitGroup
	rctx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		wg.Wait()
	}()
	for i := 0; i < o.opts.Receivers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o.receive(rctx)
		}()
	}
	close(o.ready)
	o.loop(ctx)
	return nil
}

// MkdirDataDir creates data_dir (0711) or makes sure an existing one may be
// traversed by other users, without being listed: the local provider's
// machines work below it (machines/<id>/servers/<server>), and the services
// a role runs under their own users (postgres, www-data) must reach their
// files there. What is secret in it is protected by its own mode: the keys
// directory is 0700, the state, lock and key files 0600.
func MkdirDataDir(dir string) error {
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return err
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	// A restrictive umask, or a data_dir made 0700 by an older version.
	if m := fi.Mode().Perm(); m&0o011 != 0o011 {
		return os.Chmod(dir, m|0o011)
	}
	return nil
}

// loop is the only goroutine that changes the state after recovery.
func (o *Orchestrator) loop(ctx context.Context) {
	tick := time.NewTicker(o.opts.ReconcileInterval)
	defer tick.Stop()
	o.step(ctx, func() { o.reconcile(ctx) })
	for {
		select {
		case <-ctx.Done():
			o.mu.Lock()
			o.flush()
			o.mu.Unlock()
			return
		case r := <-o.reports:
			batch := []report{r}
		more:
			for len(batch) < 256 {
				select {
				case r := <-o.reports:
					batch = append(batch, r)
				default:
					break more
				}
			}
			o.handleReports(ctx, batch)
		case f := <-o.results:
			o.step(ctx, f)
			o.step(ctx, func() { o.reconcile(ctx) })
		case <-o.wake:
			o.step(ctx, func() { o.reconcile(ctx) })
		case <-tick.C:
			o.step(ctx, func() { o.reconcile(ctx) })
		}
	}
}

// step runs f with the lock held, then writes the state if f changed it.
func (o *Orchestrator) step(_ context.Context, f func()) {
	o.mu.Lock()
	defer o.mu.Unlock()
	f()
	o.flush()
}

// flush writes the state when it changed and wakes the waiters.
func (o *Orchestrator) flush() {
	if !o.dirty {
		return
	}
	if err := o.store.save(o.st); err != nil {
		// The loop goes on: the next change retries the write. Orders
		// already sent are idempotent and reconcile repairs the rest.
		o.log.Error("cannot write state", "error", err)
		return
	}
	o.dirty = false
	close(o.notify)
	o.notify = make(chan struct{})
}

// changed marks the state as needing a write.
func (o *Orchestrator) changed() { o.dirty = true }

// poke asks the loop for a reconcile pass soon.
func (o *Orchestrator) poke() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// post hands f to the loop; goroutines doing slow work report with it.
func (o *Orchestrator) post(ctx context.Context, f func()) {
	select {
	case o.results <- f:
	case <-ctx.Done():
	}
}

// event records a decision with its reason. The lock is held.
func (o *Orchestrator) event(kind, role, server, machine, format string, args ...any) {
	o.st.EventSeq++
	e := Event{Seq: o.st.EventSeq, Time: time.Now().UTC(), Kind: kind, Role: role, Server: server, Machine: machine, Message: fmt.Sprintf(format, args...)}
	o.st.Events = append(o.st.Events, e)
	if n := len(o.st.Events); n > MaxEvents {
		o.st.Events = append([]Event(nil), o.st.Events[n-MaxEvents:]...)
	}
	o.log.Info(e.Message, "event", kind, "role", role, "server", server, "machine", machine)
	o.changed()
}

// Shutdown drains the whole fleet: every pool and the spare pool go to zero,
// every server is drained and halted, every machine terminated. It returns
// when nothing is left or ctx is done; then it terminates whatever machines
// remain through the provider. Run must be running.
func (o *Orchestrator) Shutdown(ctx context.Context) error {
	select {
	case <-o.ready:
	case <-ctx.Done():
		return ctx.Err()
	}
	o.mu.Lock()
	if !o.draining {
		o.draining = true
		o.event("shutdown", "", "", "", "shutting down: draining %d servers, retiring %d machines", len(o.st.Servers), len(o.st.Machines))
		o.flush()
	}
	o.mu.Unlock()
	o.poke()
	for {
		o.mu.Lock()
		left := len(o.st.Servers) + len(o.st.Machines)
		ch := o.notify
		o.mu.Unlock()
		if left == 0 {
			return nil
		}
		select {
		case <-ch:
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
			return o.terminateAll()
		}
	}
}

// terminateAll terminates every machine the provider lists for the cluster:
// the last resort of Shutdown when draining took too long.
func (o *Orchestrator) terminateAll() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ms, err := o.prov.List(ctx, map[string]string{provider.TagCluster: o.cfg.Cluster})
	if err != nil {
		return fmt.Errorf("orchestrator: list machines: %w", err)
	}
	var errs []error
	for _, m := range ms {
		if err := o.prov.Terminate(ctx, m.ID); err != nil {
			errs = append(errs, err)
		}
	}
	o.mu.Lock()
	o.event("shutdown", "", "", "", "drain deadline passed: terminated %d machines", len(ms))
	for id := range o.st.Machines {
		delete(o.st.Machines, id)
	}
	for name, s := range o.st.Servers {
		_ = o.q.DeleteQueue(ctx, s.Queue)
		delete(o.st.Servers, name)
	}
	o.changed()
	o.flush()
	o.mu.Unlock()
	return errors.Join(errs...)
}

// sortedServers returns the servers sorted by role, then number.
func sortedServers(m map[string]*Server) []*Server {
	out := make([]*Server, 0, len(m))
	for _, s := range m {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return serverLess(out[i].Name, out[j].Name) })
	return out
}

// serverLess orders web-2 before web-10.
func serverLess(a, b string) bool {
	ra, na := splitName(a)
	rb, nb := splitName(b)
	if ra != rb {
		return ra < rb
	}
	return na < nb
}

func splitName(s string) (string, int) {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '-' {
			n := 0
			for _, c := range s[i+1:] {
				if c < '0' || c > '9' {
					return s, 0
				}
				n = n*10 + int(c-'0')
			}
			return s[:i], n
		}
	}
	return s, 0
}
