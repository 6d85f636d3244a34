package orchestrator

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/rosterhq/roster/core/config"
	"github.com/rosterhq/roster/core/protocol"
	"github.com/rosterhq/roster/core/queue"
	"github.com/rosterhq/roster/core/queue/local"
)

// claimsIgnored reads roster_claims_ignored_total{reason}.
func claimsIgnored(o *Orchestrator, reason string) float64 {
	var m dto.Metric
	if err := o.met.claimsIgn.WithLabelValues(reason).Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

// TestStaleCommissionCopyReturnsSpareAtOnce: a copy of web-1's commission
// is left on the global queue after web-1 was granted (a second copy sent
// while the first was being claimed). The spare that takes it is not
// granted web-1, and is told so: it is polling the global queue again at
// once, long before its grant wait (an hour here) would have ended —
// without the answer it would sit out the whole wait, as every cold
// machine that claimed such a copy did for 10 s.
func TestStaleCommissionCopyReturnsSpareAtOnce(t *testing.T) {
	r := testRole()
	r.Count = config.Count{Min: 1, Max: 1}
	r.Provision.Timeout = time.Minute
	gate := make(chan struct{})
	h := buildHarnessOpts(t, harnessOpts{gate: gate, grantWait: time.Hour}, 1, r)
	// web-1's machine provisions for the whole test: it reads no inbox
	// meanwhile, so the answers on web-1's inbox are the spare's to take.
	h.role.mu.Lock()
	h.role.hang = true
	h.role.mu.Unlock()
	close(gate)
	h.waitFor("web-1 provisioning and a spare idling", 20*time.Second, func(st Status) bool {
		if countState(st, "web", ServerProvisioning) != 1 || st.Spares.Idle != 1 || st.Spares.Launching != 0 {
			return false
		}
		h.o.mu.Lock()
		defer h.o.mu.Unlock()
		return h.o.settledSpares(time.Now()) == 1
	})
	h.o.mu.Lock()
	holder := h.o.st.Servers["web-1"].Machine
	h.o.mu.Unlock()

	ctx := context.Background()
	stale := func() {
		h.o.mu.Lock()
		defer h.o.mu.Unlock()
		h.o.sendCommission(ctx, h.o.st.Servers["web-1"])
	}
	claimed := func(n float64) func(Status) bool {
		return func(Status) bool { return claimsIgnored(h.o, "already_granted") == n }
	}
	// Both waits end well before the spare, silent while it waits for a
	// grant, would be taken for lost (SpareLostAfter, 15.6 s here) and
	// replaced by a machine that could claim the second copy in its stead.
	stale()
	h.waitFor("the spare's claim of the stale copy", 10*time.Second, claimed(1))
	// Back on the global queue: it takes the next copy too.
	stale()
	h.waitFor("the spare's claim of a second stale copy", 10*time.Second, claimed(2))

	st := h.o.Status()
	if countState(st, "web", ServerProvisioning) != 1 || st.Servers[0].Machine != holder || st.Spares.Idle != 1 {
		t.Fatalf("after the stale claims: %+v", st)
	}
	if n := h.prov.launchCount(); n != 2 {
		t.Errorf("%d launches, want 2", n)
	}
	// Nothing of either copy is left on the global queue.
	msgs, err := h.q.Receive(ctx, protocol.GlobalQueue("t"), queue.ReceiveOptions{WaitTime: 500 * time.Millisecond})
	if err != nil || len(msgs) != 0 {
		t.Errorf("global queue: %d messages, %v; want none", len(msgs), err)
	}
}

// unitOrchestrator is an orchestrator that does not run: the test hands it
// reports and calls its passes, on a real local queue.
func unitOrchestrator(t *testing.T) (*Orchestrator, *local.Queue, protocol.Keys) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	q, err := local.Open(filepath.Join(dir, "queue"), local.Options{ReuseDelay: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	keys, err := protocol.GenerateKeys()
	if err != nil {
		t.Fatal(err)
	}
	cfg := &config.Orchestrator{Cluster: "t", DataDir: filepath.Join(dir, "data"), Roles: []*config.Role{testRole()}}
	o, err := New(Options{Config: cfg, Queue: q, Provider: &simProvider{machines: map[string]*simMachine{}}, Keys: keys, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := MkdirDataDir(cfg.DataDir); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{o.globalQ, o.ordersQ} {
		if err := q.CreateQueue(ctx, name, queue.QueueOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	o.st = newState()
	o.st.Epoch = 1
	return o, q, keys
}

// orders drains a queue and opens what it held as an agent would.
func orders(t *testing.T, q queue.Queue, keys protocol.Keys, name string) []*protocol.Envelope {
	t.Helper()
	codec, err := protocol.NewCodec(keys.Agent(), protocol.Options{Accept: protocol.AcceptOrders})
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := q.Receive(context.Background(), name, queue.ReceiveOptions{MaxMessages: 10, WaitTime: 200 * time.Millisecond})
	if err != nil {
		t.Fatalf("receive from %s: %v", name, err)
	}
	var out []*protocol.Envelope
	for _, m := range msgs {
		env, err := codec.Open(m.Body)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out = append(out, env)
	}
	return out
}

// TestClaimsForGrantedServersAreRefused: a claim for a server granted to
// another machine — a stale copy of its commission, or the same copy
// delivered twice — is answered at once on the server's inbox, addressed
// to the claimant and naming the holder. A machine that claims a server
// the state says it holds is never answered with a grant naming it.
func TestClaimsForGrantedServersAreRefused(t *testing.T) {
	ctx := context.Background()
	o, q, keys := unitOrchestrator(t)
	for _, inbox := range []string{"t-srv-web-1-x", "t-srv-web-2-x"} {
		if err := q.CreateQueue(ctx, inbox, queue.QueueOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	o.st.Servers["web-1"] = &Server{Name: "web-1", Role: "web", State: ServerProvisioning, Queue: "t-srv-web-1-x", Commissions: []string{"c-1", "c-1b"}, Machine: "m-1", GrantedAt: now, CreatedAt: now}
	o.st.Servers["web-2"] = &Server{Name: "web-2", Role: "web", State: ServerReady, Queue: "t-srv-web-2-x", Commissions: []string{"c-2"}, Machine: "m-3", GrantedAt: now, CreatedAt: now}
	o.st.Machines["m-1"] = &Machine{ID: "m-1", State: MachineServer, Server: "web-1"}
	o.st.Machines["m-2"] = &Machine{ID: "m-2", State: MachineSpare}
	o.st.Machines["m-3"] = &Machine{ID: "m-3", State: MachineServer, Server: "web-2"}
	o.st.Machines["m-4"] = &Machine{ID: "m-4", State: MachineSpare}
	claim := func(machine, commission, server string) {
		t.Helper()
		b, err := json.Marshal(protocol.Claim{Commission: commission, Server: server, MachineID: machine})
		if err != nil {
			t.Fatal(err)
		}
		o.mu.Lock()
		defer o.mu.Unlock()
		o.handle(ctx, report{env: &protocol.Envelope{ID: "r-" + machine, Kind: protocol.KindClaim, Sender: machine, SentAt: time.Now(), Body: b}, at: time.Now()})
	}
	refusal := func(claimant, commission string) {
		t.Helper()
		envs := orders(t, q, keys, "t-srv-web-1-x")
		if len(envs) != 1 || envs[0].Kind != protocol.KindGrant {
			t.Fatalf("web-1's inbox holds %d orders, want one grant", len(envs))
		}
		var g protocol.Grant
		if err := envs[0].DecodeBody(&g); err != nil {
			t.Fatal(err)
		}
		if envs[0].Recipient != claimant || g != (protocol.Grant{Commission: commission, Server: "web-1", MachineID: "m-1"}) {
			t.Errorf("answer to %s: recipient %s, %+v; want %s told web-1 is m-1's", claimant, envs[0].Recipient, g, claimant)
		}
	}

	// A stale copy of web-1's commission, claimed by a spare.
	claim("m-2", "c-1b", "web-1")
	refusal("m-2", "c-1b")
	// The copy m-1 claimed, delivered to another spare as well.
	claim("m-4", "c-1", "web-1")
	refusal("m-4", "c-1")
	if s := o.st.Servers["web-1"]; s.Machine != "m-1" || s.State != ServerProvisioning {
		t.Errorf("web-1 after the other claims: %+v", s)
	}
	if got := claimsIgnored(o, "already_granted"); got != 2 {
		t.Errorf("claims ignored as already granted: %v, want 2", got)
	}

	// The machine that serves web-2, claiming it as a spare (its agent
	// lost the server): no grant naming it, and web-2 stays as it is.
	claim("m-3", "c-2", "web-2")
	if envs := orders(t, q, keys, "t-srv-web-2-x"); len(envs) != 0 {
		t.Errorf("web-2's inbox holds %d orders after m-3's claim, want none", len(envs))
	}
	if s := o.st.Servers["web-2"]; s.Machine != "m-3" || s.State != ServerReady {
		t.Errorf("web-2 after m-3's claim: %+v", s)
	}
}

// TestCommissionResentOnlyBesideSettledSpares: a commission unclaimed for
// commissionRetry is sent again only beside a spare that has idled for a
// while. A spare that has just said hello (a machine that booted, the
// very one the commission waited for) or whose last report is a claim is
// busy claiming: a second copy would wait on the global queue for the next
// spare, to be claimed for a server already granted.
func TestCommissionResentOnlyBesideSettledSpares(t *testing.T) {
	o, q, keys := unitOrchestrator(t)
	now := time.Now()
	s := &Server{Name: "web-1", Role: "web", State: ServerCommissioning, Queue: "t-srv-web-1-x", Commissions: []string{"c-1"}, CreatedAt: now}
	o.st.Servers["web-1"] = s
	m := &Machine{ID: "m-1", State: MachineSpare}
	o.st.Machines["m-1"] = m
	o.rt.server("web-1").sentAt = now.Add(-commissionRetry - time.Second)
	lm := o.rt.machine("m-1")

	pass := func(spareSince time.Time, agentState string) int {
		t.Helper()
		m.SpareSince, lm.agentState = spareSince, agentState
		o.mu.Lock()
		o.checkServers(context.Background(), now)
		o.mu.Unlock()
		return len(orders(t, q, keys, o.globalQ))
	}
	if n := pass(now, protocol.StateSpare); n != 0 || len(s.Commissions) != 1 {
		t.Fatalf("beside a spare that just said hello: %d copies sent, commissions %v; want none", n, s.Commissions)
	}
	if n := pass(now.Add(-time.Minute), protocol.StateCommissioning); n != 0 || len(s.Commissions) != 1 {
		t.Fatalf("beside a spare that is claiming: %d copies sent, commissions %v; want none", n, s.Commissions)
	}
	// A spare idle for a minute beside a commission nobody claimed for
	// commissionRetry: the copy is stuck (held by a spare that went away).
	if n := pass(now.Add(-time.Minute), protocol.StateSpare); n != 1 || len(s.Commissions) != 2 {
		t.Fatalf("beside a settled spare: %d copies sent, commissions %v; want one more", n, s.Commissions)
	}
}
