package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/rosterhq/roster/core/orchestrator"
)

// benchStack runs an orchestrator in this process, assembled as `roster
// orchestrator` assembles it, with real agent and plugin processes (this
// test binary is roster, see TestMain) and the static role doing nothing
// but serve.
func benchStack(b *testing.B, spares int, reuse bool) (*stack, func()) {
	b.Helper()
	dir := b.TempDir()
	cfg := fmt.Sprintf(`cluster  = "bench%d"
data_dir = ".roster"
spares   = %d
roles    = ["roles/*.hcl"]
queue "local" {}
provider "local" {
  boot_delay = "0s"
}
api {
  address = "127.0.0.1:0"
}
agent {
  spare_heartbeat = "1s"
}
`, os.Getpid(), spares)
	role := fmt.Sprintf(`role "noop" {
  plugin = "static"
  reuse  = %t
  count {
    min = 0
    max = 100
  }
  health {
    interval = "1s"
  }
  drain {
    timeout = "1s"
  }
}
`, reuse)
	must(b, os.MkdirAll(filepath.Join(dir, "roles"), 0o755))
	must(b, os.WriteFile(filepath.Join(dir, "roster.hcl"), []byte(cfg), 0o644))
	must(b, os.WriteFile(filepath.Join(dir, "roles", "noop.hcl"), []byte(role), 0o644))
	return runStack(b, stackOptions{ConfigPath: filepath.Join(dir, "roster.hcl")})
}

// runStack opens a stack (logging warnings to stderr) and runs it until
// the returned function shuts its fleet down and closes it.
func runStack(b testing.TB, so stackOptions) (*stack, func()) {
	b.Helper()
	so.Logger = hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: os.Stderr})
	st, err := openStack(context.Background(), so)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = st.Run(ctx)
	}()
	<-st.o.Ready()
	return st, func() {
		sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
		_ = st.o.Shutdown(sctx)
		scancel()
		cancel()
		<-done
		tctx, tcancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, _ = st.terminateAll(tctx)
		tcancel()
		st.Close()
	}
}

func waitStatus(b *testing.B, o *orchestrator.Orchestrator, what string, d time.Duration, cond func(orchestrator.Status) bool) orchestrator.Status {
	b.Helper()
	deadline := time.Now().Add(d)
	for {
		s := o.Status()
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			b.Fatalf("timed out waiting for %s: %+v", what, s)
		}
		select {
		case <-o.Changed():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// commissionLatencies commissions one server n times, each time from the
// state the spare pool is in, and returns commission→ready times.
func commissionLatencies(b *testing.B, st *stack, n int, warm bool) []time.Duration {
	var out []time.Duration
	for i := 0; i < n; i++ {
		if warm {
			waitStatus(b, st.o, "an idle spare", 30*time.Second, func(s orchestrator.Status) bool {
				return s.Spares.Idle >= 1 && len(s.Servers) == 0
			})
		} else {
			waitStatus(b, st.o, "no machine", 30*time.Second, func(s orchestrator.Status) bool {
				return len(s.Machines) == 0 && len(s.Servers) == 0
			})
		}
		must(b, st.o.SetCount("noop", 1, 1))
		s := waitStatus(b, st.o, "a ready server", 30*time.Second, func(s orchestrator.Status) bool {
			return len(s.Servers) == 1 && s.Servers[0].ReadyAt != nil
		})
		out = append(out, s.Servers[0].ReadyAt.Sub(s.Servers[0].CreatedAt))
		if os.Getenv("ROSTER_BENCH_DEBUG") != "" {
			for _, e := range s.Events {
				if e.Server == s.Servers[0].Name {
					b.Logf("%s +%s %s", e.Kind, e.Time.Sub(s.Servers[0].CreatedAt), e.Message)
				}
			}
		}
		must(b, st.o.SetCount("noop", 0, 0))
	}
	return out
}

func reportPercentiles(b *testing.B, ds []time.Duration) {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	pct := func(p float64) float64 {
		i := int(p*float64(len(ds)) + 0.5)
		if i >= len(ds) {
			i = len(ds) - 1
		}
		return float64(ds[i].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkCommissionFromSpare: a commission taken by a warm spare, from
// the commission order to the ready report, with the static role (no
// provision work; its plugin process starts on commission).
func BenchmarkCommissionFromSpare(b *testing.B) {
	st, stop := benchStack(b, 1, true)
	defer stop()
	b.ResetTimer()
	for range b.N {
		reportPercentiles(b, commissionLatencies(b, st, 20, true))
	}
}

// BenchmarkCommissionColdMachine: the same with no spare: the commission
// waits for a machine launched for it (boot_delay 0s).
func BenchmarkCommissionColdMachine(b *testing.B) {
	st, stop := benchStack(b, 0, false)
	defer stop()
	b.ResetTimer()
	for range b.N {
		reportPercentiles(b, commissionLatencies(b, st, 15, false))
	}
}
