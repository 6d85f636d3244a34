package orchestrator

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/zclconf/go-cty/cty"

	"github.com/rosterhq/roster/core/config"
	"github.com/rosterhq/roster/core/protocol"
	"github.com/rosterhq/roster/core/provider"
	"github.com/rosterhq/roster/core/queue"
	"github.com/rosterhq/roster/core/queue/local"
)

// TestMain lets the test binary run as the heartbeat simulator of
// BenchmarkTrack2000Servers, in a process of its own so that the
// orchestrator's CPU and memory are measured alone.
func TestMain(m *testing.M) {
	if os.Getenv("ROSTER_BENCH_SIM") != "" {
		os.Exit(simulate())
	}
	os.Exit(m.Run())
}

// simulate sends, for every simulated server, a sealed heartbeat every
// period, spread evenly, until the duration is over.
func simulate() int {
	env := func(k string) string { return os.Getenv("ROSTER_BENCH_" + k) }
	n, _ := strconv.Atoi(env("N"))
	period, _ := time.ParseDuration(env("PERIOD"))
	dur, _ := time.ParseDuration(env("DURATION"))
	keys, err := protocol.LoadAgentKeys(env("KEYS"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	codec, err := protocol.NewCodec(keys, protocol.Options{Accept: protocol.AcceptOrders})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	q, err := local.Open(env("QUEUE"), local.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer q.Close()
	ctx := context.Background()
	oq := protocol.OrchestratorQueue(env("CLUSTER"))
	batches := (n + queue.MaxBatch - 1) / queue.MaxBatch
	tick := time.NewTicker(period / time.Duration(batches))
	defer tick.Stop()
	end := time.Now().Add(dur)
	next := 0
	for time.Now().Before(end) {
		<-tick.C
		var entries []queue.SendEntry
		for j := 0; j < queue.MaxBatch && next < n; j++ {
			i := next + 1
			body, err := codec.Seal(protocol.KindHeartbeat, fmt.Sprintf("m-%d", i), "orchestrator", 1, protocol.Heartbeat{
				MachineID: fmt.Sprintf("m-%d", i), Server: fmt.Sprintf("web-%d", i), State: protocol.StateServing,
				Healthy: true, Load: 0.5, Metrics: map[string]float64{"requests": float64(i)},
			})
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			entries = append(entries, queue.SendEntry{ID: strconv.Itoa(j), Body: body})
			next++
		}
		if next >= n {
			next = 0
		}
		if _, err := q.SendBatch(ctx, oq, entries); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}
	return 0
}

// nullProvider launches nothing and lists nothing: the simulated servers'
// machines were adopted, not launched.
type nullProvider struct{}

func (nullProvider) Name() string { return "null" }
func (nullProvider) Launch(context.Context, provider.LaunchRequest) (provider.Machine, error) {
	return provider.Machine{}, provider.ErrCapacity
}
func (nullProvider) Terminate(context.Context, string) error { return nil }
func (nullProvider) List(context.Context, map[string]string) ([]provider.Machine, error) {
	return nil, nil
}
func (nullProvider) Close() error { return nil }

// BenchmarkTrack2000Servers: one orchestrator tracking 2,000 ready servers
// that heartbeat every 5 s over the local queue (400 reports/s), sent by a
// simulator process. It reports the orchestrator process's CPU share of one
// core and its peak resident memory.
func BenchmarkTrack2000Servers(b *testing.B) {
	const (
		n       = 2000
		period  = 5 * time.Second
		warmup  = 6 * time.Second
		measure = 20 * time.Second
	)
	for range b.N {
		dir := b.TempDir()
		keys, err := protocol.GenerateKeys()
		if err != nil {
			b.Fatal(err)
		}
		must(b, protocol.WriteKeys(filepath.Join(dir, "keys"), keys))
		q, err := local.Open(filepath.Join(dir, "queue"), local.Options{})
		must(b, err)
		role := &config.Role{Name: "web", Plugin: "static", Count: config.Count{Min: n, Max: n}, Config: cty.EmptyObjectVal,
			Health:    config.Health{Interval: period, Timeout: 2 * time.Second, UnhealthyAfter: 3, LostAfter: 3 * period},
			Provision: config.Provision{Timeout: time.Minute}, Drain: config.Drain{Timeout: time.Minute}}
		cfg := &config.Orchestrator{Cluster: "bench", DataDir: filepath.Join(dir, "data"), Roles: []*config.Role{role}}
		// The servers exist already: this measures tracking, not
		// commissioning.
		st := newState()
		st.NextIndex["web"] = n
		now := time.Now().UTC()
		for i := 1; i <= n; i++ {
			name, mid := fmt.Sprintf("web-%d", i), fmt.Sprintf("m-%d", i)
			st.Servers[name] = &Server{Name: name, Role: "web", State: ServerReady, Queue: protocol.ServerQueue("bench", name, "01bench"),
				Machine: mid, Endpoints: map[string]string{"http": "127.0.0.1:1"}, CreatedAt: now, GrantedAt: now, ReadyAt: now}
			st.Machines[mid] = &Machine{ID: mid, State: MachineServer, Server: name, LaunchedAt: now}
		}
		must(b, os.MkdirAll(cfg.DataDir, 0o700))
		data, _ := json.Marshal(st)
		must(b, os.WriteFile(filepath.Join(cfg.DataDir, StateFile), data, 0o600))

		o, err := New(Options{Config: cfg, Queue: q, Provider: nullProvider{}, Keys: keys,
			Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: os.Stderr})})
		must(b, err)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- o.Run(ctx) }()
		<-o.Ready()

		sim := exec.Command(os.Args[0], "-test.run", "^$")
		sim.Env = append(os.Environ(), "ROSTER_BENCH_SIM=1", "ROSTER_BENCH_N="+strconv.Itoa(n), "ROSTER_BENCH_PERIOD="+period.String(),
			"ROSTER_BENCH_DURATION="+(warmup+measure+time.Second).String(), "ROSTER_BENCH_KEYS="+filepath.Join(dir, "keys"),
			"ROSTER_BENCH_QUEUE="+filepath.Join(dir, "queue"), "ROSTER_BENCH_CLUSTER=bench")
		sim.Stderr = os.Stderr
		must(b, sim.Start())

		time.Sleep(warmup)
		// Reset the peak RSS, then measure CPU and the peak over the window.
		_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
		reportsBefore := o.met.reportCount()
		cpu0, t0 := cpuTime(), time.Now()
		time.Sleep(measure)
		cpu1, t1 := cpuTime(), time.Now()
		reports := o.met.reportCount() - reportsBefore
		peak := procStatusMiB("VmHWM")

		status := o.Status()
		cancel()
		<-done
		_ = sim.Wait()
		q.Close()

		readyN := 0
		for _, s := range status.Servers {
			if s.State == ServerReady && s.LastHeartbeat != nil {
				readyN++
			}
		}
		if readyN != n {
			b.Fatalf("%d of %d servers ready and heartbeating", readyN, n)
		}
		b.ReportMetric(100*(cpu1-cpu0).Seconds()/t1.Sub(t0).Seconds(), "%cpu")
		b.ReportMetric(peak, "MiB")
		b.ReportMetric(reports/t1.Sub(t0).Seconds(), "msgs/s")
		b.ReportMetric(0, "ns/op")
	}
}

func must(b testing.TB, err error) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
}

// cpuTime is this process's user plus system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procStatusMiB reads a memory line of /proc/self/status in MiB.
func procStatusMiB(key string) float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, key+":") {
			f := strings.Fields(line)
			kb, _ := strconv.Atoi(f[1])
			return float64(kb) / 1024
		}
	}
	return 0
}
