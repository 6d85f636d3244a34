package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rosterhq/roster/core/protocol"
	"github.com/rosterhq/roster/core/queue"
	"github.com/rosterhq/roster/sdk"
)

// notMinePause keeps a spare from receiving, at once and over and over, a
// message it has just released for another machine.
const notMinePause = time.Second

// answerPause is notMinePause while waiting for a grant: short, for the
// grant of this machine may be next on the inbox.
const answerPause = 200 * time.Millisecond

// inboxGoneAfter is how long a claimed server's inbox may be missing before
// the server is taken for gone. Not at once: the orchestrator creates the
// inbox before it sends the commission, but SQS may not show a queue for
// up to a second after its creation.
const inboxGoneAfter = 2 * time.Second

// spare idles on the global queue: hello, a heartbeat every SpareHeartbeat,
// and a long poll for commissions.
func (a *Agent) spare(ctx context.Context) error {
	a.releasePlugin()
	a.hello(ctx)
	global := protocol.GlobalQueue(a.cfg.Cluster)
	// The commission stays invisible to the other spares while this one
	// claims it and deletes it.
	visibility := a.cfg.GrantWait + 30*time.Second
	next := time.Now().Add(a.cfg.SpareHeartbeat)
	for a.st.State == protocol.StateSpare && ctx.Err() == nil {
		if !time.Now().Before(next) {
			if !a.helloSent {
				a.hello(ctx)
			}
			a.spareHeartbeat(ctx)
			next = time.Now().Add(a.cfg.SpareHeartbeat)
		}
		for _, m := range a.receive(ctx, global, time.Until(next), visibility) {
			if err := a.onGlobal(ctx, global, m); err != nil {
				return err
			}
		}
	}
	return nil
}

func (a *Agent) spareHeartbeat(ctx context.Context) {
	_ = a.report(ctx, protocol.KindHeartbeat, protocol.Heartbeat{
		MachineID: a.cfg.MachineID,
		State:     protocol.StateSpare,
		Healthy:   true,
		Load:      systemLoad(),
	})
}

// onGlobal handles one message from the global queue.
func (a *Agent) onGlobal(ctx context.Context, q string, m queue.Message) error {
	env, ok := a.open(ctx, q, m)
	if !ok {
		return nil
	}
	switch env.Kind {
	case protocol.KindCommission:
		return a.onCommission(ctx, q, m, env)
	case protocol.KindRetire:
		if env.Recipient != a.cfg.MachineID && env.Recipient != "spares" {
			a.release(ctx, q, m)
			sleep(ctx, notMinePause)
			return nil
		}
		a.log.Info("retired", "order", env.ID)
		a.st.markApplied(env.ID, time.Now())
		if err := a.transition(StateHalted); err != nil {
			return err
		}
		a.delete(ctx, q, m)
		return nil
	default:
		a.log.Warn("unexpected order on the global queue, deleted", "kind", env.Kind, "id", env.ID)
		a.delete(ctx, q, m)
		return nil
	}
}

