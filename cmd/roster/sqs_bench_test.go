package main

// What SQS costs per machine, measured: the requests an idle spare and a
// serving server make (each agent in this process with its own SQS client,
// so that the backend's Requests() counter is the agent's alone), and the
// latency of a commission from a warm spare over SQS, next to
// BenchmarkCommissionFromSpare on the local queue. fauxqs stands in for
// SQS; it answers as SQS does, so the request counts are those AWS would
// bill (its latencies are not AWS's).

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/rosterhq/roster/core/agent"
	"github.com/rosterhq/roster/core/orchestrator"
	"github.com/rosterhq/roster/core/protocol"
	"github.com/rosterhq/roster/core/provider"
	"github.com/rosterhq/roster/core/queue/fauxqs"
	"github.com/rosterhq/roster/core/queue/sqs"
	"github.com/rosterhq/roster/sdk"
)

// inprocProvider runs each machine's agent in this process, on its own SQS
// client, with the built-in roles in process too.
type inprocProvider struct {
	ps       providerSetup
	endpoint string
	dir      string

	mu       sync.Mutex
	machines map[string]*inprocMachine
}

type inprocMachine struct {
	m      provider.Machine
	q      *sqs.Queue
	cancel context.CancelFunc
	done   chan struct{}
}

func (p *inprocProvider) Name() string { return "inproc" }

func (p *inprocProvider) Launch(ctx context.Context, req provider.LaunchRequest) (provider.Machine, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if m, ok := p.machines[req.MachineID]; ok {
		return m.m, nil
	}
	keys, err := protocol.LoadAgentKeys(p.ps.KeysDir)
	if err != nil {
		return provider.Machine{}, err
	}
	codec, err := protocol.NewCodec(keys, protocol.Options{Accept: protocol.AcceptOrders, FollowEpoch: true})
	if err != nil {
		return provider.Machine{}, err
	}
	q, err := sqs.New(ctx, sqs.Options{Region: fauxqs.Region, Endpoint: p.endpoint, Credentials: fauxqs.Credentials()})
	if err != nil {
		return provider.Machine{}, err
	}
	wd := filepath.Join(p.dir, req.MachineID)
	if err := os.MkdirAll(wd, 0o755); err != nil {
		return provider.Machine{}, err
	}
	a, err := agent.New(agent.Config{
		Cluster: p.ps.Config.Cluster, MachineID: req.MachineID, WorkDir: wd, Queue: q, Codec: codec,
		Plugins: agent.LauncherFunc(func(_ context.Context, name string) (sdk.Role, error) {
			if newRole, ok := builtinRoles[name]; ok {
				return newRole(), nil
			}
			return nil, fmt.Errorf("no plugin %q", name)
		}),
		SpareHeartbeat: p.ps.Config.Agent.SpareHeartbeat,
		Logger:         hclog.NewNullLogger(),
		Provider:       "inproc",
	})
	if err != nil {
		return provider.Machine{}, err
	}
	tags := map[string]string{provider.TagMachine: req.MachineID}
	for k, v := range req.Tags {
		tags[k] = v
	}
	actx, cancel := context.WithCancel(context.Background())
	m := &inprocMachine{m: provider.Machine{ID: req.MachineID, ProviderID: "inproc:" + req.MachineID, State: "running",
		Address: "127.0.0.1", LaunchedAt: time.Now(), Tags: tags}, q: q, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(m.done)
		_ = a.Run(actx)
	}()
	p.machines[req.MachineID] = m
	return m.m, nil
}

func (p *inprocProvider) Terminate(_ context.Context, id string) error {
	p.mu.Lock()
	m, ok := p.machines[id]
	delete(p.machines, id)
	p.mu.Unlock()
	if ok {
		m.cancel()
		<-m.done
		_ = m.q.Close()
	}
	return nil
}

func (p *inprocProvider) List(_ context.Context, tags map[string]string) ([]provider.Machine, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []provider.Machine
next:
	for _, m := range p.machines {
		for k, v := range tags {
			if m.m.Tags[k] != v {
				continue next
			}
		}
		out = append(out, m.m)
	}
	return out, nil
}

func (p *inprocProvider) Close() error { return nil }

// requests is the SQS request count of machine id's agent.
func (p *inprocProvider) requests(id string) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if m, ok := p.machines[id]; ok {
		return m.q.Requests()
	}
	return -1
}

// sqsBenchStack runs an orchestrator in this process on queue "sqs"
// (fauxqs), with the static role at count 1 and one spare; newProvider nil
// means the local provider (agents as processes).
func sqsBenchStack(b *testing.B, endpoint string, spares, count int, interval string, newProvider func(context.Context, providerSetup) (provider.Provider, error)) (*stack, func()) {
	b.Helper()
	dir := b.TempDir()
	cfg := fmt.Sprintf(`cluster  = "sqsbench%d"
data_dir = ".roster"
spares   = %d
roles    = ["roles/*.hcl"]
queue "sqs" {
  region   = %q
  endpoint = %q
}
provider "local" {
  boot_delay = "0s"
}
api {
  address = "127.0.0.1:0"
}
agent {
  spare_heartbeat = "30s"
}
`, os.Getpid(), spares, fauxqs.Region, endpoint)
	role := fmt.Sprintf(`role "noop" {
  plugin = "static"
  reuse  = true
  count {
    min = %d
    max = 100
  }
  health {
    interval = %q
  }
  drain {
    timeout = "1s"
  }
}
`, count, interval)
	must(b, os.MkdirAll(filepath.Join(dir, "roles"), 0o755))
	must(b, os.WriteFile(filepath.Join(dir, "roster.hcl"), []byte(cfg), 0o644))
	must(b, os.WriteFile(filepath.Join(dir, "roles", "noop.hcl"), []byte(role), 0o644))
	return runStack(b, stackOptions{ConfigPath: filepath.Join(dir, "roster.hcl"), NewProvider: newProvider})
}

