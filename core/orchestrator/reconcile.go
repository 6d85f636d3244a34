package orchestrator

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/rosterhq/roster/core/balancer"
	"github.com/rosterhq/roster/core/config"
	"github.com/rosterhq/roster/core/protocol"
	"github.com/rosterhq/roster/core/provider"
	"github.com/rosterhq/roster/core/queue"
)

// commissionRetry is how long a commission may stay unclaimed while spares
// idle before another copy is sent.
const commissionRetry = 5 * time.Second

// spareSettle is how long a spare must have been idle before a commission
// left unclaimed beside it is taken for stuck: a spare that has just said
// hello or become a spare again is most likely claiming it at that moment.
const spareSettle = 2 * time.Second

// resendDelay is how long after a restart a commission still unclaimed is
// sent again under the new epoch.
const resendDelay = 2 * time.Second

// recover picks up after a restart: every server and machine gets a grace
// period (their liveness is measured from now), commissions and halts that
// were in flight are sent again under the new epoch (agents refuse the old
// one once they have seen the new), and slow work that was running is
// started again. The lock is held.
func (o *Orchestrator) recover(ctx context.Context) {
	now := time.Now()
	if len(o.st.Servers)+len(o.st.Machines) > 0 {
		o.event("recover", "", "", "", "epoch %d: recovering %d servers and %d machines", o.st.Epoch, len(o.st.Servers), len(o.st.Machines))
	}
	for _, s := range sortedServers(o.st.Servers) {
		ls := o.rt.server(s.Name)
		ls.lastSeen = now
		switch s.State {
		case ServerCommissioning:
			// The queue was created before the intent was written; make
			// sure, then send the commission again. Any claim for either
			// commission is a claim for the server; the first one wins.
			if err := o.q.CreateQueue(ctx, s.Queue, queue.QueueOptions{Tags: map[string]string{provider.TagCluster: o.cfg.Cluster, "roster:server": s.Name}}); err != nil {
				o.log.Warn("cannot create server queue", "queue", s.Queue, "error", err)
			}
			// Not at once: a claim that waits on the orchestrator's queue
			// is granted first, and then no second copy is needed.
			ls.unsent = true
			ls.resendAt = now.Add(resendDelay)
		case ServerDraining:
			o.startDrain(ctx, s)
		case ServerHalting:
			o.halt(ctx, s)
		}
	}
	for _, m := range o.st.Machines {
		lm := o.rt.machine(m.ID)
		lm.lastSeen = now
		switch m.State {
		case MachineLaunching:
			// Launching again with the same token yields the same machine.
			lm.launching = true
			go o.doLaunch(ctx, m.ID)
		case MachineTerminating:
			go o.doTerminate(ctx, m.ID)
		}
	}
	o.flush()
}

// reconcile compares what should be with what is, and acts. It runs in the
// loop with the lock held.
func (o *Orchestrator) reconcile(ctx context.Context) {
	if ctx.Err() != nil {
		return
	}
	now := time.Now()
	o.checkServers(ctx, now)
	o.checkMachines(ctx, now)
	for _, role := range o.roles {
		o.reconcileRole(ctx, role, now)
	}
	o.orphanServers(ctx)
	o.configureServers(ctx)
	o.sendOutbox(ctx)
	o.reconcileSpares(ctx, now)
	if !o.rt.syncing && now.Sub(o.lastSync) >= o.opts.SyncInterval {
		o.lastSync = now
		o.rt.syncing = true
		regs := map[string]balancer.Balancer{}
		for _, r := range o.roles {
			if r.Register != nil {
				regs[r.Name] = o.bals[r.Register.Balancer]
			}
		}
		go o.sync(ctx, regs)
	}
	o.met.observe(o)
}

