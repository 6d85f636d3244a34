package orchestrator

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rosterhq/roster/core/protocol"
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

func TestSealedID(t *testing.T) {
	keys, err := protocol.GenerateKeys()
	if err != nil {
		t.Fatal(err)
	}
	c, err := protocol.NewCodec(keys, protocol.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := c.Seal(protocol.KindCommission, Sender, "spares", 1, protocol.Commission{Server: "web-1"})
	if err != nil {
		t.Fatal(err)
	}
	env, err := c.Open(sealed)
	if err != nil {
		t.Fatal(err)
	}
	if id := SealedID(sealed); id == "" || id != env.ID {
		t.Errorf("SealedID = %q, want %q", id, env.ID)
	}
	if SealedID("not a message") != "" {
		t.Error("SealedID of garbage is not empty")
	}
}

func TestServerLess(t *testing.T) {
	if !serverLess("web-2", "web-10") || serverLess("web-10", "web-2") || !serverLess("db-9", "web-1") {
		t.Error("servers sort by role, then number")
	}
}
