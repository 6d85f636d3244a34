package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/zclconf/go-cty/cty"

	"github.com/rosterhq/roster/core/agent"
	"github.com/rosterhq/roster/core/config"
	"github.com/rosterhq/roster/core/protocol"
	"github.com/rosterhq/roster/core/provider"
	"github.com/rosterhq/roster/core/queue"
	"github.com/rosterhq/roster/core/queue/local"
	"github.com/rosterhq/roster/sdk"
)

// The harness runs an orchestrator with real agents in-process: the local
// queue, a provider whose machines are agent goroutines, and a fake role
// whose metric and health the test sets.

type fakeRole struct {
	mu             sync.Mutex
	metrics        map[string]float64
	healthy        bool
	provisionDelay time.Duration
	failProvision  bool
	// hang makes Provision ignore its context until release is closed: an
	// agent stuck for good.
	hang    bool
	release chan struct{}
}

func (f *fakeRole) set(name string, v float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.metrics[name] = v
}

func (f *fakeRole) Info(context.Context) (sdk.Info, error) {
	return sdk.Info{Name: "fake", Version: "1"}, nil
}
func (f *fakeRole) ConfigSchema(context.Context) (sdk.Schema, error) { return sdk.Schema{}, nil }
func (f *fakeRole) Provision(ctx context.Context, req sdk.ProvisionRequest) (sdk.ProvisionResponse, error) {
	f.mu.Lock()
	d, fail, hang := f.provisionDelay, f.failProvision, f.hang
	f.mu.Unlock()
	req.Report("start", "starting", 0.5)
	if hang {
		<-f.release
		return sdk.ProvisionResponse{}, errors.New("released")
	}
	select {
	case <-time.After(d):
	case <-ctx.Done():
		return sdk.ProvisionResponse{}, ctx.Err()
	}
	if fail {
		return sdk.ProvisionResponse{}, errors.New("provision failed on purpose")
	}
	return sdk.ProvisionResponse{Endpoints: sdk.Endpoints{"http": "127.0.0.1:1"}}, nil
}
func (f *fakeRole) HealthCheck(context.Context, sdk.HealthCheckRequest) (sdk.HealthCheckResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := map[string]float64{}
	for k, v := range f.metrics {
		m[k] = v
	}
	return sdk.HealthCheckResponse{Healthy: f.healthy, Reason: map[bool]string{false: "told to be unhealthy"}[f.healthy], Metrics: m}, nil
}
func (f *fakeRole) Drain(context.Context, sdk.DrainRequest) (sdk.DrainResponse, error) {
	return sdk.DrainResponse{}, nil
}
func (f *fakeRole) Teardown(context.Context, sdk.TeardownRequest) (sdk.TeardownResponse, error) {
	return sdk.TeardownResponse{}, nil
}

// simProvider runs each machine as an agent goroutine.
type simProvider struct {
	t       testing.TB
	dir     string
	cluster string
	q       *local.Queue
	keys    protocol.Keys
	role    *fakeRole
	spareHB time.Duration

	// gate, when set, holds every agent back until it is closed.
	gate chan struct{}
	// plugins are roles by plugin name; any other name is role.
	plugins map[string]sdk.Role
	// grantWait is the agents' GrantWait; zero means 2 s.
	grantWait time.Duration

	mu       sync.Mutex
	machines map[string]*simMachine
	launches int
}

type simMachine struct {
	m      provider.Machine
	cancel context.CancelFunc
	done   chan struct{}
	// cut, once set, makes the machine's queue fail every call: a machine
	// that died with its agent mid-call, as SIGKILL leaves it.
	cut *atomic.Bool
}

// cutQueue is a machine's view of the queue, which the test can cut.
type cutQueue struct {
	*local.Queue
	cut *atomic.Bool
}

var errCut = errors.New("machine cut off")

func (q cutQueue) Send(ctx context.Context, name, body string) (string, error) {
	if q.cut.Load() {
		return "", errCut
	}
	return q.Queue.Send(ctx, name, body)
}

