package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/rosterhq/roster/core/protocol"
	"github.com/rosterhq/roster/core/queue"
	"github.com/rosterhq/roster/sdk"
)

// launchTimeout bounds starting a plugin.
const launchTimeout = time.Minute

// plugin returns the commission's plugin, launching it when needed.
func (a *Agent) plugin(ctx context.Context) (sdk.Role, error) {
	if a.role != nil {
		return a.role, nil
	}
	name := a.st.Commission.Body.Plugin
	ctx, cancel := stepContext(ctx, launchTimeout)
	defer cancel()
	r, err := a.cfg.Plugins.Launch(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("plugin %q: %w", name, err)
	}
	if r == nil {
		return nil, fmt.Errorf("plugin %q: launcher returned no plugin", name)
	}
	a.role = r
	return r, nil
}

// releasePlugin lets go of the plugin where the launcher's plugin can be
// closed; the launcher may keep it for the next commission otherwise.
func (a *Agent) releasePlugin() {
	if a.role == nil {
		return
	}
	if c, ok := a.role.(interface{ Close() error }); ok {
		if err := c.Close(); err != nil {
			a.log.Debug("closing the plugin", "error", err)
		}
	}
	a.role = nil
}

// roleConfig decodes the commission's config for the plugin.
func (a *Agent) roleConfig() (sdk.Config, error) {
	v, err := a.st.Commission.Body.Config.Decode()
	if err != nil {
		return sdk.Config{}, fmt.Errorf("config of server %s: %w", a.st.server(), err)
	}
	return sdk.NewConfig(v), nil
}

func sdkPeers(p map[string][]protocol.Peer) map[string][]sdk.Peer {
	if p == nil {
		return nil
	}
	out := make(map[string][]sdk.Peer, len(p))
	for role, ps := range p {
		// An empty pool keeps its key: the role is known to have no
		// ready server, which is not the same as not being told.
		out[role] = make([]sdk.Peer, 0, len(ps))
		for _, x := range ps {
			out[role] = append(out[role], sdk.Peer{Name: x.Name, Endpoints: sdk.Endpoints(x.Endpoints)})
		}
	}
	return out
}

// commissioning provisions the server this machine was granted.
func (a *Agent) commissioning(ctx context.Context) error {
	c := a.st.Commission.Body
	log := a.log.With("server", c.Server, "plugin", c.Plugin)
	// Heartbeats while the plugin launches and provisions: the
	// orchestrator tells a live provisioning agent from a dead one by them.
	a.stopHeartbeats = a.commissioningHeartbeats(ctx, c.Server, durationOr(c.HealthInterval, DefaultHealthInterval))
	defer a.endHeartbeats()
	if err := mkdirTraversable(filepath.Dir(a.serverDir()), a.serverDir()); err != nil {
		return a.failProvision(ctx, fmt.Errorf("server work directory: %w", err))
	}
	role, err := a.plugin(ctx)
	if err != nil {
		return a.failProvision(ctx, err)
	}
	cfg, err := a.roleConfig()
	if err != nil {
		return a.failProvision(ctx, err)
	}
	if a.resumed {
		// A provision interrupted half-way left an unknown state and no
		// endpoints: clean up what it started, then provision afresh.
		log.Info("provision was interrupted, tearing down before provisioning again")
		if _, err := a.teardown(ctx, role); err != nil {
			log.Warn("teardown of the interrupted provision failed", "error", err)
		}
	}

	log.Info("provisioning")
	fwd := a.newProgressForwarder(ctx, c.Server)
	pctx, cancel := stepContext(ctx, durationOr(c.ProvisionTimeout, DefaultProvisionTimeout))
	resp, err := role.Provision(pctx, sdk.ProvisionRequest{
		Server:   a.sdkServer(),
		Config:   cfg,
		Peers:    sdkPeers(c.Peers),
		Progress: fwd.report,
	})
	if err == nil && pctx.Err() != nil {
		err = fmt.Errorf("provision: %w", pctx.Err())
	}
	cancel()
	fwd.stop()
	if err != nil {
		return a.failProvision(ctx, err)
	}
	a.st.Endpoints = resp.Endpoints
	a.st.ReadyReported = false
	return a.transition(protocol.StateServing)
}

