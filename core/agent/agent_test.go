package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/rosterhq/roster/core/protocol"
	"github.com/rosterhq/roster/core/queue"
	"github.com/rosterhq/roster/core/queue/local"
	"github.com/rosterhq/roster/sdk"
	"github.com/zclconf/go-cty/cty"
)

const (
	testCluster = "t"
	testMachine = "m-1"
	waitLimit   = 20 * time.Second
)

// testRole is an in-process sdk.Role whose behaviour each test sets and
// whose calls each test inspects.
type testRole struct {
	mu           sync.Mutex
	provisionErr error
	provisionFor time.Duration // how long Provision takes
	progress     int           // progress reports per Provision
	healthy      bool          // what HealthCheck says
	healthErr    error         // HealthCheck fails with this
	drainOpen    []int         // successive Drain results; 0 once exhausted
	logs         []sdk.LogFile // what Teardown returns
	calls        map[string]int
	lastConfig   sdk.Config
	configured   []sdk.ConfigureRequest
}

func newTestRole() *testRole { return &testRole{healthy: true, calls: map[string]int{}} }

func (r *testRole) count(call string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls[call]
}

func (r *testRole) set(f func(r *testRole)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(r)
}

func (r *testRole) Info(context.Context) (sdk.Info, error) { return sdk.Info{Name: "test"}, nil }

func (r *testRole) ConfigSchema(context.Context) (sdk.Schema, error) { return sdk.Schema{}, nil }

func (r *testRole) Provision(_ context.Context, req sdk.ProvisionRequest) (sdk.ProvisionResponse, error) {
	r.mu.Lock()
	r.calls["provision"]++
	r.lastConfig = req.Config
	n, err, d := r.progress, r.provisionErr, r.provisionFor
	r.mu.Unlock()
	time.Sleep(d)
	if _, statErr := os.Stat(req.Server.WorkDir); statErr != nil {
		return sdk.ProvisionResponse{}, fmt.Errorf("work dir: %w", statErr)
	}
	for i := 0; i < n; i++ {
		req.Report(fmt.Sprintf("step-%d", i), "working", float64(i+1)/float64(n))
	}
	if err != nil {
		return sdk.ProvisionResponse{}, err
	}
	r.set(func(r *testRole) { r.healthy = true })
	return sdk.ProvisionResponse{Endpoints: sdk.Endpoints{"http": "127.0.0.1:1"}}, nil
}

func (r *testRole) HealthCheck(_ context.Context, req sdk.HealthCheckRequest) (sdk.HealthCheckResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls["health"]++
	if r.healthErr != nil {
		return sdk.HealthCheckResponse{}, r.healthErr
	}
	return sdk.HealthCheckResponse{Healthy: r.healthy, Reason: "checked", Metrics: map[string]float64{"busy": 0.5, "port": float64(len(req.Endpoints))}}, nil
}

func (r *testRole) Drain(_ context.Context, _ sdk.DrainRequest) (sdk.DrainResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls["drain"]++
	if len(r.drainOpen) == 0 {
		return sdk.DrainResponse{}, nil
	}
	n := r.drainOpen[0]
	r.drainOpen = r.drainOpen[1:]
	return sdk.DrainResponse{OpenConnections: n}, nil
}

func (r *testRole) Teardown(context.Context, sdk.TeardownRequest) (sdk.TeardownResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls["teardown"]++
	r.healthy = false
	return sdk.TeardownResponse{Logs: r.logs}, nil
}

func (r *testRole) Configure(_ context.Context, req sdk.ConfigureRequest) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.configured = append(r.configured, req)
	return nil
}

