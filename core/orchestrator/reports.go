package orchestrator

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/rosterhq/roster/core/protocol"
	"github.com/rosterhq/roster/core/queue"
)

// report is an opened message from the orchestrator's queue, not yet
// deleted: it is deleted once its effect on the state is durable.
type report struct {
	env     *protocol.Envelope
	receipt string
	at      time.Time
}

// receive long-polls the orchestrator's queue and hands opened reports to
// the loop. Messages that fail verification are deleted at once: they can
// never verify.
func (o *Orchestrator) receive(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		msgs, err := o.q.Receive(ctx, o.ordersQ, queue.ReceiveOptions{MaxMessages: queue.MaxBatch, WaitTime: 5 * time.Second})
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, queue.ErrClosed) {
				return
			}
			o.log.Warn("cannot receive reports", "queue", o.ordersQ, "error", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		var bad []queue.DeleteEntry
		for i, m := range msgs {
			env, err := o.codec.Open(m.Body)
			if err != nil {
				// Counted and logged by the codec (OnReject).
				bad = append(bad, queue.DeleteEntry{ID: strconv.Itoa(i), Receipt: m.Receipt})
				continue
			}
			now := time.Now()
			o.met.latency(env.Kind, now.Sub(env.SentAt))
			select {
			case o.reports <- report{env: env, receipt: m.Receipt, at: now}:
			case <-ctx.Done():
				return
			}
		}
		if len(bad) > 0 {
			if _, err := o.q.DeleteMessageBatch(ctx, o.ordersQ, bad); err != nil && ctx.Err() == nil {
				o.log.Warn("cannot delete rejected reports", "error", err)
			}
		}
	}
}

// handleReports applies a batch of reports, writes the state once, and then
// deletes the messages.
func (o *Orchestrator) handleReports(ctx context.Context, batch []report) {
	lifecycle := false
	o.mu.Lock()
	for _, r := range batch {
		o.met.report(r.env.Kind)
		if o.handle(ctx, r) {
			lifecycle = true
		}
	}
	o.flush()
	o.mu.Unlock()

	var entries []queue.DeleteEntry
	for i, r := range batch {
		entries = append(entries, queue.DeleteEntry{ID: strconv.Itoa(i), Receipt: r.receipt})
		if len(entries) == queue.MaxBatch || i == len(batch)-1 {
			if _, err := o.q.DeleteMessageBatch(ctx, o.ordersQ, entries); err != nil && ctx.Err() == nil {
				o.log.Warn("cannot delete reports", "error", err)
			}
			entries = entries[:0]
		}
	}
	if lifecycle {
		o.mu.Lock()
		o.reconcile(ctx)
		o.flush()
		o.mu.Unlock()
	}
}

// handle applies one report; it returns true for reports that change the
// lifecycle (everything but heartbeats and progress). The lock is held.
func (o *Orchestrator) handle(ctx context.Context, r report) bool {
	env := r.env
	log := o.log.With("kind", env.Kind, "sender", env.Sender, "id", env.ID)
	var err error
	switch env.Kind {
	case protocol.KindHeartbeat:
		var b protocol.Heartbeat
		if err = env.DecodeBody(&b); err == nil {
			o.onHeartbeat(ctx, r, b)
		}
	case protocol.KindProgress:
		var b protocol.ProgressReport
		if err = env.DecodeBody(&b); err == nil {
			o.onProgress(r, b)
		}
	case protocol.KindHello:
		var b protocol.Hello
		if err = env.DecodeBody(&b); err == nil {
			o.onHello(ctx, r, b)
		}
		return true
	case protocol.KindClaim:
		var b protocol.Claim
		if err = env.DecodeBody(&b); err == nil {
			o.onClaim(ctx, r, b)
		}
		return true
	case protocol.KindReady:
		var b protocol.Ready
		if err = env.DecodeBody(&b); err == nil {
			o.onReady(ctx, r, b)
		}
		return true
	case protocol.KindHalting:
		var b protocol.Halting
		if err = env.DecodeBody(&b); err == nil {
			o.onHalting(ctx, r, b)
		}
		return true
	case protocol.KindFailed:
		var b protocol.Failed
		if err = env.DecodeBody(&b); err == nil {
			o.onFailed(ctx, r, b)
		}
		return true
	default:
		log.Warn("ignoring a report of an unexpected kind")
	}
	if err != nil {
		log.Warn("ignoring a report with a malformed body", "error", err)
		o.met.rejected(protocol.ReasonMalformed)
	}
	return false
}