// onCommission claims a commission and waits for the grant.
func (a *Agent) onCommission(ctx context.Context, q string, m queue.Message, env *protocol.Envelope) error {
	log := a.log.With("commission", env.ID)
	if ctx.Err() != nil {
		// Stopping: the commission goes back to the other spares at
		// once rather than when its invisibility runs out.
		log.Info("stopping: commission released")
		a.release(ctx, q, m)
		return nil
	}
	if a.st.applied(env.ID) {
		log.Debug("commission already claimed, deleted")
		a.delete(ctx, q, m)
		return nil
	}
	var c protocol.Commission
	if err := env.DecodeBody(&c); err != nil {
		log.Warn("commission body is malformed, deleted", "error", err)
		a.delete(ctx, q, m)
		return nil
	}
	if c.Machine != "" && c.Machine != a.cfg.MachineID {
		log.Debug("commission reserved for another machine, released", "for", c.Machine)
		a.release(ctx, q, m)
		sleep(ctx, notMinePause)
		return nil
	}
	if !protocol.ValidQueueName(c.Inbox) || c.Server == "" || c.Plugin == "" {
		log.Warn("commission lacks a server, a plugin or a valid inbox, deleted", "server", c.Server, "inbox", c.Inbox)
		a.delete(ctx, q, m)
		return nil
	}
	log = log.With("server", c.Server)
	// The plugin starts while the claim goes to the orchestrator and the
	// grant comes back: most of a warm commission's time is this start.
	pre := a.prelaunch(ctx, c.Plugin)
	if err := a.report(ctx, protocol.KindClaim, protocol.Claim{Commission: env.ID, Server: c.Server, MachineID: a.cfg.MachineID}); err != nil {
		// Another spare may take it; we are still a spare.
		pre.discard()
		a.release(ctx, q, m)
		return nil
	}
	// Remembered before the delete: a redelivery must not be claimed twice.
	a.st.markApplied(env.ID, time.Now())
	if err := a.save(); err != nil {
		pre.discard()
		return err
	}
	a.delete(ctx, q, m)
	log.Info("claimed, waiting for the grant")

	grant, outcome := a.awaitGrant(ctx, env.ID, c)
	if outcome != grantMine {
		pre.discard()
	}
	switch outcome {
	case grantOther:
		a.idleAgain(ctx)
		return nil
	case grantNone, grantOtherCopy, grantGone:
		// Stopped, or no grant came in time: the orchestrator may have
		// granted the server to this machine all the same. Give the claim
		// up, so that it commissions the server again now rather than
		// after provision.timeout.
		why := fmt.Sprintf("no grant within %s", a.cfg.GrantWait)
		switch {
		case outcome == grantOtherCopy:
			why = "the server was granted to another machine on another copy of the commission"
		case outcome == grantGone:
			why = "the server's inbox is gone"
		case ctx.Err() != nil:
			why = "the agent stopped before the grant"
		}
		log.Info("claim withdrawn", "reason", why)
		_ = a.report(ctx, protocol.KindFailed, protocol.Failed{
			Server: c.Server, MachineID: a.cfg.MachineID, Order: env.ID, Stage: "claim", Error: why,
		})
		a.idleAgain(ctx)
		return nil
	}
	a.st.Commission = &commissionState{ID: env.ID, GrantID: grant.env.ID, Body: c}
	a.st.markApplied(grant.env.ID, time.Now())
	if err := a.transition(protocol.StateCommissioning); err != nil {
		pre.discard()
		return err
	}
	a.delete(ctx, c.Inbox, grant.msg)
	// A launch that failed is tried again by commissioning, which reports
	// the error as the provision's.
	if r, err := pre.wait(); err == nil {
		a.role = r
	} else {
		log.Debug("plugin start ahead of the grant failed", "error", err)
	}
	return nil
}

// idleAgain reports at once that a spare whose claim was not granted idles
// on the global queue again: the orchestrator counts a spare whose last
// report is a claim as busy (it sends no heartbeat while it waits), and
// would otherwise learn of it only at the next spare heartbeat.
func (a *Agent) idleAgain(ctx context.Context) {
	if ctx.Err() == nil {
		a.spareHeartbeat(ctx)
	}
}

// launching is a plugin started ahead of the grant.
type launching struct {
	done chan struct{}
	role sdk.Role
	err  error
}

// prelaunch starts the named plugin on its own goroutine, which touches
// nothing of the agent but the launcher.
func (a *Agent) prelaunch(ctx context.Context, name string) *launching {
	l := &launching{done: make(chan struct{})}
	go func() {
		defer close(l.done)
		lctx, cancel := stepContext(ctx, launchTimeout)
		defer cancel()
		l.role, l.err = a.cfg.Plugins.Launch(lctx, name)
		if l.err == nil && l.role == nil {
			l.err = fmt.Errorf("plugin %q: launcher returned no plugin", name)
		}
	}()
	return l
}

// wait returns the started plugin.
func (l *launching) wait() (sdk.Role, error) {
	<-l.done
	return l.role, l.err
}

// discard closes the plugin once it has started, where it can be closed:
// the server went to another machine.
func (l *launching) discard() {
	go func() {
		<-l.done
		if c, ok := l.role.(interface{ Close() error }); ok && l.err == nil {
			_ = c.Close()
		}
	}()
}

type received struct {
	msg queue.Message
	env *protocol.Envelope
}

// How a wait for a grant ended.
type grantOutcome int

const (
	// grantNone: no grant came within GrantWait, or the agent stopped.
	grantNone grantOutcome = iota
	// grantOther: the server was granted to another machine.
	grantOther
	// grantOtherCopy: the server was granted to another machine that
	// claimed another copy of the commission.
	grantOtherCopy
	// grantMine: the server is this machine's.
	grantMine
	// grantGone: the server's inbox does not exist (any more): the server
	// was forgotten, and no grant can come.
	grantGone
)

