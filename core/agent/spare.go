package agent

import (
	"context"
	"time"

	"github.com/rosterhq/roster/core/protocol"
	"github.com/rosterhq/roster/core/queue"
)

// notMinePause keeps a spare from receiving, at once and over and over, a
// message it has just released for another machine.
const notMinePause = time.Second

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
	if err := a.report(ctx, protocol.KindClaim, protocol.Claim{Commission: env.ID, Server: c.Server, MachineID: a.cfg.MachineID}); err != nil {
		// Another spare may take it; we are still a spare.
		a.release(ctx, q, m)
		return nil
	}
	// Remembered before the delete: a redelivery must not be claimed twice.
	a.st.markApplied(env.ID, time.Now())
	if err := a.save(); err != nil {
		return err
	}
	a.delete(ctx, q, m)
	log.Info("claimed, waiting for the grant")

	grant, ok := a.awaitGrant(ctx, env.ID, c)
	if !ok {
		return nil
	}
	a.st.Commission = &commissionState{ID: env.ID, GrantID: grant.env.ID, Body: c}
	a.st.markApplied(grant.env.ID, time.Now())
	if err := a.transition(protocol.StateCommissioning); err != nil {
		return err
	}
	a.delete(ctx, c.Inbox, grant.msg)
	return nil
}

type received struct {
	msg queue.Message
	env *protocol.Envelope
}

// awaitGrant long-polls the server's inbox for the grant of the commission
// this machine claimed, for GrantWait at most. Other orders that arrive
// first are put back when the wait ends, for the server to handle.
func (a *Agent) awaitGrant(ctx context.Context, commission string, c protocol.Commission) (received, bool) {
	log := a.log.With("commission", commission, "server", c.Server)
	var early []queue.Message
	defer func() {
		for _, m := range early {
			a.release(ctx, c.Inbox, m)
		}
	}()
	deadline := time.Now().Add(a.cfg.GrantWait)
	for ctx.Err() == nil {
		wait := time.Until(deadline)
		if wait <= 0 {
			log.Info("no grant came, still a spare")
			return received{}, false
		}
		for _, m := range a.receive(ctx, c.Inbox, wait, a.cfg.GrantWait+30*time.Second) {
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
			case g.Commission != commission && g.MachineID == a.cfg.MachineID:
				log.Warn("grant of an earlier commission, deleted", "grant_commission", g.Commission)
				a.delete(ctx, c.Inbox, m)
				continue
			case g.Commission != commission:
				// Another machine's business: leave it for that machine.
				early = append(early, m)
				continue
			case g.MachineID != a.cfg.MachineID:
				log.Info("granted to another machine, still a spare", "granted_to", g.MachineID)
				a.release(ctx, c.Inbox, m)
				return received{}, false
			}
			log.Info("granted")
			return received{msg: m, env: env}, true
		}
	}
	return received{}, false
}
