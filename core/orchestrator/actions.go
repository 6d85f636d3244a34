package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/rosterhq/roster/core/config"
	"github.com/rosterhq/roster/core/protocol"
	"github.com/rosterhq/roster/core/provider"
	"github.com/rosterhq/roster/core/queue"
)

// Every method here runs in the loop with the lock held.

// commission creates a server of role: its queue first, then the durable
// intent, then the commission order on the global queue.
func (o *Orchestrator) commission(ctx context.Context, role *config.Role, replaces, reason string) (*Server, error) {
	n := o.st.NextIndex[role.Name] + 1
	name := fmt.Sprintf("%s-%d", role.Name, n)
	qname := protocol.ServerQueue(o.cfg.Cluster, name, ulid.Make().String())
	if err := o.q.CreateQueue(ctx, qname, queue.QueueOptions{Tags: map[string]string{provider.TagCluster: o.cfg.Cluster, "roster:server": name}}); err != nil {
		return nil, fmt.Errorf("create queue %s: %w", qname, err)
	}
	o.st.NextIndex[role.Name] = n
	s := &Server{Name: name, Role: role.Name, State: ServerCommissioning, Queue: qname, Replaces: replaces, CreatedAt: time.Now().UTC()}
	o.st.Servers[name] = s
	ls := o.rt.server(name)
	ls.lastSeen = time.Now()
	ls.progress = &Progress{Step: "commissioned", Message: "waiting for a spare", At: time.Now().UTC()}
	o.met.commissioned(role.Name)
	o.event("commission", role.Name, name, "", "%s: commissioned (%s)", name, reason)
	// Sealed now, sent by sendOutbox after the state (with the commission
	// id) is written: one write for every commission of a pass.
	if sealed, ok := o.sealCommission(s); ok {
		ls.outbox = sealed
	}
	return s, nil
}

// sealCommission seals a commission for s and records its id.
func (o *Orchestrator) sealCommission(s *Server) (string, bool) {
	ls := o.rt.server(s.Name)
	role := o.byRol[s.Role]
	if role == nil {
		return "", false
	}
	body, err := o.commissionBody(role, s)
	if err != nil {
		ls.unsent = true
		ls.resendAt = time.Now().Add(time.Second)
		o.log.Error("cannot build commission", "server", s.Name, "error", err)
		return "", false
	}
	sealed, id, err := o.codec.SealID(protocol.KindCommission, Sender, "spares", o.st.Epoch, body)
	if err != nil {
		ls.unsent = true
		ls.resendAt = time.Now().Add(time.Second)
		o.log.Error("cannot seal commission", "server", s.Name, "error", err)
		return "", false
	}
	s.Commissions = append(s.Commissions, id)
	if len(s.Commissions) > 8 {
		s.Commissions = s.Commissions[len(s.Commissions)-8:]
	}
	// What the server was commissioned with: reconcile sends a Configure
	// once it is ready if the pools its config refers to changed since.
	s.ConfigSum = configSum(body.Config, referencedPeers(role, body.Peers))
	s.Spec = o.spec(role)
	s.LostAfter = role.Health.LostAfter
	o.changed()
	return sealed, true
}