// harness is an orchestrator stand-in on the real local queue with the
// real codec.
type harness struct {
	t       *testing.T
	dir     string
	q       queue.Queue
	keys    protocol.Keys
	orch    *protocol.Codec
	epoch   uint64
	inbox   string
	logDest string
	reports chan *protocol.Envelope
	seen    []*protocol.Envelope
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	dir := t.TempDir()
	q, err := local.Open(filepath.Join(dir, "queue"), local.Options{ReuseDelay: -1, Recheck: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := protocol.GenerateKeys()
	if err != nil {
		t.Fatal(err)
	}
	orch, err := protocol.NewCodec(keys, protocol.Options{Accept: protocol.AcceptReports})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{
		t: t, dir: dir, q: q, keys: keys, orch: orch, epoch: 1,
		inbox:   protocol.ServerQueue(testCluster, "web-1", "abc"),
		logDest: "file://" + filepath.Join(dir, "logs"),
		reports: make(chan *protocol.Envelope, 1000),
	}
	ctx := context.Background()
	for _, name := range []string{protocol.GlobalQueue(testCluster), protocol.OrchestratorQueue(testCluster), h.inbox} {
		if err := q.CreateQueue(ctx, name, queue.QueueOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go h.readReports(rctx, done)
	t.Cleanup(func() {
		cancel()
		<-done
		q.Close()
	})
	return h
}

func (h *harness) readReports(ctx context.Context, done chan struct{}) {
	defer close(done)
	oq := protocol.OrchestratorQueue(testCluster)
	for ctx.Err() == nil {
		msgs, err := h.q.Receive(ctx, oq, queue.ReceiveOptions{MaxMessages: 10, WaitTime: time.Second})
		if err != nil {
			continue
		}
		for _, m := range msgs {
			env, err := h.orch.Open(m.Body)
			if err != nil {
				h.t.Errorf("report does not open: %v", err)
			} else {
				h.reports <- env
			}
			_ = h.q.DeleteMessage(context.Background(), oq, m.Receipt)
		}
	}
}

// expect returns the next report of the given kind for which match holds,
// skipping the others (kept in h.seen).
func (h *harness) expect(kind protocol.Kind, match func(env *protocol.Envelope) bool) *protocol.Envelope {
	h.t.Helper()
	deadline := time.After(waitLimit)
	for {
		select {
		case env := <-h.reports:
			h.seen = append(h.seen, env)
			if env.Kind == kind && (match == nil || match(env)) {
				return env
			}
		case <-deadline:
			h.t.Fatalf("no %s report within %s; seen: %s", kind, waitLimit, h.kinds())
			return nil
		}
	}
}

func (h *harness) kinds() string {
	var s []string
	for _, e := range h.seen {
		s = append(s, string(e.Kind))
	}
	return strings.Join(s, ",")
}

func decode[T any](t *testing.T, env *protocol.Envelope) T {
	t.Helper()
	var v T
	if err := env.DecodeBody(&v); err != nil {
		t.Fatalf("%s body: %v", env.Kind, err)
	}
	return v
}

// seal seals an order from the orchestrator.
func (h *harness) seal(kind protocol.Kind, recipient string, body any) (id, raw string) {
	h.t.Helper()
	raw, err := h.orch.Seal(kind, "orchestrator", recipient, h.epoch, body)
	if err != nil {
		h.t.Fatal(err)
	}
	env, err := mustOpenAll(h.keys).Open(raw)
	if err != nil {
		h.t.Fatal(err)
	}
	return env.ID, raw
}

func mustOpenAll(keys protocol.Keys) *protocol.Codec {
	c, err := protocol.NewCodec(keys, protocol.Options{})
	if err != nil {
		panic(err)
	}
	return c
}

func (h *harness) put(q, raw string) {
	h.t.Helper()
	if _, err := h.q.Send(context.Background(), q, raw); err != nil {
		h.t.Fatal(err)
	}
}

// order seals and sends an order, returning its id.
func (h *harness) order(q string, kind protocol.Kind, recipient string, body any) string {
	h.t.Helper()
	id, raw := h.seal(kind, recipient, body)
	h.put(q, raw)
	return id
}

func (h *harness) commission(machine string) protocol.Commission {
	cfg, err := protocol.EncodeValue(cty.ObjectVal(map[string]cty.Value{"greeting": cty.StringVal("hi")}))
	if err != nil {
		h.t.Fatal(err)
	}
	return protocol.Commission{
		Role: "web", Server: "web-1", Inbox: h.inbox, Plugin: "test", Config: cfg,
		HealthInterval: protocol.Duration(100 * time.Millisecond), HealthTimeout: protocol.Duration(time.Second),
		ProvisionTimeout: protocol.Duration(time.Minute), DrainTimeout: protocol.Duration(10 * time.Second),
		LogDestination: h.logDest, Machine: machine,
	}
}

// running is an agent running in the background.
type running struct {
	a    *Agent
	stop context.CancelFunc
	done chan error
}

func (h *harness) start(role sdk.Role, workDir string) *running {
	h.t.Helper()
	codec, err := protocol.NewCodec(h.keys.Agent(), protocol.Options{Accept: protocol.AcceptOrders, FollowEpoch: true})
	if err != nil {
		h.t.Fatal(err)
	}
	a, err := New(Config{
		Cluster: testCluster, MachineID: testMachine, WorkDir: workDir, Queue: h.q, Codec: codec,
		Plugins:        LauncherFunc(func(context.Context, string) (sdk.Role, error) { return role, nil }),
		Logger:         hclog.New(&hclog.LoggerOptions{Level: hclog.Info, Output: testWriter{h.t}}),
		SpareHeartbeat: 100 * time.Millisecond, PollWait: time.Second, GrantWait: 3 * time.Second,
		ProgressInterval: time.Hour, Provider: "test", Version: "test",
	})
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{a: a, stop: cancel, done: make(chan error, 1)}
	go func() { r.done <- a.Run(ctx) }()
	h.t.Cleanup(func() { r.halt(h.t) })
	return r
}

// halt stops the agent gracefully and waits for Run to return.
func (r *running) halt(t *testing.T) {
	t.Helper()
	r.stop()
	r.wait(t)
}

func (r *running) wait(t *testing.T) {
	t.Helper()
	select {
	case err, ok := <-r.done:
		if ok && err != nil {
			t.Errorf("agent: %v", err)
		}
		if ok {
			close(r.done)
		}
	case <-time.After(waitLimit):
		t.Fatal("agent did not stop")
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// toServing commissions the agent and waits for its first serving
// heartbeat.
func (h *harness) toServing(r sdk.Role, workDir string) (*running, string) {
	h.t.Helper()
	ag := h.start(r, workDir)
	h.expect(protocol.KindHello, nil)
	cid := h.order(protocol.GlobalQueue(testCluster), protocol.KindCommission, "spares", h.commission(""))
	h.expect(protocol.KindClaim, nil)
	h.order(h.inbox, protocol.KindGrant, "web-1", protocol.Grant{Commission: cid, Server: "web-1", MachineID: testMachine})
	h.expect(protocol.KindReady, nil)
	h.expect(protocol.KindHeartbeat, func(e *protocol.Envelope) bool {
		return decode[protocol.Heartbeat](h.t, e).State == protocol.StateServing
	})
	return ag, cid
}

func TestSpareHelloAndHeartbeat(t *testing.T) {
	h := newHarness(t)
	h.start(newTestRole(), filepath.Join(h.dir, "m"))
	hello := decode[protocol.Hello](t, h.expect(protocol.KindHello, nil))
	if hello.State != protocol.StateSpare || hello.MachineID != testMachine || hello.Server != "" || hello.Provider != "test" {
		t.Fatalf("hello = %+v", hello)
	}
	hb := decode[protocol.Heartbeat](t, h.expect(protocol.KindHeartbeat, nil))
	if hb.State != protocol.StateSpare || !hb.Healthy || hb.MachineID != testMachine || hb.Load < 0 {
		t.Fatalf("heartbeat = %+v", hb)
	}
}

func TestCommissionToReady(t *testing.T) {
	h := newHarness(t)
	role := newTestRole()
	role.progress = 100
	work := filepath.Join(h.dir, "m")
	h.start(role, work)
	h.expect(protocol.KindHello, nil)

	cid := h.order(protocol.GlobalQueue(testCluster), protocol.KindCommission, "spares", h.commission(""))
	claim := decode[protocol.Claim](t, h.expect(protocol.KindClaim, nil))
	if claim != (protocol.Claim{Commission: cid, Server: "web-1", MachineID: testMachine}) {
		t.Fatalf("claim = %+v", claim)
	}
	h.order(h.inbox, protocol.KindGrant, "web-1", protocol.Grant{Commission: cid, Server: "web-1", MachineID: testMachine})

	ready := decode[protocol.Ready](t, h.expect(protocol.KindReady, nil))
	if ready.Server != "web-1" || ready.Endpoints["http"] != "127.0.0.1:1" {
		t.Fatalf("ready = %+v", ready)
	}
	// Progress: coalesced (the interval is an hour), the last always sent,
	// and all of it before Ready.
	var progress []protocol.ProgressReport
	for _, e := range h.seen {
		if e.Kind == protocol.KindProgress {
			progress = append(progress, decode[protocol.ProgressReport](t, e))
		}
	}
	if len(progress) == 0 || len(progress) > 2 {
		t.Fatalf("got %d progress reports, want 1 or 2 of 100 (coalesced)", len(progress))
	}
	if last := progress[len(progress)-1]; last.Step != "step-99" || last.Fraction != 1 || last.Server != "web-1" {
		t.Fatalf("last progress = %+v", last)
	}
	hb := decode[protocol.Heartbeat](t, h.expect(protocol.KindHeartbeat, func(e *protocol.Envelope) bool {
		return decode[protocol.Heartbeat](t, e).State == protocol.StateServing
	}))
	if !hb.Healthy || hb.Server != "web-1" || hb.Metrics["busy"] != 0.5 || hb.Metrics["port"] != 1 {
		t.Fatalf("heartbeat = %+v", hb)
	}
	role.mu.Lock()
	got := role.lastConfig.String("greeting")
	role.mu.Unlock()
	if got != "hi" {
		t.Fatalf("provision got config greeting %q", got)
	}
	if _, err := os.Stat(filepath.Join(work, "servers", "web-1")); err != nil {
		t.Fatalf("server work dir: %v", err)
	}
	// The commission and the grant were deleted.
	for _, q := range []string{protocol.GlobalQueue(testCluster), h.inbox} {
		attrs, err := h.q.QueueAttributes(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		if attrs.ApproximateMessages+attrs.ApproximateInFlight != 0 {
			t.Fatalf("queue %s still holds %+v", q, attrs)
		}
	}

	// Ping: a heartbeat at once; Configure reaches the plugin.
	h.order(h.inbox, protocol.KindPing, "web-1", protocol.Ping{Server: "web-1"})
	newCfg, _ := protocol.EncodeValue(cty.ObjectVal(map[string]cty.Value{"greeting": cty.StringVal("hello")}))
	h.order(h.inbox, protocol.KindConfigure, "web-1", protocol.Configure{Server: "web-1", Config: newCfg,
		Peers: map[string][]protocol.Peer{"db": {{Name: "db-1", Endpoints: map[string]string{"pg": "127.0.0.1:5"}}}}})
	waitUntil(t, "configure applied", func() bool {
		role.mu.Lock()
		defer role.mu.Unlock()
		return len(role.configured) == 1
	})
	role.mu.Lock()
	c := role.configured[0]
	role.mu.Unlock()
	if c.Config.String("greeting") != "hello" || c.Peers["db"][0].Endpoints["pg"] != "127.0.0.1:5" || c.Server.Name != "web-1" {
		t.Fatalf("configure request = %+v", c)
	}
	if role.count("provision") != 1 {
		t.Fatalf("provisioned %d times", role.count("provision"))
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, waitLimit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestGrantForAnotherMachineStaysSpare(t *testing.T) {
	h := newHarness(t)
	role := newTestRole()
	h.start(role, filepath.Join(h.dir, "m"))
	h.expect(protocol.KindHello, nil)

	cid := h.order(protocol.GlobalQueue(testCluster), protocol.KindCommission, "spares", h.commission(""))
	h.expect(protocol.KindClaim, nil)
	gid := h.order(h.inbox, protocol.KindGrant, "web-1", protocol.Grant{Commission: cid, Server: "web-1", MachineID: "m-other"})

	// Still a spare: it claims the next commission.
	c2 := h.commission("")
	c2.Server = "web-2"
	cid2 := h.order(protocol.GlobalQueue(testCluster), protocol.KindCommission, "spares", c2)
	claim := decode[protocol.Claim](t, h.expect(protocol.KindClaim, nil))
	if claim.Commission != cid2 {
		t.Fatalf("claim = %+v, want commission %s", claim, cid2)
	}
	if role.count("provision") != 0 {
		t.Fatal("provisioned without a grant")
	}
	// The other machine's grant was left on the inbox for it.
	msgs, err := h.q.Receive(context.Background(), h.inbox, queue.ReceiveOptions{WaitTime: 5 * time.Second})
	if err != nil || len(msgs) != 1 {
		t.Fatalf("inbox: %v, %d messages", err, len(msgs))
	}
	if env, err := mustOpenAll(h.keys).Open(msgs[0].Body); err != nil || env.ID != gid {
		t.Fatalf("inbox holds %v, %v; want the grant %s", env, err, gid)
	}
}

func TestCommissionReservedForAnotherMachine(t *testing.T) {
	h := newHarness(t)
	role := newTestRole()
	h.start(role, filepath.Join(h.dir, "m"))
	h.expect(protocol.KindHello, nil)

	reserved := h.order(protocol.GlobalQueue(testCluster), protocol.KindCommission, "spares", h.commission("m-other"))
	c2 := h.commission("")
	c2.Server = "web-2"
	open := h.order(protocol.GlobalQueue(testCluster), protocol.KindCommission, "spares", c2)
	claim := decode[protocol.Claim](t, h.expect(protocol.KindClaim, nil))
	if claim.Commission != open {
		t.Fatalf("claimed %s, want %s (not the reserved %s)", claim.Commission, open, reserved)
	}
	// The reserved commission is still there for its machine, and opens
	// there (it was released, not consumed).
	other, err := protocol.NewCodec(h.keys.Agent(), protocol.Options{Accept: protocol.AcceptOrders})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	deadline := time.Now().Add(waitLimit)
	for !found && time.Now().Before(deadline) {
		msgs, err := h.q.Receive(context.Background(), protocol.GlobalQueue(testCluster), queue.ReceiveOptions{WaitTime: time.Second, VisibilityTimeout: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			env, err := other.Open(m.Body)
			if err != nil {
				t.Fatalf("reserved commission does not open for its machine: %v", err)
			}
			found = env.ID == reserved
		}
	}
	if !found {
		t.Fatal("the reserved commission is gone")
	}
}

func TestFailedProvisionTearsDownAndBecomesSpare(t *testing.T) {
	h := newHarness(t)
	role := newTestRole()
	role.provisionErr = sdk.Errorf(sdk.ErrInvalidConfig, "document root missing")
	work := filepath.Join(h.dir, "m")
	h.start(role, work)
	h.expect(protocol.KindHello, nil)
	cid := h.order(protocol.GlobalQueue(testCluster), protocol.KindCommission, "spares", h.commission(""))
	h.expect(protocol.KindClaim, nil)
	h.order(h.inbox, protocol.KindGrant, "web-1", protocol.Grant{Commission: cid, Server: "web-1", MachineID: testMachine})

	f := decode[protocol.Failed](t, h.expect(protocol.KindFailed, nil))
	if f.Stage != "provision" || f.Order != cid || f.Server != "web-1" || !strings.Contains(f.Error, "document root missing") {
		t.Fatalf("failed = %+v", f)
	}
	hello := decode[protocol.Hello](t, h.expect(protocol.KindHello, nil))
	if hello.State != protocol.StateSpare {
		t.Fatalf("hello = %+v", hello)
	}
	if role.count("teardown") != 1 {
		t.Fatalf("teardown ran %d times, want 1", role.count("teardown"))
	}
	if _, err := os.Stat(filepath.Join(work, "servers", "web-1")); !os.IsNotExist(err) {
		t.Fatalf("server work dir not cleaned: %v", err)
	}
	for _, e := range h.seen {
		if e.Kind == protocol.KindReady {
			t.Fatal("ready after a failed provision")
		}
	}
}

func TestHalt(t *testing.T) {
	for _, reuse := range []bool{false, true} {
		t.Run(fmt.Sprintf("reuse=%v", reuse), func(t *testing.T) {
			h := newHarness(t)
			role := newTestRole()
			logFile := filepath.Join(h.dir, "access.log")
			if err := os.WriteFile(logFile, []byte("GET /\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			role.logs = []sdk.LogFile{{Name: "apache/access.log", Path: logFile}}
			role.drainOpen = []int{2, 1, 0}
			work := filepath.Join(h.dir, "m")
			ag, _ := h.toServing(role, work)

			halt, raw := h.seal(protocol.KindHalt, "web-1", protocol.Halt{Server: "web-1", Reason: "scale in", DrainTimeout: protocol.Duration(10 * time.Second), Reuse: reuse})
			h.put(h.inbox, raw)
			h.put(h.inbox, raw) // delivered twice

			hl := decode[protocol.Halting](t, h.expect(protocol.KindHalting, nil))
			if hl.Server != "web-1" || hl.Reuse != reuse || hl.Open != 0 || len(hl.Logs) != 1 {
				t.Fatalf("halting = %+v", hl)
			}
			shipped := strings.TrimPrefix(hl.Logs[0], "file://")
			if !strings.HasPrefix(shipped, filepath.Join(h.dir, "logs", "web-1")+"/") || !strings.HasSuffix(shipped, "/apache/access.log") {
				t.Fatalf("log shipped to %s", shipped)
			}
			if b, err := os.ReadFile(shipped); err != nil || string(b) != "GET /\n" {
				t.Fatalf("shipped log: %q, %v", b, err)
			}
			if n := role.count("drain"); n != 3 {
				t.Fatalf("drain ran %d times, want 3 (until no connection remains)", n)
			}
			if reuse {
				hello := decode[protocol.Hello](t, h.expect(protocol.KindHello, nil))
				if hello.State != protocol.StateSpare {
					t.Fatalf("hello = %+v", hello)
				}
				if _, err := os.Stat(filepath.Join(work, "servers", "web-1")); !os.IsNotExist(err) {
					t.Fatalf("server work dir not cleaned: %v", err)
				}
			} else {
				ag.wait(t) // the machine halts by itself
				if ag.a.State() != StateHalted {
					t.Fatalf("state %s, want halted", ag.a.State())
				}
			}
			ag.halt(t)
			if n := role.count("teardown"); n != 1 {
				t.Fatalf("teardown ran %d times, want 1", n)
			}
			n := 0
			for _, e := range h.seen {
				if e.Kind == protocol.KindHalting {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("%d halting reports", n)
			}
			st, err := loadState(filepath.Join(work, StateFile), testMachine)
			if err != nil {
				t.Fatal(err)
			}
			if !st.applied(halt) {
				t.Fatal("the halt is not remembered as applied")
			}
			if !reuse {
				// A halted machine started again stays halted.
				again := h.start(role, work)
				again.wait(t)
				if again.a.State() != StateHalted || role.count("teardown") != 1 {
					t.Fatalf("restarted halted machine: state %s, teardowns %d", again.a.State(), role.count("teardown"))
				}
			}
		})
	}
}

// writeState puts a state file in place, as an agent killed in that state
// would have left it.
func (h *harness) writeState(work string, mutate func(s *state)) {
	h.t.Helper()
	if err := os.MkdirAll(filepath.Join(work, "servers", "web-1"), 0o755); err != nil {
		h.t.Fatal(err)
	}
	s := &state{
		MachineID: testMachine, State: protocol.StateServing, Epoch: h.epoch,
		Commission: &commissionState{ID: "01J00000000000000000000000", GrantID: "01J00000000000000000000001", Body: h.commission("")},
		Endpoints:  map[string]string{"http": "127.0.0.1:1"}, ReadyReported: true,
	}
	mutate(s)
	if err := saveState(filepath.Join(work, StateFile), s); err != nil {
		h.t.Fatal(err)
	}
}

func TestRestart(t *testing.T) {
	isServing := func(t *testing.T) func(e *protocol.Envelope) bool {
		return func(e *protocol.Envelope) bool {
			return decode[protocol.Heartbeat](t, e).State == protocol.StateServing
		}
	}
	t.Run("serving healthy: no provision", func(t *testing.T) {
		h := newHarness(t)
		work := filepath.Join(h.dir, "m")
		h.writeState(work, func(*state) {})
		role := newTestRole()
		h.start(role, work)
		hello := decode[protocol.Hello](t, h.expect(protocol.KindHello, nil))
		if hello.State != protocol.StateServing || hello.Server != "web-1" {
			t.Fatalf("hello = %+v", hello)
		}
		hb := decode[protocol.Heartbeat](t, h.expect(protocol.KindHeartbeat, isServing(t)))
		if !hb.Healthy {
			t.Fatalf("heartbeat = %+v", hb)
		}
		if role.count("provision") != 0 || role.count("teardown") != 0 {
			t.Fatalf("calls %v", role.calls)
		}
	})
	t.Run("serving unhealthy after ready: reported, not provisioned", func(t *testing.T) {
		h := newHarness(t)
		work := filepath.Join(h.dir, "m")
		h.writeState(work, func(*state) {})
		role := newTestRole()
		role.healthErr = errors.New(`plugin "test" crashed: signal: killed`)
		h.start(role, work)
		hb := decode[protocol.Heartbeat](t, h.expect(protocol.KindHeartbeat, isServing(t)))
		if hb.Healthy || !strings.Contains(hb.Reason, "crashed") {
			t.Fatalf("heartbeat = %+v", hb)
		}
		if role.count("provision") != 0 {
			t.Fatal("provisioned twice")
		}
	})
	t.Run("serving never reported ready and not running: provisioned again", func(t *testing.T) {
		h := newHarness(t)
		work := filepath.Join(h.dir, "m")
		h.writeState(work, func(s *state) { s.ReadyReported = false })
		role := newTestRole()
		role.healthy = false
		h.start(role, work)
		h.expect(protocol.KindReady, nil)
		if role.count("provision") != 1 || role.count("teardown") != 1 {
			t.Fatalf("calls %v", role.calls)
		}
	})
	t.Run("commissioning: provision finished", func(t *testing.T) {
		h := newHarness(t)
		work := filepath.Join(h.dir, "m")
		h.writeState(work, func(s *state) {
			s.State = protocol.StateCommissioning
			s.Endpoints, s.ReadyReported = nil, false
		})
		role := newTestRole()
		h.start(role, work)
		hello := decode[protocol.Hello](t, h.expect(protocol.KindHello, nil))
		if hello.State != protocol.StateCommissioning || hello.Server != "web-1" {
			t.Fatalf("hello = %+v", hello)
		}
		h.expect(protocol.KindReady, nil)
		if role.count("provision") != 1 || role.count("teardown") != 1 {
			t.Fatalf("calls %v", role.calls)
		}
	})
	t.Run("draining: halt finished", func(t *testing.T) {
		h := newHarness(t)
		work := filepath.Join(h.dir, "m")
		h.writeState(work, func(s *state) {
			s.State = protocol.StateDraining
			s.Halt = &haltState{OrderID: "01J00000000000000000000002", Deadline: time.Now().Add(time.Minute), Reuse: true}
		})
		role := newTestRole()
		h.start(role, work)
		hl := decode[protocol.Halting](t, h.expect(protocol.KindHalting, nil))
		if !hl.Reuse || hl.Server != "web-1" {
			t.Fatalf("halting = %+v", hl)
		}
		hello := decode[protocol.Hello](t, h.expect(protocol.KindHello, func(e *protocol.Envelope) bool {
			return decode[protocol.Hello](t, e).State == protocol.StateSpare
		}))
		_ = hello
		if role.count("drain") != 1 || role.count("teardown") != 1 || role.count("provision") != 0 {
			t.Fatalf("calls %v", role.calls)
		}
	})
	t.Run("tearing down and halting: no second teardown", func(t *testing.T) {
		h := newHarness(t)
		work := filepath.Join(h.dir, "m")
		h.writeState(work, func(s *state) {
			s.State = protocol.StateHalting
			s.Halt = &haltState{OrderID: "01J00000000000000000000002", Deadline: time.Now(), TornDown: true, Logs: []string{"file:///x/y"}}
		})
		role := newTestRole()
		ag := h.start(role, work)
		hl := decode[protocol.Halting](t, h.expect(protocol.KindHalting, nil))
		if hl.Reuse || len(hl.Logs) != 1 {
			t.Fatalf("halting = %+v", hl)
		}
		ag.wait(t)
		if role.count("teardown") != 0 || ag.a.State() != StateHalted {
			t.Fatalf("calls %v, state %s", role.calls, ag.a.State())
		}
	})
	t.Run("applied halt redelivered after restart changes nothing", func(t *testing.T) {
		h := newHarness(t)
		work := filepath.Join(h.dir, "m")
		halt, raw := h.seal(protocol.KindHalt, "web-1", protocol.Halt{Server: "web-1", Reuse: true})
		h.writeState(work, func(s *state) { s.markApplied(halt, time.Now()) })
		h.put(h.inbox, raw)
		role := newTestRole()
		h.start(role, work)
		waitUntil(t, "halt deleted", func() bool {
			attrs, err := h.q.QueueAttributes(context.Background(), h.inbox)
			return err == nil && attrs.ApproximateMessages+attrs.ApproximateInFlight == 0
		})
		// Still serving: another heartbeat after the halt is gone.
		h.expect(protocol.KindHeartbeat, isServing(t))
		h.expect(protocol.KindHeartbeat, isServing(t))
		if role.count("drain") != 0 || role.count("teardown") != 0 {
			t.Fatalf("calls %v", role.calls)
		}
	})
}

func TestGracefulStopKeepsServing(t *testing.T) {
	h := newHarness(t)
	role := newTestRole()
	work := filepath.Join(h.dir, "m")
	ag, _ := h.toServing(role, work)
	ag.halt(t)
	st, err := loadState(filepath.Join(work, StateFile), testMachine)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != protocol.StateServing || !st.ReadyReported || st.Endpoints["http"] != "127.0.0.1:1" {
		t.Fatalf("state after a graceful stop: %+v", st)
	}
	h.start(role, work)
	h.expect(protocol.KindHello, func(e *protocol.Envelope) bool {
		return decode[protocol.Hello](t, e).State == protocol.StateServing
	})
	if role.count("provision") != 1 {
		t.Fatalf("provisioned %d times", role.count("provision"))
	}
}

func TestRejectedMessages(t *testing.T) {
	h := newHarness(t)
	role := newTestRole()
	ag := h.start(role, filepath.Join(h.dir, "m"))
	h.expect(protocol.KindHello, nil)

	// Signed by another orchestrator's key: deleted at once, never claimed.
	otherKeys, _ := protocol.GenerateKeys()
	other, _ := protocol.NewCodec(otherKeys, protocol.Options{})
	forged, err := other.Seal(protocol.KindCommission, "orchestrator", "spares", 1, h.commission(""))
	if err != nil {
		t.Fatal(err)
	}
	h.put(protocol.GlobalQueue(testCluster), forged)
	// A changed byte in a genuine order: the signature breaks.
	_, genuine := h.seal(protocol.KindCommission, "spares", h.commission(""))
	h.put(protocol.GlobalQueue(testCluster), strings.Replace(genuine, `"sig":"`, `"sig":"A`, 1))
	// An order of an epoch older than one already seen.
	h.epoch = 5
	h.order(protocol.GlobalQueue(testCluster), protocol.KindPing, "spares", protocol.Ping{})
	h.epoch = 3
	h.order(protocol.GlobalQueue(testCluster), protocol.KindCommission, "spares", h.commission(""))

	waitUntil(t, "bad messages deleted", func() bool {
		attrs, err := h.q.QueueAttributes(context.Background(), protocol.GlobalQueue(testCluster))
		return err == nil && attrs.ApproximateMessages+attrs.ApproximateInFlight == 0
	})
	waitUntil(t, "rejections counted", func() bool { return ag.a.Rejected() == 3 })
	ag.halt(t)
	for _, e := range h.seen {
		if e.Kind == protocol.KindClaim {
			t.Fatal("claimed a forged commission")
		}
	}
	st, err := loadState(filepath.Join(h.dir, "m", StateFile), testMachine)
	if err != nil || st.Epoch != 5 {
		t.Fatalf("state epoch %d (%v), want 5", st.Epoch, err)
	}
	if st.State != protocol.StateSpare {
		t.Fatalf("state %s", st.State)
	}
}
