package agent

import (
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"time"

	"github.com/rosterhq/roster/core/protocol"
	"github.com/rosterhq/roster/core/queue"
)

// How many opened envelopes are cached, and for how long: past the codec's
// replay window a redelivery is refused as expired whatever we do.
const (
	maxOpened = 256
	openedTTL = 10 * time.Minute
)

// sendTries is how often an important report is tried before giving up.
const sendTries = 4

// receive long-polls q. A queue that does not exist yet (the orchestrator
// creates every queue) or a failing backend is waited out, not fatal.
func (a *Agent) receive(ctx context.Context, q string, wait, visibility time.Duration) []queue.Message {
	if wait > a.cfg.PollWait {
		wait = a.cfg.PollWait
	}
	if wait < 0 {
		wait = 0
	}
	msgs, err := a.cfg.Queue.Receive(ctx, q, queue.ReceiveOptions{MaxMessages: 1, WaitTime: wait, VisibilityTimeout: visibility})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		a.log.Warn("receive failed", "queue", q, "error", err)
		// Back off for the poll time we meant to spend anyway.
		sleep(ctx, max(wait, time.Second))
		return nil
	}
	return msgs
}

// open verifies a received message. A message that fails verification is
// deleted at once (it can never verify) and counted; so is anything that is
// not an order.
func (a *Agent) open(ctx context.Context, q string, m queue.Message) (*protocol.Envelope, bool) {
	sum := sha256.Sum256([]byte(m.Body))
	if c, ok := a.opened[m.ID]; ok && c.sum == sum {
		return c.env, true
	}
	env, err := a.cfg.Codec.Open(m.Body)
	if err != nil {
		a.rejected.Add(1)
		a.log.Warn("message rejected", "queue", q, "message_id", m.ID, "error", err)
		a.delete(ctx, q, m)
		return nil, false
	}
	if !env.Kind.IsOrder() {
		a.log.Warn("not an order, deleted", "queue", q, "kind", env.Kind, "id", env.ID)
		a.delete(ctx, q, m)
		return nil, false
	}
	a.remember(m.ID, sum, env)
	if env.Epoch > a.st.Epoch {
		a.st.Epoch = env.Epoch
		a.epoch.Store(env.Epoch)
		a.cfg.Codec.SetMinEpoch(env.Epoch)
		// A lost epoch only weakens the fencing until the next order; not
		// worth failing the order for.
		if err := a.save(); err != nil {
			a.log.Warn("could not save the epoch", "error", err)
		}
	}
	return env, true
}

func (a *Agent) remember(id string, sum [sha256.Size]byte, env *protocol.Envelope) {
	now := time.Now()
	if len(a.opened) >= maxOpened {
		for k, c := range a.opened {
			if now.Sub(c.at) > openedTTL {
				delete(a.opened, k)
			}
		}
		for k := range a.opened {
			if len(a.opened) < maxOpened {
				break
			}
			delete(a.opened, k)
		}
	}
	a.opened[id] = openedMsg{sum: sum, env: env, at: now}
}

// delete deletes a handled message. Failing is not fatal: the message comes
// back and is recognised as applied.
func (a *Agent) delete(ctx context.Context, q string, m queue.Message) {
	ctx, cancel := stepContext(ctx, 10*time.Second)
	defer cancel()
	if err := a.cfg.Queue.DeleteMessage(ctx, q, m.Receipt); err != nil {
		a.log.Warn("delete failed", "queue", q, "message_id", m.ID, "error", err)
	}
	delete(a.opened, m.ID)
}

// release makes a message visible again at once, for another machine.
func (a *Agent) release(ctx context.Context, q string, m queue.Message) {
	ctx, cancel := stepContext(ctx, 10*time.Second)
	defer cancel()
	if err := a.cfg.Queue.ChangeVisibility(ctx, q, m.Receipt, 0); err != nil {
		a.log.Warn("release failed", "queue", q, "message_id", m.ID, "error", err)
	}
}

// report seals a report and sends it to the orchestrator's queue, trying a
// few times with backoff: reports matter, and a busy queue is transient.
func (a *Agent) report(ctx context.Context, kind protocol.Kind, body any) error {
	raw, err := a.cfg.Codec.Seal(kind, a.cfg.MachineID, "orchestrator", a.epoch.Load(), body)
	if err != nil {
		return err
	}
	q := protocol.OrchestratorQueue(a.cfg.Cluster)
	ctx, cancel := stepContext(ctx, time.Minute)
	defer cancel()
	backoff := 200 * time.Millisecond
	for try := 1; ; try++ {
		_, err = a.cfg.Queue.Send(ctx, q, raw)
		if err == nil || try == sendTries || errors.Is(err, queue.ErrMessageTooLarge) || errors.Is(err, queue.ErrInvalidArgument) {
			break
		}
		if !sleep(ctx, backoff) {
			break
		}
		backoff *= 3
	}
	if err != nil {
		a.log.Warn("report not sent", "kind", kind, "queue", q, "error", err)
		return err
	}
	a.log.Debug("report sent", "kind", kind)
	return nil
}

// reportOnce sends a report once, giving up when ctx is done: for reports
// the next one supersedes (a heartbeat beside a Provision), where a retry
// would only hold up whoever stops the sender.
func (a *Agent) reportOnce(ctx context.Context, kind protocol.Kind, body any) {
	raw, err := a.cfg.Codec.Seal(kind, a.cfg.MachineID, "orchestrator", a.epoch.Load(), body)
	if err != nil {
		a.log.Warn("report not sealed", "kind", kind, "error", err)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := a.cfg.Queue.Send(ctx, protocol.OrchestratorQueue(a.cfg.Cluster), raw); err != nil && ctx.Err() == nil {
		a.log.Warn("report not sent", "kind", kind, "error", err)
	}
}

// stepContext lets a step that has begun finish after a graceful stop was
// asked for, within d: a halt half-applied is worse than a late exit.
func stepContext(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), d)
}

func (a *Agent) hello(ctx context.Context) {
	host, _ := os.Hostname()
	err := a.report(ctx, protocol.KindHello, protocol.Hello{
		MachineID:    a.cfg.MachineID,
		Provider:     a.cfg.Provider,
		Hostname:     host,
		AgentVersion: a.cfg.Version,
		Plugins:      a.cfg.PluginNames,
		State:        a.st.State,
		Server:       a.st.server(),
	})
	a.helloSent = err == nil
}