// seen notes that a machine is alive; it returns the machine's record, or
// nil when the state does not know it.
func (o *Orchestrator) seen(id string, at time.Time, agentState string) *Machine {
	lm := o.rt.machine(id)
	lm.lastSeen = at
	if agentState != "" {
		lm.agentState = agentState
	}
	return o.st.Machines[id]
}

// adopt records a machine that said hello without having been launched by
// this orchestrator (a lost record, a machine an operator started).
func (o *Orchestrator) adopt(id, state, why string) *Machine {
	m := &Machine{ID: id, State: state, LaunchedAt: time.Now().UTC()}
	if state == MachineSpare {
		m.SpareSince = m.LaunchedAt
	}
	o.st.Machines[id] = m
	delete(o.rt.unknown, id)
	o.event("adopt", "", "", id, "adopted machine %s as %s: %s", id, state, why)
	return m
}

func (o *Orchestrator) onHello(ctx context.Context, r report, b protocol.Hello) {
	id := b.MachineID
	if id == "" {
		id = r.env.Sender
	}
	m := o.seen(id, r.at, b.State)
	if lm := o.rt.machines[id]; lm != nil {
		lm.hostname, lm.agentVersion = b.Hostname, b.AgentVersion
	}
	if m != nil && m.State == MachineSpare && b.State == protocol.StateSpare {
		// A spare that restarted is about to poll the global queue and
		// claim what waits there: it is not settled (see settledSpares).
		m.SpareSince = time.Now().UTC()
		o.changed()
	}
	o.machineSays(ctx, r, id, m, b.State, b.Server)
}

// machineSays reconciles what a machine says it is (hello, heartbeat) with
// what the state says it is.
func (o *Orchestrator) machineSays(ctx context.Context, r report, id string, m *Machine, agentState, server string) {
	if m == nil {
		switch {
		case agentState == protocol.StateSpare:
			// Reconcile retires it if the spare pool is full.
			o.adopt(id, MachineSpare, "it reports as a spare")
		default:
			// A server this orchestrator does not know: nobody will ever
			// send it orders. Terminate it; its queue, if any, is an
			// orphan that the queue sync deletes.
			m = o.adopt(id, MachineServer, "it reports serving "+server+", which is not known")
			o.terminate(ctx, m, "serving unknown server "+server)
		}
		return
	}
	switch m.State {
	case MachineLaunching:
		if agentState == protocol.StateSpare {
			m.State = MachineSpare
			m.SpareSince = time.Now().UTC()
			o.changed()
		}
	case MachineSpare:
		if agentState != protocol.StateSpare && server != "" {
			// A late report from before it became a spare, or a server we
			// no longer know: the queue sync and timeouts handle it.
			o.log.Debug("spare reports a server", "machine", id, "server", server, "state", agentState)
		}
	case MachineServer:
		s := o.st.Servers[m.Server]
		if s == nil {
			break
		}
		// A machine granted a server and now back to spare, in a report
		// sent after the grant: the agent lost the server (a restart that
		// could not recover, a cleanup).
		if agentState == protocol.StateSpare && r.env.SentAt.After(s.GrantedAt.Add(time.Second)) && s.State != ServerHalting {
			o.removeServer(ctx, s, "lost", "machine "+id+" reports being a spare again", true)
			m.State = MachineSpare
			m.Server = ""
			m.SpareSince = time.Now().UTC()
			o.changed()
		}
	}
}

