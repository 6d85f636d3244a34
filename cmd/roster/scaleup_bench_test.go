package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/rosterhq/roster/core/orchestrator"
	"github.com/rosterhq/roster/plugins/static"
)

// scaleStack is an in-process orchestrator of one `static` role behind a
// managed haproxy, its metric steered through the role's metrics_file.
type scaleStack struct {
	st      *stack
	front   string
	metrics string
	stop    func()
}

func newScaleStack(b *testing.B, spares int, bootDelay string) *scaleStack {
	b.Helper()
	dir := b.TempDir()
	s := &scaleStack{front: fmt.Sprintf("127.0.0.1:%d", freePort(b)), metrics: filepath.Join(dir, "metrics")}
	cfg := fmt.Sprintf(`cluster  = "scale%d%d"
data_dir = ".roster"
spares   = %d
roles    = ["roles/*.hcl"]
queue "local" {}
provider "local" {
  boot_delay = %q
}
balancer "haproxy" "front" {
  frontend       = %q
  check_interval = "1s"
}
api {
  address = "127.0.0.1:0"
}
agent {
  spare_heartbeat = "1s"
}
`, os.Getpid(), spares, spares, bootDelay, s.front)
	// One server, a second when busy goes above 0.6 (the metric is
	// averaged over 1 s of heartbeats every 250 ms; no cooldown).
	role := fmt.Sprintf(`role "web" {
  plugin = "static"
  count {
    min = 1
    max = 2
  }
  scale {
    metric        = "busy"
    up_above      = 0.6
    down_below    = 0.25
    window        = "1s"
    cooldown_up   = "0s"
    cooldown_down = "0s"
  }
  health {
    interval = "250ms"
  }
  drain {
    timeout = "2s"
  }
  register {
    balancer = "front"
  }
  config {
    metrics_file = %q
  }
}
`, s.metrics)
	must(b, os.MkdirAll(filepath.Join(dir, "roles"), 0o755))
	must(b, os.WriteFile(filepath.Join(dir, "roster.hcl"), []byte(cfg), 0o644))
	must(b, os.WriteFile(filepath.Join(dir, "roles", "web.hcl"), []byte(role), 0o644))
	must(b, s.setBusy(0.4))
	level := hclog.Warn
	if os.Getenv("ROSTER_BENCH_DEBUG") != "" {
		level = hclog.Info
	}
	logger := hclog.New(&hclog.LoggerOptions{Level: level, Output: os.Stderr})
	st, err := openStack(context.Background(), stackOptions{ConfigPath: filepath.Join(dir, "roster.hcl"), Logger: logger})
	if err != nil {
		b.Fatal(err)
	}
	s.st = st
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = st.Run(ctx)
	}()
	<-st.o.Ready()
	s.stop = func() {
		sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
		_ = st.o.Shutdown(sctx)
		scancel()
		cancel()
		<-done
		tctx, tcancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, _ = st.terminateAll(tctx)
		_ = stopBalancers(tctx, st.bals, logger)
		tcancel()
		st.Close()
	}
	return s
}

// setBusy replaces the metrics file atomically.
func (s *scaleStack) setBusy(v float64) error {
	tmp := s.metrics + ".tmp"
	if err := os.WriteFile(tmp, fmt.Appendf(nil, "busy %g\n", v), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, s.metrics)
}

