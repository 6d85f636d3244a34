package orchestrator

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/rosterhq/roster/core/config"
	"github.com/rosterhq/roster/core/protocol"
	"github.com/rosterhq/roster/core/provider"
	"github.com/rosterhq/roster/core/queue"
)

func TestCommissionDeliveredTwiceEndsInOneServer(t *testing.T) {
	r := testRole()
	r.Count = config.Count{Min: 1, Max: 1}
	gate := make(chan struct{})
	h := newGatedHarness(t, gate, 1, r)
	ctx := context.Background()
	<-h.o.Ready()
	global := protocol.GlobalQueue("t")
	var body string
	deadline := time.Now().Add(10 * time.Second)
	for body == "" {
		if time.Now().After(deadline) {
			t.Fatal("no commission on the global queue")
		}
		msgs, err := h.q.Receive(ctx, global, queue.ReceiveOptions{WaitTime: time.Second, VisibilityTimeout: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			body = m.Body
			if err := h.q.DeleteMessage(ctx, global, m.Receipt); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The same sealed commission, twice: what an at-least-once queue may do.
	for i := 0; i < 2; i++ {
		if _, err := h.q.Send(ctx, global, body); err != nil {
			t.Fatal(err)
		}
	}
	close(gate)
	h.waitFor("one server and one spare", 20*time.Second, func(st Status) bool {
		return ready(1)(st) && st.Spares.Idle == 1 && st.Spares.Launching == 0
	})
	// Both machines live on: the one that lost the race is still a spare.
	if n := len(h.prov.running()); n != 2 {
		t.Errorf("%d machines running, want 2", n)
	}
	if h.prov.launchCount() != 2 {
		t.Errorf("%d launches, want 2", h.prov.launchCount())
	}
	// Give the losing spare time to give up on its grant; nothing changes.
	time.Sleep(3 * time.Second)
	st := h.o.Status()
	if !ready(1)(st) || st.Servers[0].Name != "web-1" || st.Spares.Idle != 1 {
		t.Errorf("after the race: %+v", st)
	}
}

func TestRestartDeletesOrphansAndAdopts(t *testing.T) {
	r := testRole()
	r.Count = config.Count{Min: 1, Max: 1}
	h := newHarness(t, 0, r)
	h.waitFor("baseline", 20*time.Second, ready(1))
	h.stop()
	ctx := context.Background()
	// An orphaned queue (a crash between creating a queue and recording
	// its server) and an unknown machine (one the state forgot).
	orphanQ := protocol.ServerQueue("t", "web-9", "01orphan")
	if err := h.q.CreateQueue(ctx, orphanQ, queue.QueueOptions{}); err != nil {
		t.Fatal(err)
	}
	h.prov.gate = make(chan struct{}) // the unknown machine never says hello
	if _, err := h.prov.Launch(ctx, provider.LaunchRequest{MachineID: "m-unknown", Tags: map[string]string{provider.TagCluster: "t"}}); err != nil {
		t.Fatal(err)
	}
	h.prov.gate = nil
	h.start()
	st := h.waitFor("orphans cleaned", 20*time.Second, func(st Status) bool {
		return hasEvent(st, "orphan", "deleted orphaned queue "+orphanQ) && hasEvent(st, "orphan", "terminating unknown machine m-unknown")
	})
	qs, err := h.q.ListQueues(ctx, protocol.ServerQueuePrefix("t"))
	if err != nil {
		t.Fatal(err)
	}
	if len(qs) != 1 || qs[0] != st.Servers[0].Queue {
		t.Errorf("queues = %v, want only %s", qs, st.Servers[0].Queue)
	}
	h.waitFor("unknown machine gone", 10*time.Second, func(Status) bool {
		for _, id := range h.prov.running() {
			if id == "m-unknown" {
				return false
			}
		}
		return true
	})
	if !ready(1)(h.o.Status()) {
		t.Errorf("server lost in the cleanup: %+v", h.o.Status())
	}
}

func TestSecondOrchestratorWaitsOnTheLock(t *testing.T) {
	h := newHarness(t, 0, testRole())
	h.waitFor("baseline", 20*time.Second, ready(2))
	logs := &syncWriter{b: &strings.Builder{}}
	o2, err := New(Options{Config: h.cfg, Queue: h.q, Provider: h.prov, Keys: h.keys,
		Logger: hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Info})})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- o2.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "waiting") {
		if time.Now().After(deadline) {
			t.Fatalf("the second orchestrator does not say it waits; logs: %s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case <-o2.Ready():
		t.Fatal("the second orchestrator runs beside the first")
	case <-time.After(300 * time.Millisecond):
	}
	epoch := h.o.Epoch()
	h.stop()
	select {
	case <-o2.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("the second orchestrator did not take over")
	}
	if o2.Epoch() != epoch+1 {
		t.Errorf("epoch = %d, want %d", o2.Epoch(), epoch+1)
	}
	cancel()
	<-done
	if _, err := os.Stat(filepath.Join(h.cfg.DataDir, LockFile)); err != nil {
		t.Error(err)
	}
}