func (o *Orchestrator) onHeartbeat(ctx context.Context, r report, b protocol.Heartbeat) {
	id := b.MachineID
	if id == "" {
		id = r.env.Sender
	}
	m := o.seen(id, r.at, b.State)
	if b.Server != "" && m != nil && m.State == MachineServer && m.Server == b.Server {
		s := o.st.Servers[b.Server]
		if s == nil {
			return
		}
		ls := o.rt.server(s.Name)
		ls.lastSeen = r.at
		ls.heartbeats = true
		ls.agentState = b.State
		if b.State == protocol.StateCommissioning {
			// Alive and provisioning: no health or load to speak of yet
			// (a late one may arrive after ready; it proves life only).
			return
		}
		ls.load = b.Load
		ls.metrics = b.Metrics
		ls.reason = b.Reason
		if s.State != ServerReady {
			return
		}
		if b.Healthy {
			ls.healthy = true
			ls.unhealthyStreak = 0
		} else {
			ls.healthy = false
			ls.unhealthyStreak++
		}
		role := o.byRol[s.Role]
		if role != nil && role.Scale != nil {
			if v, ok := metricOf(role.Scale.Metric, b); ok {
				o.rt.role(s.Role).add(r.at, v, role.Scale.Window)
			}
		}
		return
	}
	if m == nil && b.State == protocol.StateSpare {
		o.machineSays(ctx, r, id, m, b.State, b.Server)
		return
	}
	if m != nil {
		o.machineSays(ctx, r, id, m, b.State, b.Server)
	}
}

// metricOf picks the scaling metric out of a heartbeat: "load" is the
// normalised system load unless the plugin reports its own "load".
func metricOf(name string, b protocol.Heartbeat) (float64, bool) {
	if name == "" {
		name = "load"
	}
	if v, ok := b.Metrics[name]; ok {
		return v, true
	}
	if name == "load" {
		return b.Load, true
	}
	return 0, false
}

func (o *Orchestrator) onProgress(r report, b protocol.ProgressReport) {
	s := o.st.Servers[b.Server]
	if s == nil || (s.State != ServerProvisioning && s.State != ServerCommissioning) {
		return
	}
	if s.Machine != "" && s.Machine != r.env.Sender {
		return
	}
	o.seen(r.env.Sender, r.at, "")
	ls := o.rt.server(s.Name)
	ls.progress = &Progress{Step: b.Step, Message: b.Message, Fraction: b.Fraction, At: r.at.UTC()}
	ls.lastSeen = r.at
	// Progress is volatile, but waiters (roster up's view) like to know.
	close(o.notify)
	o.notify = make(chan struct{})
}

func (o *Orchestrator) onClaim(ctx context.Context, r report, b protocol.Claim) {
	id := b.MachineID
	if id == "" {
		id = r.env.Sender
	}
	m := o.seen(id, r.at, protocol.StateCommissioning)
	s := o.st.Servers[b.Server]
	switch {
	case o.rt.machine(id).hasWithdrawn(b.Commission):
		// The machine gave this claim up (it stopped) before we saw it.
		o.met.claimIgnored("withdrawn")
		o.log.Info("ignoring a claim the machine withdrew", "server", b.Server, "machine", id)
		return
	case s == nil:
		o.met.claimIgnored("unknown_server")
		o.log.Info("ignoring a claim for a server that is not known", "server", b.Server, "machine", id)
		return
	case s.State != ServerCommissioning:
		if s.Machine == id && s.State == ServerProvisioning {
			// The same machine claims again (it missed the grant, or the
			// claim was delivered twice): grant again, idempotently.
			o.sendGrant(ctx, s, b.Commission)
			return
		}
		o.met.claimIgnored("already_granted")
		o.log.Info("ignoring a second claim: the server is granted to another machine", "server", s.Name, "granted", s.Machine, "machine", id)
		// A stale copy of the commission, or one delivered twice: the
		// spare would otherwise wait out its grant wait for nothing.
		o.refuseClaim(ctx, s, id, b.Commission)
		return
	case m != nil && (m.State == MachineTerminating || m.State == MachineServer):
		o.met.claimIgnored("machine_busy")
		o.log.Info("ignoring a claim from a machine that is not a spare", "server", s.Name, "machine", id, "state", m.State)
		return
	}
	if m == nil {
		m = o.adopt(id, MachineSpare, "it claimed commission for "+s.Name)
	}
	m.State = MachineServer
	m.Server = s.Name
	s.State = ServerProvisioning
	s.Machine = id
	s.GrantedAt = time.Now().UTC()
	ls := o.rt.server(s.Name)
	ls.lastSeen = r.at
	ls.progress = &Progress{Step: "granted", Message: "granted to " + id, At: r.at.UTC()}
	o.event("grant", s.Role, s.Name, id, "%s: granted to machine %s", s.Name, id)
	// The grant is durable before it is sent: after a crash the server is
	// still this machine's.
	o.flush()
	o.sendGrant(ctx, s, b.Commission)
}