// checkServers finds servers to replace or abandon, and moves halts along.
func (o *Orchestrator) checkServers(ctx context.Context, now time.Time) {
	for _, s := range sortedServers(o.st.Servers) {
		role := o.byRol[s.Role]
		ls := o.rt.server(s.Name)
		if role == nil {
			continue // orphanServers drains it
		}
		switch s.State {
		case ServerCommissioning, ServerProvisioning:
			// The agent enforces provision.timeout from the grant and
			// reports the failure itself; this deadline, a little later,
			// is for an agent that died or hangs.
			deadline := s.CreatedAt.Add(role.Provision.Timeout)
			if s.State == ServerProvisioning {
				deadline = s.GrantedAt.Add(role.Provision.Timeout + o.opts.ProvisionGrace)
			}
			if now.After(deadline) && now.Sub(o.started) > role.Provision.Timeout {
				o.removeServer(ctx, s, "abandon", fmt.Sprintf("not ready within provision.timeout %s: abandoned", fmtDur(role.Provision.Timeout)), false)
				o.backoff(s.Role, now)
				continue
			}
			if s.State == ServerCommissioning && ls.unsent && !now.Before(ls.resendAt) {
				o.sendCommission(ctx, s)
			}
			// A commission can get stuck: taken by a spare that was being
			// retired, or that died holding it invisible. While spares
			// have idled beside it for a while, send another copy now and
			// then; the first claim of either wins. Not merely because a
			// spare is idle: one that has just said hello is claiming the
			// first copy, and the second would wait on the global queue
			// for the next spare, which claims a server already granted.
			if s.State == ServerCommissioning && !ls.unsent && !ls.sentAt.IsZero() && now.Sub(ls.sentAt) > commissionRetry && o.settledSpares(now) > 0 {
				o.log.Info("commission unclaimed while spares idle; sending it again", "server", s.Name, "since", now.Sub(ls.sentAt).Round(time.Millisecond))
				o.sendCommission(ctx, s)
			}
			// A provisioning agent heartbeats every health.interval (its
			// Provision runs beside): silence for lost_after, counted from
			// the grant or this run's start at the earliest, is a dead
			// agent, not a slow Provision.
			if s.State == ServerProvisioning && now.Sub(ls.lastSeen) > lostAfter(role, s) {
				o.removeServer(ctx, s, "lost", fmt.Sprintf("no report for %s while provisioning (lost_after %s): replacing", fmtDur(now.Sub(ls.lastSeen)), fmtDur(lostAfter(role, s))), false)
			}
		case ServerReady:
			switch {
			case now.Sub(ls.lastSeen) > lostAfter(role, s):
				o.removeServer(ctx, s, "lost", fmt.Sprintf("no heartbeat for %s (lost_after %s): replacing", fmtDur(now.Sub(ls.lastSeen)), fmtDur(lostAfter(role, s))), false)
			case role.Health.UnhealthyAfter > 0 && ls.unhealthyStreak >= role.Health.UnhealthyAfter:
				why := ls.reason
				if why == "" {
					why = "unhealthy"
				}
				o.removeServer(ctx, s, "unhealthy", fmt.Sprintf("%d failed health checks in a row (%s): replacing", ls.unhealthyStreak, why), false)
			case !s.Registered:
				o.register(ctx, s)
			}
		case ServerDraining:
			o.startDrain(ctx, s)
		case ServerHalting:
			if now.Sub(s.HaltedAt) > role.Drain.Timeout+o.opts.HaltGrace && now.Sub(o.started) > role.Drain.Timeout+o.opts.HaltGrace {
				o.event("halt_timeout", s.Role, s.Name, s.Machine, "%s: no halting report within %s: terminating its machine", s.Name, fmtDur(role.Drain.Timeout+o.opts.HaltGrace))
				m := o.st.Machines[s.Machine]
				o.forgetServer(ctx, s)
				if m != nil {
					o.terminate(ctx, m, "halt timed out")
				}
			}
		}
	}
}

// lostAfter is how long s may stay silent: the longer of its role's
// lost_after and the one it was commissioned with (Server.LostAfter).
func lostAfter(role *config.Role, s *Server) time.Duration {
	return max(role.Health.LostAfter, s.LostAfter)
}