// BenchmarkSQSRequestsPerHour counts the SQS requests of an idle spare
// (spare_heartbeat 30s, the default) over one heartbeat cycle and of a
// serving server (health.interval 5s) over six, each window running from
// one heartbeat the orchestrator received to another, and extrapolates
// them to an hour; the orchestrator's own requests over the same time are
// reported per machine as well.
func BenchmarkSQSRequestsPerHour(b *testing.B) {
	endpoint := fauxqs.Start(b)
	fauxAWSEnv(b, endpoint)
	var prov *inprocProvider
	st, stop := sqsBenchStack(b, endpoint, 1, 1, "5s", func(_ context.Context, ps providerSetup) (provider.Provider, error) {
		prov = &inprocProvider{ps: ps, endpoint: endpoint, dir: b.TempDir(), machines: map[string]*inprocMachine{}}
		return prov, nil
	})
	defer stop()
	orch := st.q.(*sqs.Queue)
	s := waitStatus(b, st.o, "one server and one spare", 60*time.Second, func(s orchestrator.Status) bool {
		return len(s.Servers) == 1 && s.Servers[0].LastHeartbeat != nil && s.Spares.Idle == 1
	})
	server, spare := s.Servers[0].Machine, ""
	for _, m := range s.Machines {
		if m.State == orchestrator.MachineSpare {
			spare = m.ID
		}
	}
	// heartbeatAt returns when the orchestrator last heard from id.
	heartbeatAt := func(s orchestrator.Status, id string) time.Time {
		for _, m := range s.Machines {
			if m.ID == id && m.LastSeen != nil {
				return *m.LastSeen
			}
		}
		return time.Time{}
	}
	b.ResetTimer()
	for range b.N {
		// Each window opens at a heartbeat and closes k heartbeats later.
		type window struct {
			id         string
			cycles     int
			last       time.Time
			seen       int
			start, end int64
			t0, t1     time.Time
		}
		ws := []*window{{id: spare, cycles: 1}, {id: server, cycles: 6}}
		for _, w := range ws {
			w.last = heartbeatAt(st.o.Status(), w.id)
			w.seen = -1
		}
		var o0, o1 int64
		var ot0 time.Time
		deadline := time.Now().Add(120 * time.Second)
		for {
			s := st.o.Status()
			open := 0
			for _, w := range ws {
				if at := heartbeatAt(s, w.id); !at.Equal(w.last) {
					w.last = at
					w.seen++
					switch {
					case w.seen == 0:
						w.start, w.t0 = prov.requests(w.id), time.Now()
						if ot0.IsZero() {
							o0, ot0 = orch.Requests(), time.Now()
						}
					case w.seen == w.cycles:
						w.end, w.t1 = prov.requests(w.id), time.Now()
					}
				}
				if w.seen < w.cycles {
					open++
				}
			}
			if open == 0 {
				o1 = orch.Requests()
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("heartbeats did not come: %+v", s.Machines)
			}
			time.Sleep(10 * time.Millisecond)
		}
		perHour := func(w *window, every time.Duration) float64 {
			return float64(w.end-w.start) / float64(w.cycles) * float64(time.Hour/every)
		}
		spareH := perHour(ws[0], 30*time.Second)
		serverH := perHour(ws[1], 5*time.Second)
		b.ReportMetric(spareH, "spare-req/h")
		b.ReportMetric(serverH, "serving-req/h")
		elapsed := time.Since(ot0)
		// Two machines: the orchestrator's share of each.
		b.ReportMetric(float64(o1-o0)/elapsed.Hours()/2, "orch-req/h/machine")
		b.ReportMetric(0, "ns/op")
		b.Logf("spare: %d requests in %d cycle(s) of 30s (%.1fs); server: %d in %d cycles of 5s (%.1fs); orchestrator: %d in %.1fs",
			ws[0].end-ws[0].start, ws[0].cycles, ws[0].t1.Sub(ws[0].t0).Seconds(), ws[1].end-ws[1].start, ws[1].cycles,
			ws[1].t1.Sub(ws[1].t0).Seconds(), o1-o0, elapsed.Seconds())
	}
}

// BenchmarkCommissionFromSpareSQS is BenchmarkCommissionFromSpare over SQS
// (fauxqs on loopback): agent processes, a warm spare long-polling the
// global queue, commission order to ready report.
func BenchmarkCommissionFromSpareSQS(b *testing.B) {
	endpoint := fauxqs.Start(b)
	fauxAWSEnv(b, endpoint)
	st, stop := sqsBenchStack(b, endpoint, 1, 0, "1s", nil)
	defer stop()
	b.ResetTimer()
	for range b.N {
		reportPercentiles(b, commissionLatencies(b, st, 20, true))
	}
}