func (q cutQueue) Receive(ctx context.Context, name string, opts queue.ReceiveOptions) ([]queue.Message, error) {
	if q.cut.Load() {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return q.Queue.Receive(ctx, name, opts)
}

func (p *simProvider) Name() string { return "sim" }

func (p *simProvider) Launch(ctx context.Context, req provider.LaunchRequest) (provider.Machine, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if sm, ok := p.machines[req.MachineID]; ok {
		return sm.m, nil
	}
	codec, err := protocol.NewCodec(p.keys.Agent(), protocol.Options{Accept: protocol.AcceptOrders, FollowEpoch: true})
	if err != nil {
		return provider.Machine{}, err
	}
	cut := new(atomic.Bool)
	grantWait := p.grantWait
	if grantWait == 0 {
		grantWait = 2 * time.Second
	}
	a, err := agent.New(agent.Config{
		Cluster: p.cluster, MachineID: req.MachineID, WorkDir: filepath.Join(p.dir, req.MachineID),
		Queue: cutQueue{Queue: p.q, cut: cut}, Codec: codec, SpareHeartbeat: p.spareHB, PollWait: time.Second, GrantWait: grantWait,
		Plugins: agent.LauncherFunc(func(_ context.Context, name string) (sdk.Role, error) {
			if r, ok := p.plugins[name]; ok {
				return r, nil
			}
			return p.role, nil
		}),
		Logger: hclog.NewNullLogger(),
	})
	if err != nil {
		return provider.Machine{}, err
	}
	actx, cancel := context.WithCancel(context.Background())
	sm := &simMachine{m: provider.Machine{ID: req.MachineID, ProviderID: "sim-" + req.MachineID, State: "running", LaunchedAt: time.Now(), Tags: req.Tags}, cancel: cancel, done: make(chan struct{}), cut: cut}
	p.machines[req.MachineID] = sm
	p.launches++
	gate := p.gate
	go func() {
		defer close(sm.done)
		defer func() {
			p.mu.Lock()
			delete(p.machines, req.MachineID)
			p.mu.Unlock()
		}()
		if gate != nil {
			select {
			case <-gate:
			case <-actx.Done():
				return
			}
		}
		_ = a.Run(actx)
	}()
	return sm.m, nil
}

// cutOff silences a machine at once, whatever its agent is doing (a
// Provision that runs on, say): nothing it sends arrives any more.
func (p *simProvider) cutOff(id string) {
	p.mu.Lock()
	sm := p.machines[id]
	p.mu.Unlock()
	if sm != nil {
		sm.cut.Store(true)
	}
}

// kill stops a machine's agent without the orchestrator knowing.
func (p *simProvider) kill(id string) {
	p.mu.Lock()
	sm := p.machines[id]
	p.mu.Unlock()
	if sm != nil {
		sm.cancel()
		<-sm.done
	}
}

func (p *simProvider) Terminate(ctx context.Context, id string) error {
	p.kill(id)
	return nil
}

func (p *simProvider) List(ctx context.Context, tags map[string]string) ([]provider.Machine, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []provider.Machine
	for _, sm := range p.machines {
		out = append(out, sm.m)
	}
	return out, nil
}

func (p *simProvider) Close() error { return nil }

func (p *simProvider) launchCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.launches
}

