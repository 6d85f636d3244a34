package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/zclconf/go-cty/cty"

	"github.com/rosterhq/roster/core/protocol"
	"github.com/rosterhq/roster/core/queue"
	"github.com/rosterhq/roster/sdk"
)

func greeting(t *testing.T, s string) protocol.Value {
	t.Helper()
	v, err := protocol.EncodeValue(cty.ObjectVal(map[string]cty.Value{"greeting": cty.StringVal(s)}))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestConfigureGenerations: a Configure older than the last one applied
// (a late delivery) is ignored; the newest config is the one kept.
func TestConfigureGenerations(t *testing.T) {
	h := newHarness(t)
	role := newTestRole()
	work := filepath.Join(h.dir, "m")
	h.toServing(role, work)
	configure := func(g string, gen uint64) {
		h.order(h.inbox, protocol.KindConfigure, "web-1", protocol.Configure{Server: "web-1", Config: greeting(t, g), Generation: gen})
	}
	got := func() []string {
		role.mu.Lock()
		defer role.mu.Unlock()
		var out []string
		for _, c := range role.configured {
			out = append(out, c.Config.String("greeting"))
		}
		return out
	}
	configure("two", 2)
	waitUntil(t, "the first configure", func() bool { return len(got()) == 1 })
	configure("one", 1)   // late: ignored
	configure("again", 2) // the same generation again: ignored
	configure("three", 3)
	configure("four", 4)
	waitUntil(t, "the later configures", func() bool { return len(got()) >= 3 })
	if g := strings.Join(got(), ","); g != "two,three,four" {
		t.Fatalf("configured %s, want two,three,four", g)
	}
	// The ignored ones were consumed all the same, and the newest config
	// is the server's from now on, also after a restart.
	waitUntil(t, "the inbox emptied", func() bool {
		attrs, err := h.q.QueueAttributes(context.Background(), h.inbox)
		return err == nil && attrs.ApproximateMessages+attrs.ApproximateInFlight == 0
	})
	st, err := loadState(filepath.Join(work, StateFile), testMachine)
	if err != nil {
		t.Fatal(err)
	}
	if st.Commission.ConfigGeneration != 4 {
		t.Errorf("state: generation %d, want 4", st.Commission.ConfigGeneration)
	}
	if v, err := st.Commission.Body.Config.Decode(); err != nil || sdk.NewConfig(v).String("greeting") != "four" {
		t.Errorf("state: config %#v, %v", v, err)
	}
}

// unimplementedConfigure answers Configure as a plugin without it does
// through the plugin transport.
type unimplementedConfigure struct{ *testRole }

func (r unimplementedConfigure) Configure(context.Context, sdk.ConfigureRequest) error {
	r.mu.Lock()
	r.calls["configure"]++
	r.mu.Unlock()
	return sdk.Errorf(sdk.ErrUnimplemented, "the role does not implement Configure")
}

// noConfigure is a role with no Configure method at all.
type noConfigure struct{ sdk.Role }

// TestConfigureWithoutPluginSupport: a plugin that does not implement
// Configure is not an error: no failure is reported, the server serves on.
func TestConfigureWithoutPluginSupport(t *testing.T) {
	for name, wrap := range map[string]func(*testRole) sdk.Role{
		"unimplemented": func(r *testRole) sdk.Role { return unimplementedConfigure{r} },
		"no method":     func(r *testRole) sdk.Role { return noConfigure{r} },
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			role := newTestRole()
			h.toServing(wrap(role), filepath.Join(h.dir, "m"))
			h.order(h.inbox, protocol.KindConfigure, "web-1", protocol.Configure{Server: "web-1", Config: greeting(t, "hello"), Generation: 1})
			// Orders are handled in turn, so a failed configure would be
			// reported before the halting.
			h.order(h.inbox, protocol.KindHalt, "web-1", protocol.Halt{Server: "web-1", Reason: "test", DrainTimeout: protocol.Duration(time.Second)})
			h.expect(protocol.KindHalting, nil)
			for _, e := range h.seen {
				if e.Kind == protocol.KindFailed {
					t.Fatalf("failure reported: %+v", decode[protocol.Failed](t, e))
				}
			}
			role.mu.Lock()
			defer role.mu.Unlock()
			if name == "unimplemented" && role.calls["configure"] != 1 {
				t.Errorf("Configure called %d times, want 1", role.calls["configure"])
			}
			if len(role.configured) != 0 {
				t.Errorf("configured through a method the plugin does not have: %+v", role.configured)
			}
		})
	}
}