// checkMachines retires machines that never booted, spares that went
// silent, and machines whose server is gone.
func (o *Orchestrator) checkMachines(ctx context.Context, now time.Time) {
	ids := sortedKeys(o.st.Machines)
	for _, id := range ids {
		m := o.st.Machines[id]
		lm := o.rt.machine(id)
		switch m.State {
		case MachineLaunching:
			if o.draining && !lm.launching {
				o.terminate(ctx, m, "shutting down")
			} else if !lm.launching && now.Sub(m.LaunchedAt) > o.opts.LaunchTimeout && now.Sub(o.started) > o.opts.LaunchTimeout {
				o.terminate(ctx, m, fmt.Sprintf("no hello within %s", fmtDur(o.opts.LaunchTimeout)))
			}
		case MachineSpare:
			if now.Sub(lm.lastSeen) > o.opts.SpareLostAfter {
				o.met.replaced("spare", "lost")
				o.terminate(ctx, m, fmt.Sprintf("spare silent for %s", fmtDur(now.Sub(lm.lastSeen))))
			}
		case MachineServer:
			if s := o.st.Servers[m.Server]; s == nil || s.Machine != m.ID {
				o.terminate(ctx, m, "its server "+m.Server+" is gone")
			}
		}
	}
}

// reconcileRole replaces failed servers and applies the scaling policy.
func (o *Orchestrator) reconcileRole(ctx context.Context, role *config.Role, now time.Time) {
	lr := o.rt.role(role.Name)
	o.refreshHandOver(ctx, role)
	current, ready := o.poolSize(role.Name)
	if now.Before(lr.holdUntil) && !o.draining {
		// Provisions keep failing: commission nothing until the backoff
		// ends, so that a broken role does not churn machines.
		lr.decision, lr.decided = Decision{Desired: current, Waiting: fmt.Sprintf("%d provisions failed in a row: next commission in %s", lr.failures, fmtDur(lr.holdUntil.Sub(now)))}, true
		return
	}
	// A role whose config refers to other roles waits for a ready server
	// of each: its config cannot be resolved before.
	if missing := o.missingReferences(role); missing != "" && !o.draining {
		d := Decide(PolicyInput{Role: role.Name, Count: role.Count, Current: current, Ready: ready, Now: now})
		if d.Desired > current || len(lr.pendingReplace) > 0 {
			lr.decision, lr.decided = Decision{Desired: current, Waiting: "waiting for a ready server of role " + missing}, true
			return
		}
	}
	// Replacements first: a failed server's successor is commissioned
	// before anything else happens to the pool.
	for _, old := range lr.pendingReplace {
		if o.draining || current >= role.Count.Max {
			break
		}
		if _, err := o.commission(ctx, role, old, "replacing "+old); err != nil {
			o.log.Warn("cannot commission a replacement; will retry", "role", role.Name, "error", err)
			return
		}
		current++
	}
	lr.pendingReplace = nil

	in := PolicyInput{Role: role.Name, Count: role.Count, Scale: role.Scale, Current: current, Ready: ready, Now: now, LastChange: o.st.LastChange[role.Name]}
	if role.Scale != nil {
		in.Avg, in.HaveMetric = lr.average(now, role.Scale.Window)
		lr.avg, lr.haveAvg = in.Avg, in.HaveMetric
	}
	d := Decide(in)
	if o.draining {
		d = Decision{Desired: 0, Reason: "shutting down"}
	}
	lr.decision, lr.decided = d, true
	if d.Desired == current {
		if !o.draining {
			o.refreshNext(ctx, role)
		}
		return
	}
	if !o.draining {
		o.st.LastChange[role.Name] = now
		o.met.scaled(role.Name, d.Desired > current)
		o.event("scale", role.Name, "", "", "%s: %d → %d, %s", role.Name, current, d.Desired, d.Reason)
	}
	for i := current; i < d.Desired; i++ {
		if _, err := o.commission(ctx, role, "", fmt.Sprintf("%d → %d", current, d.Desired)); err != nil {
			o.log.Warn("cannot commission; will retry", "role", role.Name, "error", err)
			return
		}
	}
	if d.Desired < current {
		for _, s := range o.scaleInOrder(role) {
			if current <= d.Desired {
				break
			}
			if s.State == ServerCommissioning {
				o.event("decommission", s.Role, s.Name, "", "%s: commission withdrawn (%s)", s.Name, d.Reason)
				o.forgetServer(ctx, s)
			} else {
				o.drain(ctx, s, d.Reason)
			}
			current--
		}
	}
}

