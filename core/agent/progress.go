package agent

import (
	"context"
	"sync"
	"time"

	"github.com/rosterhq/roster/core/protocol"
	"github.com/rosterhq/roster/sdk"
)

// progressForwarder turns a plugin's progress callbacks into progress
// reports, at most one per interval, so that a chatty plugin cannot flood
// the orchestrator's queue. Reports in between are coalesced: only the
// latest is sent, and the last one is always sent by stop.
type progressForwarder struct {
	a        *Agent
	ctx      context.Context
	server   string
	interval time.Duration

	mu      sync.Mutex
	pending *sdk.Progress

	kick     chan struct{}
	done     chan struct{}
	finished chan struct{}
}

func (a *Agent) newProgressForwarder(ctx context.Context, server string) *progressForwarder {
	p := &progressForwarder{
		a:        a,
		ctx:      ctx,
		server:   server,
		interval: a.cfg.ProgressInterval,
		kick:     make(chan struct{}, 1),
		done:     make(chan struct{}),
		finished: make(chan struct{}),
	}
	go p.run()
	return p
}

// report is the plugin's ProgressFunc: it never blocks.
func (p *progressForwarder) report(pr sdk.Progress) {
	p.mu.Lock()
	p.pending = &pr
	p.mu.Unlock()
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

func (p *progressForwarder) run() {
	defer close(p.finished)
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-p.done:
			return
		case <-p.kick:
		}
		p.flush()
		t.Reset(p.interval)
		select {
		case <-p.done:
			return
		case <-t.C:
		}
	}
}

func (p *progressForwarder) flush() {
	p.mu.Lock()
	pr := p.pending
	p.pending = nil
	p.mu.Unlock()
	if pr == nil {
		return
	}
	_ = p.a.report(p.ctx, protocol.KindProgress, protocol.ProgressReport{
		Server:   p.server,
		Step:     pr.Step,
		Message:  pr.Message,
		Fraction: pr.Fraction,
	})
}

// stop ends the forwarding and sends the last progress not yet sent.
func (p *progressForwarder) stop() {
	close(p.done)
	<-p.finished
	p.flush()
}