// awaitGrant long-polls the server's inbox for the grant of the commission
// this machine claimed, for GrantWait at most. Other orders that arrive
// first are put back when the wait ends, for the server to handle.
//
// The orchestrator answers a claim with the grant or, when the server is
// another machine's already (a stale or duplicated copy of the commission),
// with a refusal: a grant addressed to this machine (the envelope's
// recipient) that names the holder, which ends the wait at once. GrantWait
// bounds the waits nothing answers: a refusal the holder took first, a
// claim the orchestrator did not see, a server that is gone.
func (a *Agent) awaitGrant(ctx context.Context, commission string, c protocol.Commission) (received, grantOutcome) {
	log := a.log.With("commission", commission, "server", c.Server)
	var early []queue.Message
	defer func() {
		for _, m := range early {
			a.release(ctx, c.Inbox, m)
		}
	}()
	deadline := time.Now().Add(a.cfg.GrantWait)
	var missing time.Time
	for ctx.Err() == nil {
		wait := time.Until(deadline)
		if wait <= 0 {
			log.Info("no grant came, still a spare")
			return received{}, grantNone
		}
		msgs, gone := a.receiveInbox(ctx, c.Inbox, wait, a.cfg.GrantWait+30*time.Second)
		switch {
		case !gone:
			missing = time.Time{}
		case missing.IsZero():
			missing = time.Now()
		case time.Since(missing) >= inboxGoneAfter:
			// The orchestrator deletes a server's inbox when it forgets
			// the server: nothing can answer this claim.
			log.Info("the server's inbox is gone, still a spare", "inbox", c.Inbox)
			return received{}, grantGone
		}
		for _, m := range msgs {
			env, ok := a.open(ctx, c.Inbox, m)
			if !ok {
				continue
			}
			if env.Kind != protocol.KindGrant {
				early = append(early, m)
				continue
			}
			var g protocol.Grant
			if err := env.DecodeBody(&g); err != nil {
				log.Warn("grant body is malformed, deleted", "error", err)
				a.delete(ctx, c.Inbox, m)
				continue
			}
			switch {
			case g.Commission != commission && g.MachineID == a.cfg.MachineID && env.Recipient != a.cfg.MachineID:
				// The orchestrator's answer to another machine's claim of
				// another copy, naming this machine as the holder: put it
				// back for that machine, and give it time to take it.
				log.Debug("answer to another machine's claim, released", "for", env.Recipient)
				a.release(ctx, c.Inbox, m)
				sleep(ctx, answerPause)
				continue
			case g.Commission != commission && g.MachineID == a.cfg.MachineID:
				log.Warn("grant of an earlier commission, deleted", "grant_commission", g.Commission)
				a.delete(ctx, c.Inbox, m)
				continue
			case g.MachineID != a.cfg.MachineID && env.Recipient == a.cfg.MachineID:
				// The orchestrator's answer to a claim of this machine that
				// it will not grant: consumed here, whoever holds the
				// server.
				a.delete(ctx, c.Inbox, m)
				if g.Commission != commission {
					log.Debug("answer to an earlier claim, deleted", "answer_commission", g.Commission)
					continue
				}
				log.Info("claim not granted: the server is another machine's, still a spare", "granted_to", g.MachineID)
				return received{}, grantOther
			case g.MachineID != a.cfg.MachineID:
				// The server is another machine's: put the grant back for
				// it at once (holding it until this wait ends would leave
				// that machine provisioning nothing, silent, until it is
				// taken for lost).
				log.Info("granted to another machine, still a spare", "granted_to", g.MachineID)
				a.release(ctx, c.Inbox, m)
				if g.Commission != commission {
					// Granted on another copy of the commission (sent
					// again after an orchestrator restart, say): whether
					// this claim is still pending cannot be told, so it is
					// withdrawn.
					return received{}, grantOtherCopy
				}
				return received{}, grantOther
			}
			log.Info("granted")
			return received{msg: m, env: env}, grantMine
		}
	}
	return received{}, grantNone
}

// receiveInbox long-polls a claimed server's inbox like receive, and says
// whether the inbox does not exist: waited out briefly, for awaitGrant to
// tell a server that is gone from a queue that is not visible yet.
func (a *Agent) receiveInbox(ctx context.Context, q string, wait, visibility time.Duration) ([]queue.Message, bool) {
	wait = min(max(wait, 0), a.cfg.PollWait)
	msgs, err := a.cfg.Queue.Receive(ctx, q, queue.ReceiveOptions{MaxMessages: 1, WaitTime: wait, VisibilityTimeout: visibility})
	switch {
	case err == nil:
		return msgs, false
	case ctx.Err() != nil:
		return nil, false
	case errors.Is(err, queue.ErrQueueNotFound):
		a.log.Debug("the server's inbox does not exist", "queue", q)
		sleep(ctx, min(wait, answerPause))
		return nil, true
	}
	a.log.Warn("receive failed", "queue", q, "error", err)
	// Back off for the poll time we meant to spend anyway.
	sleep(ctx, max(wait, time.Second))
	return nil, false
}