// poolSize counts the servers of a role that count toward capacity, and
// those of them that are ready.
func (o *Orchestrator) poolSize(role string) (current, ready int) {
	succ := o.successors(role)
	for _, s := range o.st.Servers {
		if s.Role != role {
			continue
		}
		switch s.State {
		case ServerReady:
			if beingRefreshed(s, succ) {
				continue // counted as its successor
			}
			ready++
			current++
		case ServerCommissioning, ServerProvisioning:
			current++
		}
	}
	return current, ready
}

// scaleInOrder lists the servers to take out first: commissions nobody has
// claimed, then ready servers from the least loaded (on the scaling metric,
// else the system load). Provisioning servers are never taken out: they are
// about to carry load.
func (o *Orchestrator) scaleInOrder(role *config.Role) []*Server {
	var pending, ready []*Server
	succ := o.successors(role.Name)
	for _, s := range sortedServers(o.st.Servers) {
		if s.Role != role.Name {
			continue
		}
		switch s.State {
		case ServerCommissioning:
			pending = append(pending, s)
		case ServerReady:
			if !beingRefreshed(s, succ) {
				ready = append(ready, s)
			}
		}
	}
	metric := "load"
	if role.Scale != nil && role.Scale.Metric != "" {
		metric = role.Scale.Metric
	}
	load := func(s *Server) float64 {
		ls := o.rt.server(s.Name)
		if v, ok := ls.metrics[metric]; ok {
			return v
		}
		return ls.load
	}
	sort.SliceStable(ready, func(i, j int) bool { return load(ready[i]) < load(ready[j]) })
	// Newest pending first: the oldest is closest to being claimed.
	for i, j := 0, len(pending)-1; i < j; i, j = i+1, j-1 {
		pending[i], pending[j] = pending[j], pending[i]
	}
	return append(pending, ready...)
}

// orphanServers drains the servers of roles no longer in the config.
func (o *Orchestrator) orphanServers(ctx context.Context) {
	for _, s := range sortedServers(o.st.Servers) {
		if o.byRol[s.Role] != nil {
			continue
		}
		switch s.State {
		case ServerCommissioning:
			o.event("decommission", s.Role, s.Name, "", "%s: role %s is no longer configured", s.Name, s.Role)
			o.forgetServer(ctx, s)
		case ServerProvisioning, ServerReady:
			o.event("decommission", s.Role, s.Name, s.Machine, "%s: role %s is no longer configured", s.Name, s.Role)
			o.drain(ctx, s, "role no longer configured")
		}
	}
}

// reconcileSpares keeps `spares` idle machines beyond the commissions that
// wait for one: it launches when short and terminates extras.
func (o *Orchestrator) reconcileSpares(ctx context.Context, now time.Time) {
	idle, spares := 0, []*Machine{}
	for _, m := range o.st.Machines {
		switch m.State {
		case MachineLaunching:
			idle++
		case MachineSpare:
			idle++
			spares = append(spares, m)
		}
	}
	pending := 0
	for _, s := range o.st.Servers {
		if s.State == ServerCommissioning {
			pending++
		}
	}
	target := o.cfg.Spares
	if o.draining {
		target = 0
	}
	need := target + pending - idle
	if need > 0 && now.After(o.rt.launchBackoff) {
		for i := 0; i < need; i++ {
			why := fmt.Sprintf("spares %d of %d", idle-pending+i, target)
			if pending > 0 {
				why = fmt.Sprintf("%d commissions wait for a machine; spares %d of %d", pending, max(0, idle-pending+i), target)
			}
			o.launch(ctx, why)
		}
	}
	if need < 0 {
		// Retire the spares idle longest first: a machine just back from a
		// server (reuse) is the warmest, and it stays.
		sort.Slice(spares, func(i, j int) bool { return spares[i].SpareSince.Before(spares[j].SpareSince) })
		for i := 0; i < -need && i < len(spares); i++ {
			o.met.retired()
			o.terminate(ctx, spares[i], fmt.Sprintf("spare pool above %d", target))
		}
	}
}