func (p *simProvider) running() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for id := range p.machines {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

func (p *simProvider) stopAll() {
	for _, id := range p.running() {
		p.kill(id)
	}
}

type harness struct {
	t    *testing.T
	dir  string
	cfg  *config.Orchestrator
	q    *local.Queue
	keys protocol.Keys
	prov *simProvider
	role *fakeRole

	o      *Orchestrator
	cancel context.CancelFunc
	done   chan error
	api    *httptest.Server
}

func testRole() *config.Role {
	return &config.Role{
		Name: "web", Plugin: "fake",
		Count:     config.Count{Min: 2, Max: 3},
		Health:    config.Health{Interval: 100 * time.Millisecond, Timeout: time.Second, UnhealthyAfter: 3, LostAfter: 600 * time.Millisecond},
		Provision: config.Provision{Timeout: 10 * time.Second},
		Drain:     config.Drain{Timeout: time.Second},
		Register:  &config.Register{Balancer: "front", Endpoint: "http"},
		Config:    cty.EmptyObjectVal,
	}
}

func newHarness(t *testing.T, spares int, roles ...*config.Role) *harness {
	return newGatedHarness(t, nil, spares, roles...)
}

func newGatedHarness(t *testing.T, gate chan struct{}, spares int, roles ...*config.Role) *harness {
	t.Helper()
	return buildHarness(t, gate, nil, spares, roles...)
}

// newPluginHarness runs the roles whose plugin is named in plugins with
// those, the others with the fake role.
func newPluginHarness(t *testing.T, plugins map[string]sdk.Role, spares int, roles ...*config.Role) *harness {
	t.Helper()
	return buildHarness(t, nil, plugins, spares, roles...)
}

func buildHarness(t *testing.T, gate chan struct{}, plugins map[string]sdk.Role, spares int, roles ...*config.Role) *harness {
	t.Helper()
	return buildHarnessOpts(t, harnessOpts{gate: gate, plugins: plugins}, spares, roles...)
}

// harnessOpts are the harness's less common settings.
type harnessOpts struct {
	gate      chan struct{}
	plugins   map[string]sdk.Role
	grantWait time.Duration // the agents' GrantWait; zero means 2 s
}

func buildHarnessOpts(t *testing.T, opts harnessOpts, spares int, roles ...*config.Role) *harness {
	t.Helper()
	gate, plugins := opts.gate, opts.plugins
	dir := t.TempDir()
	q, err := local.Open(filepath.Join(dir, "queue"), local.Options{ReuseDelay: -1, Recheck: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := protocol.GenerateKeys()
	if err != nil {
		t.Fatal(err)
	}
	cfg := &config.Orchestrator{Cluster: "t", DataDir: filepath.Join(dir, "data"), Spares: spares, Roles: roles,
		Agent: config.AgentSettings{SpareHeartbeat: 200 * time.Millisecond}}
	role := &fakeRole{metrics: map[string]float64{}, healthy: true, release: make(chan struct{})}
	h := &harness{t: t, dir: dir, cfg: cfg, q: q, keys: keys, role: role,
		prov: &simProvider{t: t, dir: filepath.Join(dir, "machines"), cluster: "t", q: q, keys: keys, role: role, spareHB: 200 * time.Millisecond, machines: map[string]*simMachine{}, gate: gate, plugins: plugins, grantWait: opts.grantWait}}
	t.Cleanup(func() {
		close(role.release)
		h.stop()
		h.prov.stopAll()
		q.Close()
	})
	h.start()
	return h
}

func (h *harness) start() {
	h.t.Helper()
	o, err := New(Options{Config: h.cfg, Queue: h.q, Provider: h.prov, Keys: h.keys,
		Logger:            hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: os.Stderr}),
		ReconcileInterval: 100 * time.Millisecond, ProvisionGrace: 200 * time.Millisecond, SyncInterval: 500 * time.Millisecond, OrphanGrace: time.Second})
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.o, h.cancel, h.done = o, cancel, make(chan error, 1)
	go func() { h.done <- o.Run(ctx) }()
	h.api = httptest.NewServer(o.Handler())
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	<-h.done
	h.api.Close()
	h.cancel = nil
}

// waitFor polls cond until it holds or the deadline passes.
func (h *harness) waitFor(what string, d time.Duration, cond func(Status) bool) Status {
	h.t.Helper()
	deadline := time.Now().Add(d)
	for {
		st := h.o.Status()
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			b, _ := json.MarshalIndent(st, "", "  ")
			h.t.Fatalf("timed out waiting for %s; status:\n%s", what, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func countState(st Status, role, state string) int {
	n := 0
	for _, s := range st.Servers {
		if s.Role == role && s.State == state {
			n++
		}
	}
	return n
}

func hasEvent(st Status, kind, substr string) bool {
	return hasEventMatching(st, kind, regexp.QuoteMeta(substr))
}

// hasEventMatching says whether an event of kind has a message matching
// the regular expression re.
func hasEventMatching(st Status, kind, re string) bool {
	rx := regexp.MustCompile(re)
	for _, e := range st.Events {
		if e.Kind == kind && rx.MatchString(e.Message) {
			return true
		}
	}
	return false
}

func (h *harness) get(path string, v any) {
	h.t.Helper()
	resp, err := http.Get(h.api.URL + path)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		h.t.Fatalf("GET %s: %s", path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		h.t.Fatalf("GET %s: %v", path, err)
	}
}

var _ = fmt.Sprintf

type syncWriter struct {
	mu sync.Mutex
	b  *strings.Builder
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

func discardLogger() hclog.Logger { return hclog.NewNullLogger() }
