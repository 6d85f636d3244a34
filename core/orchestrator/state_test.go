package orchestrator

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/rosterhq/roster/core/config"
	"github.com/rosterhq/roster/core/protocol"
	"github.com/rosterhq/roster/core/queue"
	"github.com/rosterhq/roster/core/queue/local"
)

func TestStoreRoundTripAndAtomicWrite(t *testing.T) {
	dir := t.TempDir()
	s := store{path: filepath.Join(dir, StateFile)}
	st, err := s.load()
	if err != nil || st.Epoch != 0 || len(st.Servers) != 0 {
		t.Fatalf("empty load = %+v, %v", st, err)
	}
	st.Epoch = 7
	st.NextIndex["web"] = 3
	st.Servers["web-3"] = &Server{Name: "web-3", Role: "web", State: ServerReady, Queue: "q", Commissions: []string{"01A"}, CreatedAt: time.Now().UTC()}
	st.Machines["m-1"] = &Machine{ID: "m-1", State: MachineServer, Server: "web-3", Launched: true}
	if err := s.save(st); err != nil {
		t.Fatal(err)
	}
	got, err := s.load()
	if err != nil {
		t.Fatal(err)
	}
	if got.Epoch != 7 || got.NextIndex["web"] != 3 || got.Servers["web-3"].Commissions[0] != "01A" || !got.Machines["m-1"].Launched {
		t.Errorf("reloaded = %+v", got)
	}
	// No temporary file is left beside it.
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("files in data_dir: %v", ents)
	}
	// A damaged file is an error that names it, never an empty state.
	if err := os.WriteFile(s.path, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.load(); err == nil {
		t.Error("a damaged state loaded without error")
	}
}

func TestEventsAreBounded(t *testing.T) {
	o := &Orchestrator{st: newState(), log: discardLogger(), notify: make(chan struct{})}
	for i := 0; i < MaxEvents+10; i++ {
		o.event("scale", "web", "", "", "event %d", i)
	}
	if len(o.st.Events) != MaxEvents || o.st.Events[0].Message != "event 10" || o.st.EventSeq != MaxEvents+10 {
		t.Errorf("events: %d, first %q, seq %d", len(o.st.Events), o.st.Events[0].Message, o.st.EventSeq)
	}
	if got := o.events(MaxEvents+5, 100); len(got) != 5 || got[0].Seq != MaxEvents+6 {
		t.Errorf("events after seq: %+v", got)
	}
	if got := o.events(0, 3); len(got) != 3 || got[2].Seq != MaxEvents+10 {
		t.Errorf("last 3 events: %+v", got)
	}
}