func (o *Orchestrator) onReady(ctx context.Context, r report, b protocol.Ready) {
	id := b.MachineID
	if id == "" {
		id = r.env.Sender
	}
	m := o.seen(id, r.at, protocol.StateServing)
	s := o.st.Servers[b.Server]
	if s == nil || s.Machine != id {
		// A server we abandoned (provision timeout) or never granted to
		// this machine: nobody will order it; retire the machine.
		if m != nil && m.State != MachineTerminating && (m.Server == b.Server || m.State == MachineServer) {
			o.terminate(ctx, m, "ready for "+b.Server+", which is not its server")
		}
		o.log.Info("ignoring ready for a server that is not this machine's", "server", b.Server, "machine", id)
		return
	}
	if s.State == ServerReady {
		return
	}
	if s.State != ServerProvisioning {
		return
	}
	s.State = ServerReady
	s.ReadyAt = time.Now().UTC()
	s.Endpoints = b.Endpoints
	ls := o.rt.server(s.Name)
	ls.lastSeen = r.at
	ls.healthy = true
	ls.unhealthyStreak = 0
	ls.progress = &Progress{Step: "ready", Message: "ready", Fraction: 1, At: r.at.UTC()}
	o.met.readyIn(s.Role, s.ReadyAt.Sub(s.CreatedAt))
	o.rt.role(s.Role).failures = 0
	o.event("ready", s.Role, s.Name, id, "%s: ready on %s in %s%s", s.Name, id, fmtDur(s.ReadyAt.Sub(s.CreatedAt)), endpointsSuffix(b.Endpoints))
	o.register(ctx, s)
}

func endpointsSuffix(eps map[string]string) string {
	if len(eps) == 0 {
		return ""
	}
	out := " ("
	first := true
	for _, k := range sortedKeys(eps) {
		if !first {
			out += ", "
		}
		first = false
		out += k + " " + eps[k]
	}
	return out + ")"
}

func (o *Orchestrator) onHalting(ctx context.Context, r report, b protocol.Halting) {
	id := b.MachineID
	if id == "" {
		id = r.env.Sender
	}
	m := o.seen(id, r.at, "")
	s := o.st.Servers[b.Server]
	if s != nil && s.Machine == id {
		o.event("halted", s.Role, s.Name, id, "%s: halted (%s)%s", s.Name, orDefault(s.Reason, "halt"), logsSuffix(b.Logs))
		o.forgetServer(ctx, s)
	}
	if m == nil {
		return
	}
	if b.Reuse && !o.draining {
		m.State = MachineSpare
		m.Server = ""
		m.SpareSince = time.Now().UTC()
		o.rt.machine(id).agentState = protocol.StateSpare
		o.event("reuse", "", b.Server, id, "machine %s is a spare again after %s", id, b.Server)
		return
	}
	if m.State != MachineTerminating {
		o.terminate(ctx, m, "halted "+b.Server)
	}
}