// sync compares the state with the queue backend's, the provider's and the
// balancers' own lists (regs: the balancer of each role that registers).
// It runs on its own goroutine and applies what it found in the loop.
func (o *Orchestrator) sync(ctx context.Context, regs map[string]balancer.Balancer) {
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	queues, qerr := o.q.ListQueues(sctx, protocol.ServerQueuePrefix(o.cfg.Cluster))
	machines, perr := o.prov.List(sctx, map[string]string{provider.TagCluster: o.cfg.Cluster})
	routes := map[string][]balancer.Backend{}
	var berr error
	for name, b := range regs {
		l, err := b.List(sctx, name)
		if err != nil {
			berr = err
			continue
		}
		routes[name] = l
	}
	listedAt := time.Now()
	o.post(ctx, func() {
		o.rt.syncing = false
		if qerr != nil {
			o.log.Warn("cannot list queues", "error", qerr)
		} else {
			o.syncQueues(ctx, queues)
		}
		if perr != nil {
			o.log.Warn("cannot list machines", "provider", o.prov.Name(), "error", perr)
		} else {
			o.syncMachines(ctx, machines, listedAt)
		}
		if berr != nil {
			o.log.Warn("cannot list balancer routes", "error", berr)
		}
		o.syncRoutes(ctx, routes)
	})
}

// syncQueues deletes the server queues nobody knows: left by a crash between
// creating a queue and recording its server, or after forgetting a server.
func (o *Orchestrator) syncQueues(ctx context.Context, names []string) {
	known := map[string]bool{}
	for _, s := range o.st.Servers {
		known[s.Queue] = true
	}
	for _, n := range names {
		if known[n] {
			continue
		}
		if err := o.q.DeleteQueue(ctx, n); err != nil {
			o.log.Warn("cannot delete orphaned queue", "queue", n, "error", err)
			continue
		}
		o.met.orphan("queue")
		o.event("orphan", "", "", "", "deleted orphaned queue %s", n)
	}
}