// TestStopWhileAwaitingGrantWithdrawsClaim: a spare stopped between its
// claim and the grant gives the claim up, so that the orchestrator
// commissions the server again at once.
func TestStopWhileAwaitingGrantWithdrawsClaim(t *testing.T) {
	h := newHarness(t)
	role := newTestRole()
	ag := h.start(role, filepath.Join(h.dir, "m"))
	h.expect(protocol.KindHello, nil)
	cid := h.order(protocol.GlobalQueue(testCluster), protocol.KindCommission, "spares", h.commission(""))
	h.expect(protocol.KindClaim, nil)
	ag.halt(t)
	f := decode[protocol.Failed](t, h.expect(protocol.KindFailed, nil))
	if f.Stage != "claim" || f.Order != cid || f.Server != "web-1" || f.MachineID != testMachine || !strings.Contains(f.Error, "stopped") {
		t.Fatalf("failed = %+v", f)
	}
	if role.count("provision") != 0 {
		t.Fatal("provisioned without a grant")
	}
}

// TestNoGrantWithdrawsClaim: no grant within GrantWait: the spare stays a
// spare and says it gave the claim up.
func TestNoGrantWithdrawsClaim(t *testing.T) {
	h := newHarness(t)
	h.start(newTestRole(), filepath.Join(h.dir, "m"))
	h.expect(protocol.KindHello, nil)
	cid := h.order(protocol.GlobalQueue(testCluster), protocol.KindCommission, "spares", h.commission(""))
	h.expect(protocol.KindClaim, nil)
	f := decode[protocol.Failed](t, h.expect(protocol.KindFailed, nil))
	if f.Stage != "claim" || f.Order != cid || !strings.Contains(f.Error, "no grant within") {
		t.Fatalf("failed = %+v", f)
	}
	hb := decode[protocol.Heartbeat](t, h.expect(protocol.KindHeartbeat, nil))
	if hb.State != protocol.StateSpare {
		t.Fatalf("after the withdrawal: heartbeat %+v", hb)
	}
}

// TestStoppingSpareReleasesCommission: a commission received as the agent
// stops goes back to the other spares at once, unclaimed.
func TestStoppingSpareReleasesCommission(t *testing.T) {
	h := newHarness(t)
	codec, err := protocol.NewCodec(h.keys.Agent(), protocol.Options{Accept: protocol.AcceptOrders, FollowEpoch: true})
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Config{
		Cluster: testCluster, MachineID: testMachine, WorkDir: filepath.Join(h.dir, "m"), Queue: h.q, Codec: codec,
		Plugins: LauncherFunc(func(context.Context, string) (sdk.Role, error) { return newTestRole(), nil }),
		Logger:  hclog.New(&hclog.LoggerOptions{Level: hclog.Info, Output: testWriter{t}}),
	})
	if err != nil {
		t.Fatal(err)
	}
	a.st = &state{Version: stateVersion, MachineID: testMachine, State: protocol.StateSpare}
	global := protocol.GlobalQueue(testCluster)
	cid := h.order(global, protocol.KindCommission, "spares", h.commission(""))
	ctx := context.Background()
	msgs, err := h.q.Receive(ctx, global, queue.ReceiveOptions{WaitTime: 5 * time.Second, VisibilityTimeout: time.Hour})
	if err != nil || len(msgs) != 1 {
		t.Fatalf("receive: %d messages, %v", len(msgs), err)
	}
	env, ok := a.open(ctx, global, msgs[0])
	if !ok || env.ID != cid {
		t.Fatalf("open: %+v", env)
	}
	stopped, cancel := context.WithCancel(ctx)
	cancel()
	if err := a.onGlobal(stopped, global, msgs[0]); err != nil {
		t.Fatal(err)
	}
	// Visible again at once, though it was taken for an hour.
	again, err := h.q.Receive(ctx, global, queue.ReceiveOptions{WaitTime: 5 * time.Second})
	if err != nil || len(again) != 1 || again[0].Body != msgs[0].Body {
		t.Fatalf("after the stop: %d messages, %v; want the commission back", len(again), err)
	}
	if a.st.applied(cid) {
		t.Error("the released commission is marked applied")
	}
	select {
	case env := <-h.reports:
		t.Errorf("reported %s while stopping", env.Kind)
	default:
	}
}