func logsSuffix(logs []string) string {
	if len(logs) == 0 {
		return ""
	}
	return "; logs at " + logs[0]
}

func (o *Orchestrator) onFailed(ctx context.Context, r report, b protocol.Failed) {
	id := b.MachineID
	if id == "" {
		id = r.env.Sender
	}
	m := o.seen(id, r.at, "")
	s := o.st.Servers[b.Server]
	if b.Stage == "claim" {
		o.onWithdraw(ctx, id, m, s, b)
		return
	}
	if s == nil || s.Machine != id {
		o.log.Info("ignoring a failure report for a server that is not this machine's", "server", b.Server, "machine", id, "stage", b.Stage)
		return
	}
	switch b.Stage {
	case "provision":
		// The agent tears down and is a spare again; the server is
		// abandoned and reconcile commissions another.
		o.met.failed(s.Role, b.Stage)
		o.met.replaced(s.Role, "failed")
		o.event("failed", s.Role, s.Name, id, "%s: provision failed on %s: %s", s.Name, id, b.Error)
		o.replaceLater(s)
		o.backoff(s.Role, time.Now())
		o.forgetServer(ctx, s)
		if m != nil && m.State == MachineServer {
			m.State = MachineSpare
			m.Server = ""
			m.SpareSince = time.Now().UTC()
		}
	case "halt":
		o.met.failed(s.Role, b.Stage)
		o.event("failed", s.Role, s.Name, id, "%s: halt failed on %s: %s", s.Name, id, b.Error)
		o.forgetServer(ctx, s)
		if m != nil {
			o.terminate(ctx, m, "halt failed")
		}
	default:
		o.event("failed", s.Role, s.Name, id, "%s: %s failed on %s: %s", s.Name, b.Stage, id, b.Error)
	}
}

// onWithdraw handles a spare giving up a commission it claimed: it was
// stopped (SIGTERM) or no grant reached it in time. A server granted to it
// is commissioned again at once rather than left provisioning on nobody
// until provision.timeout; a claim of it that arrives later is ignored.
func (o *Orchestrator) onWithdraw(ctx context.Context, id string, m *Machine, s *Server, b protocol.Failed) {
	lm := o.rt.machine(id)
	if b.Order != "" && !lm.hasWithdrawn(b.Order) {
		lm.withdrawn = append(lm.withdrawn, b.Order)
		if len(lm.withdrawn) > 8 {
			lm.withdrawn = lm.withdrawn[len(lm.withdrawn)-8:]
		}
	}
	if s == nil {
		return
	}
	switch {
	case s.State == ServerProvisioning && s.Machine == id:
		o.event("withdraw", s.Role, s.Name, id, "%s: machine %s gave up its claim (%s): commissioning again", s.Name, id, b.Error)
		s.State = ServerCommissioning
		s.Machine = ""
		s.GrantedAt = time.Time{}
		ls := o.rt.server(s.Name)
		ls.lastSeen = time.Now()
		ls.progress = &Progress{Step: "commissioned", Message: "waiting for a spare", At: time.Now().UTC()}
		if m != nil && m.State == MachineServer && m.Server == s.Name {
			// Counted as idle: a machine that stopped for good goes as a
			// silent spare does, and one restarted says hello as a spare.
			m.State = MachineSpare
			m.Server = ""
			m.SpareSince = time.Now().UTC()
		}
		o.changed()
		// Its copy of the commission was deleted when it claimed it.
		o.sendCommission(ctx, s)
	case s.State == ServerCommissioning && containsString(s.Commissions, b.Order):
		// Not granted yet (the claim is still on its way, or was lost):
		// the commission left the global queue with the claim.
		o.log.Info("claim withdrawn before it was granted; sending the commission again", "server", s.Name, "machine", id)
		o.sendCommission(ctx, s)
	}
}

func (l *liveMachine) hasWithdrawn(commission string) bool {
	return commission != "" && containsString(l.withdrawn, commission)
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