// wait polls the orchestrator until cond holds.
func (s *scaleStack) wait(what string, d time.Duration, cond func(orchestrator.Status) bool) error {
	deadline := time.Now().Add(d)
	for {
		st := s.st.o.Status()
		if cond(st) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s: %d servers, spares %+v", d, what, len(st.Servers), st.Spares)
		}
		select {
		case <-s.st.o.Changed():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// settled: one server, ready and registered, and the spare pool as
// configured (a spare idling, or none launching).
func (s *scaleStack) settled(spares int) func(orchestrator.Status) bool {
	return func(st orchestrator.Status) bool {
		return len(st.Servers) == 1 && st.Servers[0].State == orchestrator.ServerReady && st.Servers[0].Registered &&
			st.Spares.Idle == spares && st.Spares.Launching == 0 && len(st.Machines) == 1+spares
	}
}

// round measures one scale-up: from the moment the metric crosses
// up_above to the first request the new server answers through haproxy,
// then scales back in.
func (s *scaleStack) round(spares int, timeout time.Duration) (time.Duration, error) {
	if err := s.wait("one registered server", 2*time.Minute, s.settled(spares)); err != nil {
		return 0, err
	}
	old := s.st.o.Status().Servers[0].Name
	if name, err := getServer(s.front); err != nil || name != old {
		return 0, fmt.Errorf("through haproxy before the round: %q, %v; want %s", name, err, old)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// One client, one request at a time: haproxy balances each request,
	// so the new server answers one of the next two once it is in.
	c := &http.Client{Timeout: 5 * time.Second}
	defer c.CloseIdleConnections()
	crossed := time.Now()
	if err := s.setBusy(0.9); err != nil {
		return 0, err
	}
	var took time.Duration
	for took == 0 {
		if ctx.Err() != nil {
			return 0, fmt.Errorf("no other server than %s answered within %s of the load crossing up_above", old, timeout)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.front+"/", nil)
		resp, err := c.Do(req)
		if err != nil {
			if !errors.Is(err, context.DeadlineExceeded) {
				return 0, fmt.Errorf("through haproxy: %w", err)
			}
			continue
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		at := time.Now()
		if resp.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("through haproxy: %s", resp.Status)
		}
		if name := resp.Header.Get(static.ServerHeader); name != old && name != "" {
			took = at.Sub(crossed)
			break
		}
		time.Sleep(time.Millisecond)
	}
	if os.Getenv("ROSTER_BENCH_DEBUG") != "" {
		for _, e := range s.st.o.Status().Events {
			if e.Time.After(crossed.Add(-time.Second)) {
				fmt.Fprintf(os.Stderr, "spares=%d +%s %s %s\n", spares, e.Time.Sub(crossed).Round(time.Millisecond), e.Kind, e.Message)
			}
		}
		if spares == 0 {
			logs, _ := filepath.Glob(filepath.Join(s.st.cfg.DataDir, "machines", "*", "agent.log"))
			for _, l := range logs {
				data, _ := os.ReadFile(l)
				fmt.Fprintf(os.Stderr, "=== %s\n%s\n", l, data)
			}
		}
	}
	// Back to one server (and a refilled spare pool) for the next round.
	if err := s.setBusy(0.1); err != nil {
		return 0, err
	}
	if err := s.wait("the scale-in", 2*time.Minute, func(st orchestrator.Status) bool {
		return len(st.Servers) == 1 && st.Servers[0].State == orchestrator.ServerReady
	}); err != nil {
		return 0, err
	}
	return took, s.setBusy(0.4)
}

// BenchmarkScaleUpToTraffic: the time from the scaling metric crossing
// up_above to the first request the new server answers through haproxy —
// the policy's detection over a 1 s window, the commission, Provision, the
// ready report, `add server` in haproxy — with a warm spare (several rounds)
// and with a cold local machine booting for 20 s (one round: the boot
// dominates). The static role stands in for the web role: the web role's
// Provision (apache and memcached starting, about 200 ms from a spare in
// the load test) would add to both the same.
func BenchmarkScaleUpToTraffic(b *testing.B) {
	if _, err := os.Stat("/usr/sbin/haproxy"); err != nil {
		b.Skip("haproxy is not installed (make test-deps installs it)")
	}
	for range b.N {
		var (
			wg       sync.WaitGroup
			spare    []time.Duration
			cold     time.Duration
			coldErr  error
			spareErr error
		)
		// Both run at once, each with its own orchestrator and haproxy:
		// the cold machine mostly waits out its boot.
		coldStack := newScaleStack(b, 0, "20s")
		spareStack := newScaleStack(b, 1, "0s")
		wg.Add(2)
		go func() {
			defer wg.Done()
			cold, coldErr = coldStack.round(0, time.Minute)
		}()
		go func() {
			defer wg.Done()
			for range 8 {
				d, err := spareStack.round(1, 30*time.Second)
				if err != nil {
					spareErr = err
					return
				}
				spare = append(spare, d)
			}
		}()
		wg.Wait()
		var stops sync.WaitGroup
		for _, st := range []*scaleStack{coldStack, spareStack} {
			stops.Add(1)
			go func() { defer stops.Done(); st.stop() }()
		}
		stops.Wait()
		if coldErr != nil || spareErr != nil {
			b.Fatal(errors.Join(coldErr, spareErr))
		}
		sort.Slice(spare, func(i, j int) bool { return spare[i] < spare[j] })
		b.ReportMetric(float64(spare[len(spare)/2].Microseconds())/1000, "spare-ms")
		b.ReportMetric(float64(spare[len(spare)-1].Microseconds())/1000, "spare-max-ms")
		b.ReportMetric(float64(cold.Microseconds())/1000, "cold-ms")
		b.ReportMetric(0, "ns/op")
	}
}