// TestHeartbeatsWhileCommissioning: the agent heartbeats (state
// commissioning) while its plugin provisions.
func TestHeartbeatsWhileCommissioning(t *testing.T) {
	h := newHarness(t)
	role := newTestRole()
	role.provisionFor = time.Second // ten health intervals
	h.start(role, filepath.Join(h.dir, "m"))
	h.expect(protocol.KindHello, nil)
	cid := h.order(protocol.GlobalQueue(testCluster), protocol.KindCommission, "spares", h.commission(""))
	h.expect(protocol.KindClaim, nil)
	h.order(h.inbox, protocol.KindGrant, "web-1", protocol.Grant{Commission: cid, Server: "web-1", MachineID: testMachine})
	for i := 0; i < 3; i++ {
		hb := decode[protocol.Heartbeat](t, h.expect(protocol.KindHeartbeat, func(e *protocol.Envelope) bool {
			return decode[protocol.Heartbeat](t, e).State == protocol.StateCommissioning
		}))
		if hb.Server != "web-1" || hb.MachineID != testMachine || !hb.Healthy {
			t.Fatalf("heartbeat = %+v", hb)
		}
	}
	h.expect(protocol.KindReady, nil)
	for _, e := range h.seen {
		if e.Kind == protocol.KindReady {
			break
		}
		if e.Kind == protocol.KindHeartbeat && decode[protocol.Heartbeat](t, e).State == protocol.StateServing {
			t.Fatal("a serving heartbeat before ready")
		}
	}
}

// TestWorkDirModes: the machine's work directory and the chain to a
// server's can be traversed by other users (the services of a role drop
// privileges), not listed; the state file is the agent's alone. A work
// directory made 0700 by an older version is opened up too.
func TestWorkDirModes(t *testing.T) {
	h := newHarness(t)
	work := filepath.Join(h.dir, "m")
	if err := os.Mkdir(work, 0o700); err != nil {
		t.Fatal(err)
	}
	h.toServing(newTestRole(), work)
	for _, d := range []string{work, filepath.Join(work, "servers"), filepath.Join(work, "servers", "web-1")} {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o711 {
			t.Errorf("%s: mode %#o, want 0711", d, fi.Mode().Perm())
		}
	}
	if fi, err := os.Stat(filepath.Join(work, StateFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("%s: %v, %v; want 0600", StateFile, fi.Mode().Perm(), err)
	}
}

// TestGrantOnAnotherCopyIsReleasedAtOnce: while this spare waits for the
// grant of its claim, the server is granted to another machine on another
// copy of the commission (the orchestrator restarted and sent it again).
// The grant goes back to its machine at once, not when this wait would
// have ended, and this claim is withdrawn.
func TestGrantOnAnotherCopyIsReleasedAtOnce(t *testing.T) {
	h := newHarness(t)
	h.start(newTestRole(), filepath.Join(h.dir, "m"))
	h.expect(protocol.KindHello, nil)
	cid := h.order(protocol.GlobalQueue(testCluster), protocol.KindCommission, "spares", h.commission(""))
	h.expect(protocol.KindClaim, nil)
	gid := h.order(h.inbox, protocol.KindGrant, "web-1", protocol.Grant{Commission: "01COPY", Server: "web-1", MachineID: "m-other"})
	f := decode[protocol.Failed](t, h.expect(protocol.KindFailed, nil))
	if f.Stage != "claim" || f.Order != cid || !strings.Contains(f.Error, "another copy") {
		t.Fatalf("failed = %+v", f)
	}
	// Well within GrantWait (3s): the grant is there for its machine.
	msgs, err := h.q.Receive(context.Background(), h.inbox, queue.ReceiveOptions{WaitTime: time.Second})
	if err != nil || len(msgs) != 1 {
		t.Fatalf("inbox: %d messages, %v; want the grant back", len(msgs), err)
	}
	if env, err := mustOpenAll(h.keys).Open(msgs[0].Body); err != nil || env.ID != gid {
		t.Fatalf("inbox holds %v, %v; want the grant %s", env, err, gid)
	}
}
