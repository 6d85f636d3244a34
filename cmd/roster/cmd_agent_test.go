package main

import (
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rosterhq/roster/core/protocol"
	"github.com/rosterhq/roster/core/provider"
	providerlocal "github.com/rosterhq/roster/core/provider/local"
	"github.com/rosterhq/roster/core/queue"
	"github.com/rosterhq/roster/core/queue/local"
	"github.com/zclconf/go-cty/cty"
)

// TestMain lets the test binary be roster itself when it is run with a
// subcommand as its first argument (`agent`, and `plugin-serve` when the
// agent's plugin host re-executes it), so that tests drive real processes
// of this very code.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		if _, ok := commands[os.Args[1]]; ok {
			os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
		}
	}
	os.Exit(m.Run())
}

// agentWorld is an orchestrator stand-in around real agent processes.
type agentWorld struct {
	t       testing.TB
	dir     string
	q       *local.Queue
	orch    *protocol.Codec
	peek    *protocol.Codec // opens the orders sealed here, for their ids
	reports chan *protocol.Envelope
	cluster string
}

func newAgentWorld(t testing.TB) *agentWorld {
	t.Helper()
	dir := t.TempDir()
	keys, err := protocol.GenerateKeys()
	if err != nil {
		t.Fatal(err)
	}
	if err := protocol.WriteKeys(filepath.Join(dir, "keys"), keys); err != nil {
		t.Fatal(err)
	}
	q, err := local.Open(filepath.Join(dir, "queue"), local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	orch, err := protocol.NewCodec(keys, protocol.Options{Accept: protocol.AcceptReports})
	if err != nil {
		t.Fatal(err)
	}
	peek, err := protocol.NewCodec(keys, protocol.Options{})
	if err != nil {
		t.Fatal(err)
	}
	w := &agentWorld{t: t, dir: dir, q: q, orch: orch, peek: peek, reports: make(chan *protocol.Envelope, 1000), cluster: "e2e"}
	ctx, cancel := context.WithCancel(context.Background())
	for _, name := range []string{protocol.GlobalQueue(w.cluster), protocol.OrchestratorQueue(w.cluster)} {
		if err := q.CreateQueue(ctx, name, queue.QueueOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		oq := protocol.OrchestratorQueue(w.cluster)
		for ctx.Err() == nil {
			msgs, err := q.Receive(ctx, oq, queue.ReceiveOptions{MaxMessages: 10, WaitTime: time.Second})
			if err != nil {
				continue
			}
			for _, m := range msgs {
				if env, err := orch.Open(m.Body); err == nil {
					w.reports <- env
				}
				_ = q.DeleteMessage(context.Background(), oq, m.Receipt)
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		q.Close()
	})
	return w
}

func (w *agentWorld) agentArgs(id string) []string {
	return []string{"agent", "-cluster", w.cluster, "-machine-id", id, "-work-dir", ".",
		"-queue-dir", filepath.Join(w.dir, "queue"), "-keys", filepath.Join(w.dir, "keys"),
		"-spare-heartbeat", "200ms", "-log-level", "debug"}
}

func (w *agentWorld) expect(kind protocol.Kind, match func(*protocol.Envelope) bool) *protocol.Envelope {
	w.t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case env := <-w.reports:
			if env.Kind == kind && (match == nil || match(env)) {
				return env
			}
			if kind == protocol.KindReady && env.Kind == protocol.KindFailed {
				w.t.Fatalf("failed: %s", env.Body)
			}
		case <-timeout:
			w.t.Fatalf("no %s report within 30s", kind)
		}
	}
}

func (w *agentWorld) order(q string, kind protocol.Kind, recipient string, body any) string {
	w.t.Helper()
	raw, err := w.orch.Seal(kind, "orchestrator", recipient, 1, body)
	if err != nil {
		w.t.Fatal(err)
	}
	if _, err := w.q.Send(context.Background(), q, raw); err != nil {
		w.t.Fatal(err)
	}
	env, err := w.peek.Open(raw)
	if err != nil {
		w.t.Fatal(err)
	}
	return env.ID
}

func bodyOf[T any](t testing.TB, env *protocol.Envelope) T {
	t.Helper()
	var v T
	if err := env.DecodeBody(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

func agentLog(dir, id string) string {
	b, _ := os.ReadFile(filepath.Join(dir, "machines", id, providerlocal.AgentLog))
	return string(b)
}

// TestAgentProcess runs `roster agent` as a machine of the local provider
// through a whole life with the built-in static role: spare, commission,
// ready and serving over HTTP, SIGKILL and restart without provisioning
// again, halt with logs shipped, exit.
func TestAgentProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	w := newAgentWorld(t)
	prov, err := providerlocal.New(providerlocal.Options{Exe: os.Args[0], DataDir: w.dir, AgentArgs: w.agentArgs, TerminateGrace: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer prov.Close()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent log:\n%s", agentLog(w.dir, "m-1"))
		}
		_ = prov.Terminate(context.Background(), "m-1")
	})
	ctx := context.Background()
	m, err := prov.Launch(ctx, provider.LaunchRequest{Token: "t1", MachineID: "m-1", Tags: map[string]string{provider.TagCluster: w.cluster}})
	if err != nil {
		t.Fatal(err)
	}
	hello := bodyOf[protocol.Hello](t, w.expect(protocol.KindHello, nil))
	if hello.State != protocol.StateSpare || hello.MachineID != "m-1" || !strings.Contains(strings.Join(hello.Plugins, ","), "static") {
		t.Fatalf("hello = %+v", hello)
	}
	w.expect(protocol.KindHeartbeat, nil)

	inbox := protocol.ServerQueue(w.cluster, "web-1", "u1")
	if err := w.q.CreateQueue(ctx, inbox, queue.QueueOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg, _ := protocol.EncodeValue(cty.ObjectVal(map[string]cty.Value{"port": cty.NumberIntVal(0), "provision_delay": cty.StringVal("0s")}))
	cid := w.order(protocol.GlobalQueue(w.cluster), protocol.KindCommission, "spares", protocol.Commission{
		Role: "web", Server: "web-1", Inbox: inbox, Plugin: "static", Config: cfg,
		HealthInterval: protocol.Duration(200 * time.Millisecond), HealthTimeout: protocol.Duration(2 * time.Second),
		ProvisionTimeout: protocol.Duration(time.Minute), DrainTimeout: protocol.Duration(5 * time.Second),
		LogDestination: "file://" + filepath.Join(w.dir, "logs"),
	})
	w.expect(protocol.KindClaim, nil)
	w.order(inbox, protocol.KindGrant, "web-1", protocol.Grant{Commission: cid, Server: "web-1", MachineID: "m-1"})
	ready := bodyOf[protocol.Ready](t, w.expect(protocol.KindReady, nil))
	get := func() error {
		resp, err := http.Get("http://" + ready.Endpoints["http"] + "/")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return errors.New(resp.Status)
		}
		return nil
	}
	if err := get(); err != nil {
		t.Fatalf("serving %v: %v", ready.Endpoints, err)
	}
	serving := func(e *protocol.Envelope) bool {
		hb := bodyOf[protocol.Heartbeat](t, e)
		return hb.State == protocol.StateServing && hb.Healthy
	}
	w.expect(protocol.KindHeartbeat, serving)

	pid, err := strconv.Atoi(strings.TrimPrefix(m.ProviderID, "pid:"))
	if err != nil {
		t.Fatal(err)
	}
	// The plugin crashes: the agent lives on, the plugin host relaunches
	// the plugin and the server is healthy again through the new process.
	plugin := childOf(t, pid)
	if err := syscall.Kill(plugin, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, plugin)
	w.expect(protocol.KindHeartbeat, func(e *protocol.Envelope) bool {
		return serving(e) && childOf(t, pid) != plugin
	})

	// SIGKILL the agent (its plugin dies with it) and start it again, as a
	// machine's init would: it finds it was serving and does not provision.
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pid)
	restarted := exec.Command(os.Args[0], w.agentArgs("m-1")...)
	restarted.Dir = filepath.Join(w.dir, "machines", "m-1")
	logf, err := os.OpenFile(filepath.Join(restarted.Dir, providerlocal.AgentLog), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	restarted.Stdout, restarted.Stderr = logf, logf
	if err := restarted.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- restarted.Wait() }()
	t.Cleanup(func() {
		_ = restarted.Process.Kill()
		<-exited
	})
	hello = bodyOf[protocol.Hello](t, w.expect(protocol.KindHello, nil))
	if hello.State != protocol.StateServing || hello.Server != "web-1" {
		t.Fatalf("hello after restart = %+v", hello)
	}
	w.expect(protocol.KindHeartbeat, serving)
	if err := get(); err != nil {
		t.Fatalf("not serving after the restart: %v", err)
	}
	if strings.Count(agentLog(w.dir, "m-1"), "provisioning") != 1 {
		t.Fatalf("provisioned more than once:\n%s", agentLog(w.dir, "m-1"))
	}

	w.order(inbox, protocol.KindHalt, "web-1", protocol.Halt{Server: "web-1", Reason: "test", DrainTimeout: protocol.Duration(5 * time.Second)})
	halting := bodyOf[protocol.Halting](t, w.expect(protocol.KindHalting, nil))
	if halting.Reuse || len(halting.Logs) == 0 {
		t.Fatalf("halting = %+v", halting)
	}
	for _, l := range halting.Logs {
		if _, err := os.Stat(strings.TrimPrefix(l, "file://")); err != nil {
			t.Fatalf("shipped log: %v", err)
		}
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("agent exit: %v", err)
		}
		exited <- nil
	case <-time.After(30 * time.Second):
		t.Fatal("halted agent did not exit")
	}
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil || strings.Contains(string(b), ") Z ") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d still alive", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// BenchmarkAgentIdleMemory measures the resident memory of a spare agent
// process (the test binary as roster, launched by the local provider) once
// it has said hello and heartbeats: the most it reaches over a few seconds
// of idling on the global queue.
func BenchmarkAgentIdleMemory(b *testing.B) {
	w := newAgentWorld(b)
	prov, err := providerlocal.New(providerlocal.Options{Exe: os.Args[0], DataDir: w.dir, AgentArgs: w.agentArgs, TerminateGrace: 5 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer prov.Close()
	defer prov.Terminate(context.Background(), "m-1")
	m, err := prov.Launch(context.Background(), provider.LaunchRequest{MachineID: "m-1"})
	if err != nil {
		b.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimPrefix(m.ProviderID, "pid:"))
	w.expect(protocol.KindHello, nil)
	var rss, anon float64
	for i := 0; i < 10; i++ {
		w.expect(protocol.KindHeartbeat, nil)
		r, a := procMemory(b, pid)
		rss, anon = max(rss, r), max(anon, a)
	}
	b.ReportMetric(rss, "MiB")
	b.ReportMetric(anon, "anon-MiB")
}

// procMemory returns a process's resident memory and its anonymous part,
// in MiB, from /proc/<pid>/status.
func procMemory(tb testing.TB, pid int) (rss, anon float64) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb / 1024
		case "RssAnon:":
			anon = kb / 1024
		}
	}
	return rss, anon
}

// childOf returns the pid of a live child of pid (the agent's one plugin),
// or 0.
func childOf(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 && f[0] != "Z" && f[1] == strconv.Itoa(pid) {
			n, _ := strconv.Atoi(e.Name())
			return n
		}
	}
	return 0
}