// sendOutbox writes the state, then sends the commissions sealed in this
// pass to the global queue, ten to a batch.
func (o *Orchestrator) sendOutbox(ctx context.Context) {
	var names []string
	for name, ls := range o.rt.servers {
		if ls.outbox != "" {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return
	}
	o.flush()
	sort.Slice(names, func(i, j int) bool { return serverLess(names[i], names[j]) })
	for len(names) > 0 {
		n := min(len(names), queue.MaxBatch)
		batch := names[:n]
		names = names[n:]
		entries := make([]queue.SendEntry, 0, n)
		for i, name := range batch {
			entries = append(entries, queue.SendEntry{ID: fmt.Sprint(i), Body: o.rt.servers[name].outbox})
		}
		res, err := o.q.SendBatch(ctx, o.globalQ, entries)
		for i, name := range batch {
			ls := o.rt.servers[name]
			ls.outbox = ""
			if err != nil || i >= len(res) || res[i].Err != nil {
				ls.unsent = true
				ls.resendAt = time.Now().Add(time.Second)
				o.log.Warn("cannot send commission; will retry", "server", name, "queue", o.globalQ, "error", errors.Join(err, batchErr(res, i)))
				continue
			}
			ls.unsent = false
			ls.sentAt = time.Now()
		}
	}
}

func batchErr(res []queue.BatchResult, i int) error {
	if i < len(res) {
		return res[i].Err
	}
	return nil
}

// sendCommission seals a commission for s, records its id durably, and puts
// it on the global queue at once. A failed send is retried by reconcile.
func (o *Orchestrator) sendCommission(ctx context.Context, s *Server) {
	sealed, ok := o.sealCommission(s)
	if !ok {
		return
	}
	ls := o.rt.server(s.Name)
	ls.outbox = ""
	o.flush()
	if _, err := o.q.Send(ctx, o.globalQ, sealed); err != nil {
		ls.unsent = true
		ls.resendAt = time.Now().Add(time.Second)
		o.log.Warn("cannot send commission; will retry", "server", s.Name, "queue", o.globalQ, "error", err)
		return
	}
	ls.unsent = false
	ls.sentAt = time.Now()
}

func (o *Orchestrator) commissionBody(role *config.Role, s *Server) (protocol.Commission, error) {
	peers := o.peersFor(role)
	wire, err := o.resolve(role, peers)
	if err != nil {
		return protocol.Commission{}, err
	}
	return protocol.Commission{
		Role:             role.Name,
		Server:           s.Name,
		Inbox:            s.Queue,
		Plugin:           role.Plugin,
		Config:           wire,
		Peers:            peers,
		HealthInterval:   protocol.Duration(role.Health.Interval),
		HealthTimeout:    protocol.Duration(role.Health.Timeout),
		ProvisionTimeout: protocol.Duration(role.Provision.Timeout),
		DrainTimeout:     protocol.Duration(role.Drain.Timeout),
		Reuse:            role.Reuse,
		LogDestination:   o.cfg.Logs.Destination,
	}, nil
}

// peersFor lists the ready servers of the role itself (for a replica to
// find its primary) and of every role its config refers to, each sorted by
// name (web-2 before web-10): the first is the one a reference resolves to.
// At most MaxPeers of each role, so that a commission or a Configure stays
// well under the queue's message size in a pool of thousands.
func (o *Orchestrator) peersFor(role *config.Role) map[string][]protocol.Peer {
	out := map[string][]protocol.Peer{role.Name: {}}
	for _, ref := range role.References {
		out[ref] = []protocol.Peer{}
	}
	for _, s := range sortedServers(o.st.Servers) {
		if ps, ok := out[s.Role]; ok && s.State == ServerReady && len(ps) < MaxPeers {
			out[s.Role] = append(ps, protocol.Peer{Name: s.Name, Endpoints: s.Endpoints})
		}
	}
	return out
}

// MaxPeers is how many servers of one role a commission or a Configure
// lists as peers (the first by name).
const MaxPeers = 64

// sendGrant tells the server's inbox which machine it is.
func (o *Orchestrator) sendGrant(ctx context.Context, s *Server, commission string) {
	if commission == "" && len(s.Commissions) > 0 {
		commission = s.Commissions[len(s.Commissions)-1]
	}
	o.sendOrder(ctx, s.Queue, protocol.KindGrant, s.Machine, protocol.Grant{Commission: commission, Server: s.Name, MachineID: s.Machine})
}

// refuseClaim answers a claim for a server granted to another machine, at
// once: a Grant on the server's inbox addressed to the claimant (the
// envelope's recipient), for the copy of the commission it claimed, naming
// the machine that holds the server. The claimant — an agent of any
// version — reads it as the server granted to another machine and goes
// back to polling for commissions, rather than waiting out its grant wait
// (10 s) for a grant that will never come: the cost, before, of every
// machine that claimed a stale or duplicated copy. The holder, should it
// receive it first, puts it back for the claimant.
//
// A claim is refused only with a holder to name, and never the claimant: a
// grant naming the claimant would grant it the server, and one naming no
// machine would tell another spare waiting on the same inbox, wrongly,
// that the server is taken. Those claims (and those for a server that is
// gone, whose inbox is deleted) are left to the agent's grant wait.
func (o *Orchestrator) refuseClaim(ctx context.Context, s *Server, claimant, commission string) {
	if s.Machine == "" || s.Machine == claimant {
		return
	}
	o.sendOrder(ctx, s.Queue, protocol.KindGrant, claimant, protocol.Grant{Commission: commission, Server: s.Name, MachineID: s.Machine})
}

// sendOrder seals and sends an order; it returns the order's id, or "" when
// it could not be sent (reconcile or the agent's retry repairs that).
func (o *Orchestrator) sendOrder(ctx context.Context, q string, kind protocol.Kind, recipient string, body any) string {
	if recipient == "" {
		recipient = "spares"
	}
	sealed, id, err := o.codec.SealID(kind, Sender, recipient, o.st.Epoch, body)
	if err != nil {
		o.log.Error("cannot seal order", "kind", kind, "queue", q, "error", err)
		return ""
	}
	if _, err := o.q.Send(ctx, q, sealed); err != nil {
		o.log.Warn("cannot send order", "kind", kind, "queue", q, "error", err)
		return ""
	}
	return id
}

// register adds a ready server to its role's balancer.
func (o *Orchestrator) register(ctx context.Context, s *Server) {
	role := o.byRol[s.Role]
	if role == nil || role.Register == nil || s.Registered {
		return
	}
	ep := s.Endpoints[role.Register.Endpoint]
	if ep == "" {
		o.event("register", s.Role, s.Name, s.Machine, "%s: not registered with %s: it serves no %q endpoint", s.Name, role.Register.Balancer, role.Register.Endpoint)
		s.Registered = true // nothing to register; do not retry every pass
		return
	}
	b := o.bals[role.Register.Balancer]
	if err := b.Register(ctx, s.Role, s.Name, ep); err != nil {
		o.log.Warn("cannot register server; will retry", "server", s.Name, "balancer", b.Name(), "error", err)
		return
	}
	s.Registered = true
	o.changed()
	o.event("register", s.Role, s.Name, s.Machine, "%s: registered with %s at %s", s.Name, b.Name(), ep)
}

// deregister removes a server from its balancer at once.
func (o *Orchestrator) deregister(ctx context.Context, s *Server) {
	role := o.byRol[s.Role]
	if role == nil || role.Register == nil {
		return
	}
	b := o.bals[role.Register.Balancer]
	if err := b.Deregister(ctx, s.Role, s.Name); err != nil {
		o.log.Warn("cannot deregister server", "server", s.Name, "balancer", b.Name(), "error", err)
	}
	s.Registered = false
}

// removeServer replaces a failed server: it is forgotten at once (so that
// reconcile, which runs next, commissions its replacement first), then
// deregistered, its machine terminated and its queue deleted.
func (o *Orchestrator) removeServer(ctx context.Context, s *Server, kind, why string, keepMachine bool) {
	o.met.replaced(s.Role, kind)
	o.event(kind, s.Role, s.Name, s.Machine, "%s: %s", s.Name, why)
	o.replaceLater(s)
	m := o.st.Machines[s.Machine]
	o.forgetServer(ctx, s)
	if m != nil && !keepMachine {
		o.terminate(ctx, m, kind+" "+s.Name)
	}
}

// forgetServer deregisters a server, deletes its queue and forgets it.
func (o *Orchestrator) forgetServer(ctx context.Context, s *Server) {
	o.deregister(ctx, s)
	delete(o.st.Servers, s.Name)
	delete(o.rt.servers, s.Name)
	o.changed()
	// Forgotten durably before the queue goes: after a crash here the
	// queue is an orphan that the queue sync deletes, never a server
	// without an inbox.
	o.flush()
	if err := o.q.DeleteQueue(ctx, s.Queue); err != nil {
		o.log.Warn("cannot delete server queue; the queue sync retries", "queue", s.Queue, "error", err)
	}
}

// launch asks the provider for a machine, recording it first so that a
// crash cannot leave a machine nobody knows (the launch token is the
// machine id: launching again after a crash yields the same machine).
func (o *Orchestrator) launch(ctx context.Context, why string) {
	id := "m-" + strings.ToLower(ulid.Make().String())
	m := &Machine{ID: id, State: MachineLaunching, Launched: true, LaunchedAt: time.Now().UTC()}
	o.st.Machines[id] = m
	o.rt.machine(id).launching = true
	o.event("launch", "", "", id, "launching machine %s (%s)", id, why)
	o.flush()
	go o.doLaunch(ctx, id)
}

func (o *Orchestrator) doLaunch(ctx context.Context, id string) {
	lctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	pm, err := o.prov.Launch(lctx, provider.LaunchRequest{
		Token:     id,
		MachineID: id,
		Tags:      map[string]string{provider.TagCluster: o.cfg.Cluster, provider.TagMachine: id},
	})
	cancel()
	o.post(ctx, func() {
		o.rt.machine(id).launching = false
		m := o.st.Machines[id]
		if m == nil {
			return
		}
		if err != nil {
			o.met.launchFailed()
			o.event("launch_failed", "", "", id, "cannot launch machine %s: %v", id, err)
			delete(o.st.Machines, id)
			delete(o.rt.machines, id)
			o.rt.launchBackoff = time.Now().Add(5 * time.Second)
			return
		}
		o.met.launched()
		if pm.ProviderID != "" && m.ProviderID != pm.ProviderID {
			m.ProviderID = pm.ProviderID
			o.changed()
		}
	})
}

// terminate retires a machine through the provider.
func (o *Orchestrator) terminate(ctx context.Context, m *Machine, why string) {
	if m.State == MachineTerminating {
		return
	}
	m.State = MachineTerminating
	o.event("terminate", "", m.Server, m.ID, "terminating machine %s (%s)", m.ID, why)
	o.flush()
	go o.doTerminate(ctx, m.ID)
}

func (o *Orchestrator) doTerminate(ctx context.Context, id string) {
	tctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	err := o.prov.Terminate(tctx, id)
	cancel()
	o.post(ctx, func() {
		if err != nil && ctx.Err() == nil {
			o.log.Warn("cannot terminate machine; will retry", "machine", id, "error", err)
			if m := o.st.Machines[id]; m != nil {
				// Back to its previous standing: the next sync retries.
				o.rt.machine(id).terminateFailed = true
			}
			return
		}
		delete(o.st.Machines, id)
		delete(o.rt.machines, id)
		o.changed()
	})
}

// drain starts decommissioning a ready server: drain at the balancer
// (bounded by the role's drain timeout), deregister, then halt.
func (o *Orchestrator) drain(ctx context.Context, s *Server, reason string) {
	s.State = ServerDraining
	s.Reason = reason
	s.DrainingAt = time.Now().UTC()
	o.changed()
	o.startDrain(ctx, s)
}

func (o *Orchestrator) startDrain(ctx context.Context, s *Server) {
	role := o.byRol[s.Role]
	ls := o.rt.server(s.Name)
	if ls.draining {
		return
	}
	if role == nil || role.Register == nil || !s.Registered {
		o.halt(ctx, s)
		return
	}
	ls.draining = true
	b := o.bals[role.Register.Balancer]
	name, roleName, timeout := s.Name, s.Role, role.Drain.Timeout
	go func() {
		dctx, cancel := context.WithTimeout(ctx, timeout)
		err := b.Drain(dctx, roleName, name)
		cancel()
		derr := b.Deregister(ctx, roleName, name)
		o.post(ctx, func() {
			s := o.st.Servers[name]
			if s == nil || s.State != ServerDraining {
				return
			}
			o.rt.server(name).draining = false
			if derr != nil {
				o.log.Warn("cannot deregister server; halting anyway", "server", name, "error", derr)
			}
			s.Registered = false
			if err != nil {
				o.event("drain", roleName, name, s.Machine, "%s: balancer drain ended: %v", name, err)
			}
			o.halt(ctx, s)
		})
	}()
}

// halt sends the halt order to a drained server.
func (o *Orchestrator) halt(ctx context.Context, s *Server) {
	role := o.byRol[s.Role]
	drain := config.DefaultDrainTimeout
	reuse := false
	if role != nil {
		drain, reuse = role.Drain.Timeout, role.Reuse
	}
	if o.draining {
		reuse = false
	}
	if s.State == ServerCommissioning {
		// Nobody holds it yet: nothing to halt.
		o.forgetServer(ctx, s)
		return
	}
	s.State = ServerHalting
	s.HaltedAt = time.Now().UTC()
	o.event("halt", s.Role, s.Name, s.Machine, "%s: halt (%s)", s.Name, orDefault(s.Reason, "decommission"))
	id := o.sendOrder(ctx, s.Queue, protocol.KindHalt, s.Machine, protocol.Halt{Server: s.Name, Reason: s.Reason, DrainTimeout: protocol.Duration(drain), Reuse: reuse})
	if id != "" {
		s.Halt = id
	}
	o.changed()
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