// syncMachines forgets machines the provider no longer has and terminates
// machines it has that nobody knows, after a grace period for their hello.
func (o *Orchestrator) syncMachines(ctx context.Context, listed []provider.Machine, at time.Time) {
	seen := map[string]provider.Machine{}
	for _, pm := range listed {
		seen[pm.ID] = pm
	}
	for _, id := range sortedKeys(o.st.Machines) {
		m := o.st.Machines[id]
		pm, ok := seen[id]
		if ok {
			if pm.ProviderID != "" && m.ProviderID != pm.ProviderID {
				m.ProviderID = pm.ProviderID
				o.changed()
			}
			if m.State == MachineTerminating && o.rt.machine(id).terminateFailed {
				o.rt.machine(id).terminateFailed = false
				go o.doTerminate(ctx, id)
			}
			continue
		}
		// Only machines launched through the provider are expected in
		// its list, and not while their launch may still be running.
		if !m.Launched || m.State == MachineLaunching || o.rt.machine(id).launching || at.Sub(m.LaunchedAt) < 10*time.Second {
			continue
		}
		if m.State == MachineTerminating {
			delete(o.st.Machines, id)
			delete(o.rt.machines, id)
			o.changed()
			continue
		}
		if s := o.st.Servers[m.Server]; s != nil && s.Machine == id {
			o.removeServer(ctx, s, "lost", fmt.Sprintf("machine %s is gone from provider %s: replacing", id, o.prov.Name()), true)
		}
		o.event("gone", "", m.Server, id, "machine %s is gone from provider %s", id, o.prov.Name())
		delete(o.st.Machines, id)
		delete(o.rt.machines, id)
	}
	for id := range o.rt.unknown {
		if _, ok := seen[id]; !ok {
			delete(o.rt.unknown, id)
		}
	}
	for _, pm := range listed {
		if o.st.Machines[pm.ID] != nil {
			continue
		}
		first, ok := o.rt.unknown[pm.ID]
		if !ok {
			o.rt.unknown[pm.ID] = at
			o.log.Info("provider lists a machine the state does not know; waiting for its hello", "machine", pm.ID, "provider_id", pm.ProviderID)
			continue
		}
		if at.Sub(first) >= o.opts.OrphanGrace {
			delete(o.rt.unknown, pm.ID)
			o.met.orphan("machine")
			o.event("orphan", "", "", pm.ID, "terminating unknown machine %s (%s): no hello within %s", pm.ID, pm.ProviderID, fmtDur(o.opts.OrphanGrace))
			id := pm.ID
			go func() {
				tctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
				defer cancel()
				if err := o.prov.Terminate(tctx, id); err != nil {
					o.log.Warn("cannot terminate unknown machine", "machine", id, "error", err)
				}
			}()
		}
	}
}

// syncRoutes deregisters routes to servers that are not ready here, and
// marks ready servers the balancer lost for registration again.
func (o *Orchestrator) syncRoutes(ctx context.Context, routes map[string][]balancer.Backend) {
	for roleName, list := range routes {
		role := o.byRol[roleName]
		if role == nil || role.Register == nil {
			continue
		}
		b := o.bals[role.Register.Balancer]
		have := map[string]bool{}
		for _, be := range list {
			have[be.Server] = true
			s := o.st.Servers[be.Server]
			if s != nil && (s.State == ServerReady || s.State == ServerDraining) {
				continue
			}
			if err := b.Deregister(ctx, roleName, be.Server); err == nil {
				o.event("deregister", roleName, be.Server, "", "%s: deregistered stale route from %s", be.Server, b.Name())
			}
		}
		for _, s := range o.st.Servers {
			if s.Role == roleName && s.State == ServerReady && s.Registered && !have[s.Name] {
				s.Registered = false
				o.changed()
			}
		}
	}
}

// backoff holds a role's commissions back after a failed or abandoned
// provision: 1s, 2s, 4s… up to a minute; a server that gets ready resets it.
func (o *Orchestrator) backoff(role string, now time.Time) {
	lr := o.rt.role(role)
	lr.failures++
	d := time.Second << min(lr.failures-1, 6)
	if d > time.Minute {
		d = time.Minute
	}
	lr.holdUntil = now.Add(d)
}

// settledSpares counts the spares that have been spares for spareSettle at
// least and whose last report says they idle on the global queue: beside
// one of those, a commission that stays unclaimed is stuck. A spare whose
// last report is a claim is waiting for a grant, not polling; a spare that
// just said hello (a new machine, a restart) or became a spare again may be
// claiming the very commission.
func (o *Orchestrator) settledSpares(now time.Time) int {
	n := 0
	for id, m := range o.st.Machines {
		if m.State != MachineSpare || now.Sub(m.SpareSince) < spareSettle {
			continue
		}
		if lm := o.rt.machines[id]; lm == nil || lm.agentState != protocol.StateSpare {
			continue
		}
		n++
	}
	return n
}

// missingReferences names a role that role's config refers to and that has
// no ready server, or "".
func (o *Orchestrator) missingReferences(role *config.Role) string {
	for _, ref := range role.References {
		found := false
		for _, s := range o.st.Servers {
			if s.Role == ref && s.State == ServerReady {
				found = true
				break
			}
		}
		if !found {
			return ref
		}
	}
	return ""
}