// TestSealID: the id SealID returns is the envelope's, as the agent opens
// it: the orchestrator matches claims against it.
func TestSealID(t *testing.T) {
	keys, err := protocol.GenerateKeys()
	if err != nil {
		t.Fatal(err)
	}
	c, err := protocol.NewCodec(keys, protocol.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sealed, id, err := c.SealID(protocol.KindCommission, Sender, "spares", 1, protocol.Commission{Server: "web-1"})
	if err != nil {
		t.Fatal(err)
	}
	env, err := c.Open(sealed)
	if err != nil {
		t.Fatal(err)
	}
	if id == "" || id != env.ID {
		t.Errorf("SealID id = %q, want %q", id, env.ID)
	}
	if _, id, err := c.SealID("nonsense", Sender, "spares", 1, nil); err == nil || id != "" {
		t.Errorf("SealID of an unknown kind = %q, %v; want an error", id, err)
	}
}

func TestServerLess(t *testing.T) {
	if !serverLess("web-2", "web-10") || serverLess("web-10", "web-2") || !serverLess("db-9", "web-1") {
		t.Error("servers sort by role, then number")
	}
}

// TestWithdrawnClaimCommissionsAgain: a spare that claimed a server and
// stopped before provisioning it says so (Failed, stage claim); the server
// is commissioned again at once, and a late copy of the withdrawn claim is
// not granted.
func TestWithdrawnClaimCommissionsAgain(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	q, err := local.Open(filepath.Join(dir, "queue"), local.Options{ReuseDelay: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	keys, err := protocol.GenerateKeys()
	if err != nil {
		t.Fatal(err)
	}
	cfg := &config.Orchestrator{Cluster: "t", DataDir: filepath.Join(dir, "data"), Roles: []*config.Role{testRole()}}
	o, err := New(Options{Config: cfg, Queue: q, Provider: &simProvider{machines: map[string]*simMachine{}}, Keys: keys})
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
	o.st.Servers["web-1"] = &Server{Name: "web-1", Role: "web", State: ServerProvisioning, Queue: "t-srv-web-1-x", Commissions: []string{"c-1"}, Machine: "m-1", GrantedAt: time.Now()}
	o.st.Machines["m-1"] = &Machine{ID: "m-1", State: MachineServer, Server: "web-1"}
	o.st.Machines["m-2"] = &Machine{ID: "m-2", State: MachineSpare}

	deliver := func(kind protocol.Kind, sender string, body any) {
		t.Helper()
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		o.mu.Lock()
		defer o.mu.Unlock()
		o.handle(ctx, report{env: &protocol.Envelope{ID: "r", Kind: kind, Sender: sender, SentAt: time.Now(), Body: b}, at: time.Now()})
	}
	deliver(protocol.KindFailed, "m-1", protocol.Failed{Server: "web-1", MachineID: "m-1", Order: "c-1", Stage: "claim", Error: "the agent stopped before the grant"})
	s := o.st.Servers["web-1"]
	if s.State != ServerCommissioning || s.Machine != "" || len(s.Commissions) != 2 {
		t.Fatalf("after the withdrawal: %+v", s)
	}
	if m := o.st.Machines["m-1"]; m.State != MachineSpare || m.Server != "" {
		t.Errorf("machine after the withdrawal: %+v", m)
	}
	msgs, err := q.Receive(ctx, o.globalQ, queue.ReceiveOptions{MaxMessages: 10, WaitTime: time.Second})
	if err != nil || len(msgs) != 1 {
		t.Fatalf("global queue holds %d messages (%v), want the commission sent again", len(msgs), err)
	}
	agentCodec, err := protocol.NewCodec(keys.Agent(), protocol.Options{Accept: protocol.AcceptOrders})
	if err != nil {
		t.Fatal(err)
	}
	env, err := agentCodec.Open(msgs[0].Body)
	if err != nil || env.Kind != protocol.KindCommission || env.ID != s.Commissions[1] {
		t.Fatalf("sent %+v (%v), want the commission %s", env, err, s.Commissions[1])
	}

	// The claim m-1 withdrew arrives late: not granted.
	deliver(protocol.KindClaim, "m-1", protocol.Claim{Commission: "c-1", Server: "web-1", MachineID: "m-1"})
	if s.State != ServerCommissioning {
		t.Fatalf("a withdrawn claim was granted: %+v", s)
	}
	// Another spare claims the new copy: granted.
	deliver(protocol.KindClaim, "m-2", protocol.Claim{Commission: s.Commissions[1], Server: "web-1", MachineID: "m-2"})
	if s.State != ServerProvisioning || s.Machine != "m-2" {
		t.Fatalf("after m-2's claim: %+v", s)
	}
	if !hasEvent(Status{Events: o.st.Events}, "withdraw", "web-1: machine m-1 gave up its claim") {
		t.Errorf("events: %+v", o.st.Events)
	}
}

// TestDataDirModes: data_dir can be traversed but not listed by others
// (0711; also one an older version made 0700), while the state and the
// lock stay the orchestrator's alone.
func TestDataDirModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{dir, filepath.Join(dir, "new", "deeper")} {
		if err := MkdirDataDir(d); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o711 {
			t.Errorf("%s: mode %v (%v), want 0711", d, fi.Mode().Perm(), err)
		}
	}
	s := store{path: filepath.Join(dir, StateFile)}
	if err := s.save(newState()); err != nil {
		t.Fatal(err)
	}
	lock, err := lockDataDir(context.Background(), dir, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	for _, f := range []string{StateFile, LockFile} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v (%v), want 0600", f, fi.Mode().Perm(), err)
		}
	}
}
