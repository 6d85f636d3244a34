package agent

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/rosterhq/roster/core/protocol"
	"github.com/rosterhq/roster/core/queue"
	"github.com/rosterhq/roster/sdk"
)

// startWaiting starts an agent that would wait an hour for a grant and
// heartbeat as a spare once an hour: whatever it does within a test's
// waitLimit after a claim, it does because it was told, not because a
// timer ran out.
func (h *harness) startWaiting(role sdk.Role, workDir string) *running {
	h.t.Helper()
	return h.startWaitingOn(h.q, role, workDir)
}

func (h *harness) startWaitingOn(q queue.Queue, role sdk.Role, workDir string) *running {
	h.t.Helper()
	codec, err := protocol.NewCodec(h.keys.Agent(), protocol.Options{Accept: protocol.AcceptOrders, FollowEpoch: true})
	if err != nil {
		h.t.Fatal(err)
	}
	a, err := New(Config{
		Cluster: testCluster, MachineID: testMachine, WorkDir: workDir, Queue: q, Codec: codec,
		Plugins:        LauncherFunc(func(context.Context, string) (sdk.Role, error) { return role, nil }),
		Logger:         hclog.New(&hclog.LoggerOptions{Level: hclog.Debug, Output: testWriter{h.t}}),
		SpareHeartbeat: time.Hour, PollWait: time.Second, GrantWait: time.Hour,
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

// TestRefusedClaimIsBackToSpareAtOnce: the spare claimed a copy of a
// commission whose server is another machine's already (a stale copy left
// on the global queue). The orchestrator answers with a grant addressed to
// this machine that names the holder: the spare is a spare again at once —
// long before its grant wait (an hour) — without withdrawing, and the
// answer, which was for it, is consumed.
func TestRefusedClaimIsBackToSpareAtOnce(t *testing.T) {
	h := newHarness(t)
	role := newTestRole()
	h.startWaiting(role, filepath.Join(h.dir, "m"))
	h.expect(protocol.KindHello, nil)

	stale := h.order(protocol.GlobalQueue(testCluster), protocol.KindCommission, "spares", h.commission(""))
	h.expect(protocol.KindClaim, func(e *protocol.Envelope) bool { return decode[protocol.Claim](t, e).Commission == stale })
	h.order(h.inbox, protocol.KindGrant, testMachine, protocol.Grant{Commission: stale, Server: "web-1", MachineID: "m-holder"})

	// A spare again, and says so at once (its heartbeat is an hour away).
	hb := decode[protocol.Heartbeat](t, h.expect(protocol.KindHeartbeat, nil))
	if hb.State != protocol.StateSpare || hb.Server != "" {
		t.Fatalf("after the refusal: heartbeat %+v", hb)
	}
	// It takes the next commission.
	c2 := h.commission("")
	c2.Server = "web-2"
	next := h.order(protocol.GlobalQueue(testCluster), protocol.KindCommission, "spares", c2)
	if claim := decode[protocol.Claim](t, h.expect(protocol.KindClaim, nil)); claim.Commission != next {
		t.Fatalf("claim = %+v, want commission %s", claim, next)
	}
	for _, e := range h.seen {
		if e.Kind == protocol.KindFailed {
			t.Errorf("a refused claim was withdrawn: %+v", decode[protocol.Failed](t, e))
		}
	}
	if role.count("provision") != 0 {
		t.Error("provisioned without a grant")
	}
	// The answer was this machine's: nothing is left on web-1's inbox.
	msgs, err := h.q.Receive(context.Background(), h.inbox, queue.ReceiveOptions{WaitTime: 500 * time.Millisecond})
	if err != nil || len(msgs) != 0 {
		t.Fatalf("web-1's inbox: %d messages, %v; want the answer consumed", len(msgs), err)
	}
}

// TestClaimOfAGoneServerIsGivenUp: the claimed server's inbox does not exist
// (the orchestrator forgot the server and deleted its queue; nothing can
// answer the claim). The spare gives the claim up and is a spare again
// without waiting out its grant wait.
func TestClaimOfAGoneServerIsGivenUp(t *testing.T) {
	h := newHarness(t)
	h.startWaiting(newTestRole(), filepath.Join(h.dir, "m"))
	h.expect(protocol.KindHello, nil)

	c := h.commission("")
	c.Server, c.Inbox = "web-9", protocol.ServerQueue(testCluster, "web-9", "gone")
	cid := h.order(protocol.GlobalQueue(testCluster), protocol.KindCommission, "spares", c)
	h.expect(protocol.KindClaim, nil)
	f := decode[protocol.Failed](t, h.expect(protocol.KindFailed, nil))
	if f.Stage != "claim" || f.Order != cid || f.Server != "web-9" || !strings.Contains(f.Error, "inbox is gone") {
		t.Fatalf("failed = %+v", f)
	}
	if hb := decode[protocol.Heartbeat](t, h.expect(protocol.KindHeartbeat, nil)); hb.State != protocol.StateSpare {
		t.Fatalf("after giving up: heartbeat %+v", hb)
	}
}

// watchedQueue tells what the agent does with the messages it received
// from one queue: "delete" or "release".
type watchedQueue struct {
	queue.Queue
	name string
	ops  chan string
}

func (q watchedQueue) note(op string) {
	select {
	case q.ops <- op:
	default: // only the first moves matter
	}
}

func (q watchedQueue) DeleteMessage(ctx context.Context, name, receipt string) error {
	if name == q.name {
		q.note("delete")
	}
	return q.Queue.DeleteMessage(ctx, name, receipt)
}

func (q watchedQueue) ChangeVisibility(ctx context.Context, name, receipt string, d time.Duration) error {
	if name == q.name && d == 0 {
		q.note("release")
	}
	return q.Queue.ChangeVisibility(ctx, name, receipt, d)
}

// TestAnswerToAnotherClaimantIsLeftForIt: while this machine waits for the
// grant of its claim, the orchestrator's answer to another machine's claim
// of another copy — which names this machine as the server's holder —
// arrives on the inbox. It is put back for that machine, not deleted as a
// stale grant of this one.
func TestAnswerToAnotherClaimantIsLeftForIt(t *testing.T) {
	h := newHarness(t)
	wq := watchedQueue{Queue: h.q, name: h.inbox, ops: make(chan string, 100)}
	h.startWaitingOn(wq, newTestRole(), filepath.Join(h.dir, "m"))
	h.expect(protocol.KindHello, nil)
	h.order(protocol.GlobalQueue(testCluster), protocol.KindCommission, "spares", h.commission(""))
	h.expect(protocol.KindClaim, nil)
	answer := h.order(h.inbox, protocol.KindGrant, "m-other", protocol.Grant{Commission: "01OTHERCOPY", Server: "web-1", MachineID: testMachine})

	// The only message on web-1's inbox is the answer: the agent's first
	// move on the inbox is what it did with it.
	h.expectLeftOnInbox(wq, answer)
}

// expectLeftOnInbox checks that the agent's next move on the inbox was to
// release the order answer, and that another reader of the inbox (the
// machine it was addressed to) then finds it there.
func (h *harness) expectLeftOnInbox(wq watchedQueue, answer string) {
	t := h.t
	t.Helper()
	select {
	case op := <-wq.ops:
		if op != "release" {
			t.Fatalf("the answer to m-other's claim was %sd by this machine, want released", op)
		}
	case <-time.After(waitLimit):
		t.Fatalf("the agent did not touch the answer within %s", waitLimit)
	}
	codec := mustOpenAll(h.keys)
	deadline := time.Now().Add(waitLimit)
	for {
		if time.Now().After(deadline) {
			t.Fatalf("the answer to m-other's claim is gone from the inbox (reports: %s)", h.kinds())
		}
		msgs, err := h.q.Receive(context.Background(), h.inbox, queue.ReceiveOptions{WaitTime: time.Second, VisibilityTimeout: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) == 1 {
			env, err := codec.Open(msgs[0].Body)
			if err != nil || env.ID != answer {
				t.Fatalf("inbox holds %+v, %v; want the answer %s", env, err, answer)
			}
			return
		}
	}
}

// TestServerLeavesAnswerToAnotherClaimant: the server's inbox is also where
// the orchestrator answers another machine's claim of a stale copy of this
// server's commission (a grant addressed to that machine, naming this one
// as the holder). The serving agent puts it back for that machine rather
// than deleting it as a grant delivered again, so the other machine learns
// at once that it is still a spare instead of waiting out its grant wait.
func TestServerLeavesAnswerToAnotherClaimant(t *testing.T) {
	h := newHarness(t)
	wq := watchedQueue{Queue: h.q, name: h.inbox, ops: make(chan string, 100)}
	h.startWaitingOn(wq, newTestRole(), filepath.Join(h.dir, "m"))
	h.expect(protocol.KindHello, nil)
	cid := h.order(protocol.GlobalQueue(testCluster), protocol.KindCommission, "spares", h.commission(""))
	h.expect(protocol.KindClaim, nil)
	h.order(h.inbox, protocol.KindGrant, testMachine, protocol.Grant{Commission: cid, Server: "web-1", MachineID: testMachine})
	h.expect(protocol.KindReady, nil)
	// Its own grant, consumed.
	if op := <-wq.ops; op != "delete" {
		t.Fatalf("this machine's grant was %sd, want deleted", op)
	}

	answer := h.order(h.inbox, protocol.KindGrant, "m-other", protocol.Grant{Commission: "01OTHERCOPY", Server: "web-1", MachineID: testMachine})
	h.expectLeftOnInbox(wq, answer)
}