// commissioningHeartbeats reports a heartbeat in state commissioning at
// once and then every interval, beside the Provision that blocks the agent's
// loop, until the returned stop is called. It touches nothing of the state.
func (a *Agent) commissioningHeartbeats(ctx context.Context, server string, interval time.Duration) (stop func()) {
	// Not cancelled by a graceful stop: the Provision it vouches for goes
	// on to its end, and so do the heartbeats.
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			a.reportOnce(hctx, protocol.KindHeartbeat, protocol.Heartbeat{
				MachineID: a.cfg.MachineID,
				Server:    server,
				State:     protocol.StateCommissioning,
				Healthy:   true,
				Load:      systemLoad(),
			})
			select {
			case <-hctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

// endHeartbeats stops the commissioning heartbeats, if they run.
func (a *Agent) endHeartbeats() {
	if a.stopHeartbeats != nil {
		a.stopHeartbeats()
		a.stopHeartbeats = nil
	}
}

// failProvision reports a failed provision, tears down what it left and
// makes the machine a spare again.
func (a *Agent) failProvision(ctx context.Context, cause error) error {
	a.endHeartbeats() // none after the failure: the server is given up
	c := a.st.Commission
	a.log.Warn("provision failed", "server", c.Body.Server, "error", cause)
	_ = a.report(ctx, protocol.KindFailed, protocol.Failed{
		Server:    c.Body.Server,
		MachineID: a.cfg.MachineID,
		Order:     c.ID,
		Stage:     "provision",
		Error:     cause.Error(),
	})
	if a.role != nil {
		if _, err := a.teardown(ctx, a.role); err != nil {
			a.log.Warn("teardown after the failed provision failed", "server", c.Body.Server, "error", err)
		}
	}
	return a.becomeSpare()
}

// becomeSpare forgets the server and cleans its work directory.
func (a *Agent) becomeSpare() error {
	dir := a.serverDir()
	a.releasePlugin()
	a.st.toSpare()
	if err := a.transition(protocol.StateSpare); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		a.log.Warn("could not clean the server's work directory", "dir", dir, "error", err)
	}
	return nil
}

// teardown runs the plugin's Teardown, bounded by TeardownTimeout.
func (a *Agent) teardown(ctx context.Context, role sdk.Role) ([]sdk.LogFile, error) {
	cfg, _ := a.roleConfig() // a config that does not decode still tears down
	tctx, cancel := stepContext(ctx, a.cfg.TeardownTimeout)
	defer cancel()
	resp, err := role.Teardown(tctx, sdk.TeardownRequest{
		Server:    a.sdkServer(),
		Config:    cfg,
		Endpoints: a.st.Endpoints,
	})
	if err != nil {
		return nil, err
	}
	return resp.Logs, nil
}

// serving heartbeats every health interval and applies the orders that
// arrive on the server's inbox.
func (a *Agent) serving(ctx context.Context) error {
	if a.resumed {
		reprovision, err := a.resumeServing(ctx)
		if err != nil || reprovision {
			return err
		}
	}
	c := a.st.Commission.Body
	interval := durationOr(c.HealthInterval, DefaultHealthInterval)
	next := time.Now()
	for a.st.State == protocol.StateServing && ctx.Err() == nil {
		if !time.Now().Before(next) {
			if !a.st.ReadyReported {
				a.ready(ctx)
			}
			a.serverHeartbeat(ctx)
			next = time.Now().Add(interval)
		}
		for _, m := range a.receive(ctx, c.Inbox, time.Until(next), 0) {
			if err := a.onInbox(ctx, c.Inbox, m); err != nil {
				return err
			}
		}
	}
	return nil
}

// resumeServing relaunches the plugin after the agent restarted and asks
// whether the server still runs. One that never reported ready is
// provisioned again; one that did is reported as it is (unhealthy, if so)
// for the orchestrator to replace: provisioning a server twice behind the
// orchestrator's back is worse than losing it.
func (a *Agent) resumeServing(ctx context.Context) (reprovision bool, err error) {
	log := a.log.With("server", a.st.server())
	healthy, reason, _ := a.healthCheck(ctx)
	if healthy {
		log.Info("server still healthy after the restart")
		return false, nil
	}
	if a.st.ReadyReported {
		log.Warn("server unhealthy after the restart; reporting it", "reason", reason)
		return false, nil
	}
	log.Info("server not running after the restart and never reported ready: provisioning again", "reason", reason)
	if a.role != nil {
		if _, err := a.teardown(ctx, a.role); err != nil {
			log.Warn("teardown before provisioning again failed", "error", err)
		}
	}
	a.st.Endpoints = nil
	return true, a.transition(protocol.StateCommissioning)
}

func (a *Agent) ready(ctx context.Context) {
	err := a.report(ctx, protocol.KindReady, protocol.Ready{
		Server:    a.st.server(),
		MachineID: a.cfg.MachineID,
		Endpoints: a.st.Endpoints,
	})
	if err != nil {
		return // tried again at the next heartbeat
	}
	a.st.ReadyReported = true
	if err := a.save(); err != nil {
		a.log.Warn("could not save the state", "error", err)
	}
	a.log.Info("ready", "server", a.st.server(), "endpoints", a.st.Endpoints)
}

// healthCheck asks the plugin, bounded by the health timeout. A plugin that
// cannot be reached (crashed, being relaunched) is unhealthy, with the
// error as the reason.
func (a *Agent) healthCheck(ctx context.Context) (bool, string, map[string]float64) {
	role, err := a.plugin(ctx)
	if err != nil {
		return false, err.Error(), nil
	}
	cfg, err := a.roleConfig()
	if err != nil {
		return false, err.Error(), nil
	}
	hctx, cancel := context.WithTimeout(ctx, durationOr(a.st.Commission.Body.HealthTimeout, DefaultHealthTimeout))
	defer cancel()
	resp, err := role.HealthCheck(hctx, sdk.HealthCheckRequest{Server: a.sdkServer(), Config: cfg, Endpoints: a.st.Endpoints})
	if err != nil {
		if hctx.Err() != nil && ctx.Err() == nil {
			return false, fmt.Sprintf("health check timed out: %v", err), nil
		}
		return false, err.Error(), nil
	}
	return resp.Healthy, resp.Reason, resp.Metrics
}

func (a *Agent) serverHeartbeat(ctx context.Context) {
	healthy, reason, metrics := a.healthCheck(ctx)
	if ctx.Err() != nil {
		return
	}
	_ = a.report(ctx, protocol.KindHeartbeat, protocol.Heartbeat{
		MachineID: a.cfg.MachineID,
		Server:    a.st.server(),
		State:     protocol.StateServing,
		Healthy:   healthy,
		Reason:    reason,
		Load:      systemLoad(),
		Metrics:   metrics,
	})
}

// onInbox handles one order from the server's inbox.
func (a *Agent) onInbox(ctx context.Context, q string, m queue.Message) error {
	env, ok := a.open(ctx, q, m)
	if !ok {
		return nil
	}
	log := a.log.With("server", a.st.server(), "order", env.ID, "kind", env.Kind)
	if a.st.applied(env.ID) {
		log.Debug("order already applied, deleted")
		a.delete(ctx, q, m)
		return nil
	}
	switch env.Kind {
	case protocol.KindHalt:
		var h protocol.Halt
		if err := env.DecodeBody(&h); err != nil {
			log.Warn("halt body is malformed, deleted", "error", err)
			break
		}
		if h.Server != a.st.server() {
			log.Warn("halt for another server, deleted", "for", h.Server)
			break
		}
		drain := durationOr(h.DrainTimeout, durationOr(a.st.Commission.Body.DrainTimeout, DefaultDrainTimeout))
		a.st.Halt = &haltState{OrderID: env.ID, Reason: h.Reason, Deadline: time.Now().Add(drain), Reuse: h.Reuse}
		a.st.markApplied(env.ID, time.Now())
		log.Info("halt", "reason", h.Reason, "drain_timeout", drain, "reuse", h.Reuse)
		if err := a.transition(protocol.StateDraining); err != nil {
			return err
		}
	case protocol.KindPing:
		a.serverHeartbeat(ctx)
	case protocol.KindConfigure:
		var c protocol.Configure
		if err := env.DecodeBody(&c); err != nil {
			log.Warn("configure body is malformed, deleted", "error", err)
			break
		}
		if c.Server != a.st.server() {
			log.Warn("configure for another server, deleted", "for", c.Server)
			break
		}
		if last := a.st.Commission.ConfigGeneration; c.Generation != 0 && c.Generation <= last {
			// Delivered late: a newer Configure was applied already.
			log.Info("configure superseded, ignored", "generation", c.Generation, "applied", last)
		} else {
			a.configure(ctx, env.ID, c)
		}
		a.st.markApplied(env.ID, time.Now())
		if err := a.save(); err != nil {
			return err
		}
	case protocol.KindGrant:
		if env.Recipient != a.cfg.MachineID && a.answerStillAwaited(env, m) {
			// The orchestrator's answer to another machine's claim of a
			// copy of this server's commission, naming this machine as
			// the holder: that machine waits on this inbox for it.
			log.Debug("answer to another machine's claim, released", "for", env.Recipient)
			a.release(ctx, q, m)
			sleep(ctx, answerPause)
			return nil
		}
		log.Debug("grant delivered again, deleted")
	default:
		log.Warn("unexpected order on the server's inbox, deleted")
	}
	a.delete(ctx, q, m)
	return nil
}

// maxAnswerReleases bounds how often a serving agent puts back an answer
// meant for another machine, should that machine never come for it.
const maxAnswerReleases = 20

// answerStillAwaited reports whether an answer to another machine's claim
// may still be waited for: younger than a grant wait, and not yet passed
// over more than maxAnswerReleases times.
func (a *Agent) answerStillAwaited(env *protocol.Envelope, m queue.Message) bool {
	return time.Since(env.SentAt) < a.cfg.GrantWait && m.ReceiveCount <= maxAnswerReleases
}

// configure hands new config values to a plugin that implements Configure.
// The values are kept either way: they are the truth from now on.
func (a *Agent) configure(ctx context.Context, order string, c protocol.Configure) {
	log := a.log.With("server", a.st.server(), "order", order, "generation", c.Generation)
	a.st.Commission.Body.Config = c.Config
	a.st.Commission.Body.Peers = c.Peers
	if c.Generation > a.st.Commission.ConfigGeneration {
		a.st.Commission.ConfigGeneration = c.Generation
	}
	fail := func(err error) {
		log.Warn("configure failed", "error", err)
		_ = a.report(ctx, protocol.KindFailed, protocol.Failed{
			Server: a.st.server(), MachineID: a.cfg.MachineID, Order: order, Stage: "configure", Error: err.Error(),
		})
	}
	role, err := a.plugin(ctx)
	if err != nil {
		fail(err)
		return
	}
	conf, ok := role.(sdk.Configurer)
	if !ok {
		return
	}
	cfg, err := a.roleConfig()
	if err != nil {
		fail(err)
		return
	}
	cctx, cancel := stepContext(ctx, durationOr(a.st.Commission.Body.ProvisionTimeout, DefaultProvisionTimeout))
	defer cancel()
	err = conf.Configure(cctx, sdk.ConfigureRequest{Server: a.sdkServer(), Config: cfg, Endpoints: a.st.Endpoints, Peers: sdkPeers(c.Peers)})
	switch {
	case errors.Is(err, sdk.ErrUnimplemented):
	case err != nil:
		fail(err)
	default:
		log.Info("configured")
	}
}
