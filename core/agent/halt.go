package agent

import (
	"context"
	"time"

	"github.com/rosterhq/roster/core/protocol"
	"github.com/rosterhq/roster/sdk"
)

// drainPause is the pause between two Drain calls while connections remain;
// a plugin's Drain normally waits itself, this only keeps a plugin that
// returns at once from being called in a busy loop.
const drainPause = 250 * time.Millisecond

// draining calls Drain until no connection remains or the deadline passes.
// A graceful stop leaves the state as it is: the restarted agent drains on
// to the same deadline.
func (a *Agent) draining(ctx context.Context) error {
	h := a.st.Halt
	log := a.log.With("server", a.st.server())
	role, err := a.plugin(ctx)
	if err != nil {
		log.Warn("cannot drain", "error", err)
		return a.transition(protocol.StateTearingDown)
	}
	cfg, _ := a.roleConfig()
	for {
		dctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), h.Deadline.Add(5*time.Second))
		resp, err := role.Drain(dctx, sdk.DrainRequest{Server: a.sdkServer(), Config: cfg, Endpoints: a.st.Endpoints, Deadline: h.Deadline})
		cancel()
		if err != nil {
			log.Warn("drain failed", "error", err)
		} else {
			h.Open = resp.OpenConnections
			if h.Open == 0 {
				log.Info("drained")
				break
			}
		}
		left := time.Until(h.Deadline)
		if left <= 0 {
			log.Warn("drain deadline passed", "open_connections", h.Open)
			break
		}
		if !sleep(ctx, min(drainPause, left)) {
			return a.save()
		}
	}
	return a.transition(protocol.StateTearingDown)
}

// tearingDown runs Teardown and ships the logs it returns.
func (a *Agent) tearingDown(ctx context.Context) error {
	h := a.st.Halt
	server := a.st.server()
	log := a.log.With("server", server)
	var logs []sdk.LogFile
	role, err := a.plugin(ctx)
	if err == nil {
		logs, err = a.teardown(ctx, role)
	}
	if err != nil {
		log.Warn("teardown failed", "error", err)
		_ = a.report(ctx, protocol.KindFailed, protocol.Failed{
			Server: server, MachineID: a.cfg.MachineID, Order: h.OrderID, Stage: "halt", Error: err.Error(),
		})
	}
	h.Logs = a.shipLogs(ctx, server, logs)
	h.TornDown = true
	return a.transition(protocol.StateHalting)
}

// shipLogs ships the logs to the commission's log destination and returns
// where they went.
func (a *Agent) shipLogs(ctx context.Context, server string, logs []sdk.LogFile) []string {
	dest := a.st.Commission.Body.LogDestination
	if dest == "" || len(logs) == 0 {
		return nil
	}
	log := a.log.With("server", server, "destination", dest)
	s, err := a.cfg.LogShippers(dest)
	if err != nil {
		log.Warn("logs not shipped", "error", err)
		return nil
	}
	if fs, ok := s.(*FileShipper); ok && fs.Logger == nil {
		fs.Logger = log
	}
	sctx, cancel := stepContext(ctx, 5*time.Minute)
	defer cancel()
	out, err := s.Ship(sctx, server, time.Now(), logs)
	if err != nil {
		log.Warn("logs not shipped", "error", err)
	}
	log.Info("logs shipped", "files", len(out))
	return out
}

// halting reports Halting, then halts the machine or makes it a spare again.
func (a *Agent) halting(ctx context.Context) error {
	h := a.st.Halt
	server := a.st.server()
	err := a.report(ctx, protocol.KindHalting, protocol.Halting{
		Server: server, MachineID: a.cfg.MachineID, Logs: h.Logs, Reuse: h.Reuse, Open: h.Open,
	})
	if err != nil {
		// The orchestrator must hear it; try again (or after a restart).
		sleep(ctx, 5*time.Second)
		return nil
	}
	if h.Reuse {
		a.log.Info("halted, a spare again", "server", server)
		return a.becomeSpare()
	}
	a.releasePlugin()
	return a.transition(StateHalted)
}
