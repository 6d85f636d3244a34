package main

// End-to-end tests of the control loop: real `roster orchestrator`
// processes with the local queue and the local provider, real `roster
// agent` processes, and the real built-in `static` role plugin, whose
// reported metrics the test steers through the role's metrics_file. The
// test binary is roster itself (see TestMain), so every process runs this
// very code. Each test waits on conditions through the API, with deadlines.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rosterhq/roster/core/orchestrator"
	"github.com/rosterhq/roster/core/protocol"
	localprov "github.com/rosterhq/roster/core/provider/local"
	"github.com/rosterhq/roster/core/queue"
	"github.com/rosterhq/roster/core/queue/local"
)

// e2eRole is the role file's settings a test varies.
type e2eRole struct {
	Min, Max       int
	Reuse          bool
	Scale          bool // threshold scaling on load over 1s windows
	LostAfter      string
	ProvisionTO    string
	ProvisionDelay string
}

type e2e struct {
	t       *testing.T
	dir     string
	dataDir string
	cluster string
	metrics string
	cmd     *exec.Cmd
	runs    int
	addr    string
}

func newE2E(t *testing.T, spares int, bootDelay string, r e2eRole) *e2e {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	dir := t.TempDir()
	e := &e2e{t: t, dir: dir, dataDir: filepath.Join(dir, ".roster"), cluster: fmt.Sprintf("e2e%06d", rand.IntN(1000000)), metrics: filepath.Join(dir, "metrics-web")}
	if r.LostAfter == "" {
		r.LostAfter = "1500ms"
	}
	if r.ProvisionTO == "" {
		r.ProvisionTO = "60s"
	}
	if r.ProvisionDelay == "" {
		r.ProvisionDelay = "0s"
	}
	scale := ""
	if r.Scale {
		scale = `
  scale {
    metric        = "load"
    up_above      = 0.75
    down_below    = 0.25
    window        = "1s"
    cooldown_up   = "1s"
    cooldown_down = "1s"
  }`
	}
	cfg := fmt.Sprintf(`cluster  = %q
data_dir = ".roster"
spares   = %d
roles    = ["roles/*.hcl"]
queue "local" {}
provider "local" {
  boot_delay = %q
}
balancer "none" "front" {}
api {
  address = "127.0.0.1:0"
}
agent {
  spare_heartbeat = "500ms"
}
`, e.cluster, spares, bootDelay)
	role := fmt.Sprintf(`role "web" {
  plugin = "static"
  reuse  = %t
  count {
    min = %d
    max = %d
  }%s
  health {
    interval        = "250ms"
    timeout         = "2s"
    unhealthy_after = 3
    lost_after      = %q
  }
  provision {
    timeout = %q
  }
  drain {
    timeout = "2s"
  }
  register {
    balancer = "front"
    endpoint = "http"
  }
  config {
    metrics_file    = %q
    provision_delay = %q
  }
}
`, r.Reuse, r.Min, r.Max, scale, r.LostAfter, r.ProvisionTO, e.metrics, r.ProvisionDelay)
	must(t, os.MkdirAll(filepath.Join(dir, "roles"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "roster.hcl"), []byte(cfg), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "roles", "web.hcl"), []byte(role), 0o644))
	e.setMetrics("load 0.5")
	t.Cleanup(e.cleanup)
	return e
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// start runs an orchestrator process and waits for its API.
func (e *e2e) start() {
	e.t.Helper()
	e.runs++
	_ = os.Remove(filepath.Join(e.dataDir, APIAddrFile))
	logf, err := os.Create(filepath.Join(e.dir, fmt.Sprintf("orchestrator-%d.log", e.runs)))
	must(e.t, err)
	cmd := exec.Command(os.Args[0], "orchestrator", "-config", filepath.Join(e.dir, "roster.hcl"), "-log-level", "debug")
	cmd.Dir = e.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	must(e.t, cmd.Start())
	logf.Close()
	e.cmd = cmd
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join(e.dataDir, APIAddrFile))
		if err == nil && len(bytes.TrimSpace(b)) > 0 {
			e.addr = strings.TrimSpace(string(b))
			var st orchestrator.Status
			if e.tryGet("/v1/status", &st) == nil && st.Epoch > 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("orchestrator did not start; log:\n%s", e.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill SIGKILLs the orchestrator.
func (e *e2e) kill() {
	if e.cmd == nil {
		return
	}
	_ = e.cmd.Process.Kill()
	_ = e.cmd.Wait()
	e.cmd = nil
}

// cleanup kills the orchestrator and every process of the cluster's
// machines (agents and their plugins, each machine a session).
func (e *e2e) cleanup() {
	e.kill()
	// Terminate through the provider, as the orchestrator would: it also
	// removes each machine's cgroup and whatever ran in it.
	if lp, err := localprov.New(localprov.Options{DataDir: e.dataDir, AgentArgs: func(string) []string { return nil }}); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if ms, err := lp.List(ctx, nil); err == nil {
			for _, m := range ms {
				_ = lp.Terminate(ctx, m.ID)
			}
		}
		cancel()
		_ = lp.Close()
	}
	for _, pid := range agentPids(e.cluster, "") {
		if sid, err := sessionOf(pid); err == nil && sid > 0 {
			for _, p := range sessionMembers(sid) {
				_ = syscall.Kill(p, syscall.SIGKILL)
			}
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if e.t.Failed() {
		e.t.Logf("orchestrator log:\n%s", e.log())
	}
}

func (e *e2e) log() string {
	var b strings.Builder
	for i := 1; i <= e.runs; i++ {
		data, _ := os.ReadFile(filepath.Join(e.dir, fmt.Sprintf("orchestrator-%d.log", i)))
		lines := strings.Split(string(data), "\n")
		if len(lines) > 150 {
			lines = lines[len(lines)-150:]
		}
		fmt.Fprintf(&b, "--- run %d ---\n%s\n", i, strings.Join(lines, "\n"))
	}
	return b.String()
}

func (e *e2e) tryGet(path string, v any) error {
	resp, err := http.Get("http://" + e.addr + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func (e *e2e) status() orchestrator.Status {
	e.t.Helper()
	var st orchestrator.Status
	if err := e.tryGet("/v1/status?limit=1000", &st); err != nil {
		e.t.Fatal(err)
	}
	return st
}

func (e *e2e) events() []orchestrator.Event {
	e.t.Helper()
	var evs []orchestrator.Event
	if err := e.tryGet("/v1/events?limit=1000", &evs); err != nil {
		e.t.Fatal(err)
	}
	return evs
}

// waitFor polls the API until cond holds, failing after d.
func (e *e2e) waitFor(what string, d time.Duration, cond func(orchestrator.Status) bool) orchestrator.Status {
	e.t.Helper()
	deadline := time.Now().Add(d)
	for {
		var st orchestrator.Status
		err := e.tryGet("/v1/status", &st)
		if err == nil && cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			b, _ := json.MarshalIndent(st, "", "  ")
			e.t.Fatalf("timed out after %s waiting for %s (last error %v); status:\n%s", d, what, err, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// setMetrics replaces the metrics file atomically: `name value` lines.
func (e *e2e) setMetrics(lines ...string) {
	e.t.Helper()
	tmp := e.metrics + ".tmp"
	must(e.t, os.WriteFile(tmp, []byte(strings.Join(lines, "\n")+"\n"), 0o644))
	must(e.t, os.Rename(tmp, e.metrics))
}

func (e *e2e) hasEvent(kind, substr string) bool {
	return e.hasEventMatching(kind, regexp.QuoteMeta(substr))
}

// hasEventMatching says whether an event of kind has a message matching
// the regular expression re.
func (e *e2e) hasEventMatching(kind, re string) bool {
	rx := regexp.MustCompile(re)
	for _, ev := range e.events() {
		if ev.Kind == kind && rx.MatchString(ev.Message) {
			return true
		}
	}
	return false
}

func readyServers(st orchestrator.Status) []orchestrator.ServerView {
	var out []orchestrator.ServerView
	for _, s := range st.Servers {
		if s.State == orchestrator.ServerReady {
			out = append(out, s)
		}
	}
	return out
}

// pool says the role has exactly n servers, all ready, and the spare pool
// has `spares` idle machines and none launching.
func pool(n, spares int) func(orchestrator.Status) bool {
	return func(st orchestrator.Status) bool {
		return len(st.Servers) == n && len(readyServers(st)) == n && st.Spares.Idle == spares && st.Spares.Launching == 0
	}
}

// agentPids lists the pids of the cluster's agent processes (of one machine
// when machine is set), from /proc.
func agentPids(cluster, machine string) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) < 2 || args[1] != "agent" || !containsPair(args, "-cluster", cluster) {
			continue
		}
		if machine != "" && !containsPair(args, "-machine-id", machine) {
			continue
		}
		if st, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "stat")); err == nil && isZombie(string(st)) {
			continue
		}
		out = append(out, pid)
	}
	sort.Ints(out)
	return out
}

func containsPair(args []string, k, v string) bool {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == k && args[i+1] == v {
			return true
		}
	}
	return false
}

func isZombie(stat string) bool {
	i := strings.LastIndexByte(stat, ')')
	return i > 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}

func sessionOf(pid int) (int, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	f := strings.Fields(s[i+1:])
	if len(f) < 4 {
		return 0, fmt.Errorf("short stat")
	}
	return strconv.Atoi(f[3])
}

func sessionMembers(sid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		if s, err := sessionOf(pid); err == nil && s == sid {
			out = append(out, pid)
		}
	}
	return out
}

// machineIDs returns the ids of the machines the orchestrator knows.
func machineIDs(st orchestrator.Status) []string {
	var out []string
	for _, m := range st.Machines {
		out = append(out, m.ID)
	}
	sort.Strings(out)
	return out
}

// runningMachines returns the ids of the machines whose agent runs.
func (e *e2e) runningMachines() []string {
	var out []string
	for _, pid := range agentPids(e.cluster, "") {
		b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
		args := strings.Split(string(b), "\x00")
		for i := 0; i+1 < len(args); i++ {
			if args[i] == "-machine-id" {
				out = append(out, args[i+1])
			}
		}
	}
	sort.Strings(out)
	return out
}

func (e *e2e) queues() []string {
	e.t.Helper()
	q, err := local.Open(filepath.Join(e.dataDir, "queue"), local.Options{})
	must(e.t, err)
	defer q.Close()
	names, err := q.ListQueues(context.Background(), protocol.ServerQueuePrefix(e.cluster))
	must(e.t, err)
	sort.Strings(names)
	return names
}

func serverQueues(st orchestrator.Status) []string {
	var out []string
	for _, s := range st.Servers {
		out = append(out, s.Queue)
	}
	sort.Strings(out)
	return out
}

func TestE2EBaselineScaleUpDownAndSpareRefill(t *testing.T) {
	e := newE2E(t, 1, "0s", e2eRole{Min: 1, Max: 2, Scale: true})
	e.start()
	st := e.waitFor("baseline: 1 ready server and 1 spare", 60*time.Second, pool(1, 1))
	spare := ""
	for _, m := range st.Machines {
		if m.State == orchestrator.MachineSpare {
			spare = m.ID
		}
	}

	// roster status prints the same view from the API.
	var out, errb bytes.Buffer
	if code := run([]string{"status", "-address", e.addr}, &out, &errb); code != 0 || !strings.Contains(out.String(), "web-1") || !strings.Contains(out.String(), "spares: 1 idle") {
		t.Errorf("roster status: exit %d\n%s%s", code, out.String(), errb.String())
	}

	e.setMetrics("load 0.95")
	st = e.waitFor("scale up to 2, the spare pool refilled", 60*time.Second, pool(2, 1))
	// The window's average may still hold a sample of 0.5: the reason
	// names whatever it was, above up_above.
	if !e.hasEventMatching("scale", `^web: 1 → 2, load 0\.(7[6-9]|[89]\d) > 0\.75 over 1s$`) {
		t.Errorf("no scale-up event with its reason: %+v", e.events())
	}
	// The spare became a server, and a new spare took its place.
	usedSpare := false
	for _, s := range st.Servers {
		usedSpare = usedSpare || s.Machine == spare
	}
	if !usedSpare {
		t.Errorf("the new server did not use the spare %s: %+v", spare, st.Servers)
	}
	// Refilled by launching exactly one machine: two at the start (the
	// baseline server's and the spare), one after the spare was used.
	launches := 0
	for _, ev := range e.events() {
		if ev.Kind == "launch" {
			launches++
		}
	}
	if launches != 3 {
		t.Errorf("%d machine launches, want 3: %+v", launches, e.events())
	}

	e.setMetrics("load 0.05")
	st = e.waitFor("scale down to 1 with drain", 60*time.Second, pool(1, 1))
	if !e.hasEvent("scale", "web: 2 → 1, load") || !e.hasEvent("halt", "") || !e.hasEvent("halted", "") {
		t.Errorf("no scale-down, halt and halted events: %+v", e.events())
	}
	// The halted server's machine is gone, the others run.
	waitUntil(t, "machines and agent processes to match", 20*time.Second, func() bool {
		return slicesEqual(e.runningMachines(), machineIDs(e.status()))
	})
	if got, want := e.queues(), serverQueues(e.status()); !slicesEqual(got, want) {
		t.Errorf("queues = %v, want %v", got, want)
	}
}

func TestE2EAgentKilledIsReplaced(t *testing.T) {
	e := newE2E(t, 0, "0s", e2eRole{Min: 1, Max: 1, LostAfter: "1s"})
	e.start()
	st := e.waitFor("baseline", 60*time.Second, pool(1, 0))
	victim := st.Servers[0]
	pids := agentPids(e.cluster, victim.Machine)
	if len(pids) != 1 {
		t.Fatalf("agent pids of %s: %v", victim.Machine, pids)
	}
	killed := time.Now()
	must(t, syscall.Kill(pids[0], syscall.SIGKILL))
	// lost_after (1s) plus one health interval plus one reconcile pass,
	// with room for a loaded machine.
	e.waitFor("the lost server's removal", 1*time.Second+250*time.Millisecond+time.Second+5*time.Second, func(st orchestrator.Status) bool {
		for _, s := range st.Servers {
			if s.Name == victim.Name {
				return false
			}
		}
		return true
	})
	t.Logf("lost server detected %s after SIGKILL", time.Since(killed).Round(10*time.Millisecond))
	st = e.waitFor("a replacement", 60*time.Second, pool(1, 0))
	if st.Servers[0].Name == victim.Name || st.Servers[0].Replaces != victim.Name {
		t.Errorf("replacement = %+v, want a new server replacing %s", st.Servers[0], victim.Name)
	}
	if !e.hasEvent("lost", victim.Name+": no heartbeat") {
		t.Errorf("no lost event: %+v", e.events())
	}
	waitUntil(t, "the dead machine forgotten", 20*time.Second, func() bool {
		for _, id := range machineIDs(e.status()) {
			if id == victim.Machine {
				return false
			}
		}
		return true
	})
}

func TestE2EOrchestratorKilledMidCommission(t *testing.T) {
	e := newE2E(t, 1, "0s", e2eRole{Min: 2, Max: 2, ProvisionDelay: "3s"})
	e.start()
	e.waitFor("a server provisioning", 60*time.Second, func(st orchestrator.Status) bool {
		for _, s := range st.Servers {
			if s.State == orchestrator.ServerProvisioning {
				return true
			}
		}
		return false
	})
	e.kill()
	// While it is down, provisioning finishes and ready reports wait on
	// the orchestrator's queue.
	time.Sleep(500 * time.Millisecond)
	e.start()
	st := e.waitFor("both servers ready after the restart", 60*time.Second, pool(2, 1))
	names := []string{st.Servers[0].Name, st.Servers[1].Name}
	if !slicesEqual(names, []string{"web-1", "web-2"}) {
		t.Errorf("servers after restart = %v, want web-1 and web-2 (no duplicate)", names)
	}
	if st.Epoch != 2 {
		t.Errorf("epoch = %d, want 2", st.Epoch)
	}
	for _, ev := range e.events() {
		if ev.Kind == "lost" || ev.Kind == "abandon" {
			t.Errorf("a server was wrongly given up after the restart: %s", ev.Message)
		}
	}
	waitUntil(t, "no orphaned machine", 20*time.Second, func() bool {
		return slicesEqual(e.runningMachines(), machineIDs(e.status()))
	})
	if got, want := e.queues(), serverQueues(e.status()); !slicesEqual(got, want) {
		t.Errorf("queues = %v, want %v (no orphan)", got, want)
	}
}

func TestE2ECommissionDeliveredTwice(t *testing.T) {
	e := newE2E(t, 1, "2s", e2eRole{Min: 1, Max: 1})
	e.start()
	// Both machines (one for the commission, one spare) boot for 2s; take
	// the commission off the global queue meanwhile and put the very same
	// sealed message back twice: a duplicate delivery.
	q, err := local.Open(filepath.Join(e.dataDir, "queue"), local.Options{})
	must(t, err)
	defer q.Close()
	ctx := context.Background()
	global := protocol.GlobalQueue(e.cluster)
	var body string
	deadline := time.Now().Add(10 * time.Second)
	for body == "" && time.Now().Before(deadline) {
		msgs, err := q.Receive(ctx, global, queue.ReceiveOptions{WaitTime: time.Second, VisibilityTimeout: 5 * time.Minute})
		must(t, err)
		for _, m := range msgs {
			body = m.Body
			must(t, q.DeleteMessage(ctx, global, m.Receipt))
		}
	}
	if body == "" {
		t.Fatal("no commission on the global queue")
	}
	if st := e.status(); st.Spares.Launching != 2 {
		t.Fatalf("the machines booted before the duplicate was in place: %+v", st.Spares)
	}
	for i := 0; i < 2; i++ {
		_, err := q.Send(ctx, global, body)
		must(t, err)
	}
	st := e.waitFor("one server and one spare", 60*time.Second, pool(1, 1))
	// The spare that lost the race gives up on its grant and stays a
	// spare: still one server, both agents alive.
	time.Sleep(3 * time.Second)
	st2 := e.status()
	if !pool(1, 1)(st2) || st2.Servers[0].Name != "web-1" || st.Servers[0].Machine != st2.Servers[0].Machine {
		t.Errorf("after the duplicate: %+v", st2)
	}
	if got := e.runningMachines(); len(got) != 2 || !slicesEqual(got, machineIDs(st2)) {
		t.Errorf("running machines = %v, want the 2 known %v", got, machineIDs(st2))
	}
}

func TestE2EProvisionTimeoutAbandoned(t *testing.T) {
	// A frozen agent sends no heartbeats either: with lost_after longer
	// than the provision deadline, the deadline is what gives up on it.
	e := newE2E(t, 0, "0s", e2eRole{Min: 1, Max: 1, LostAfter: "30s", ProvisionTO: "1500ms", ProvisionDelay: "1h"})
	e.start()
	var first orchestrator.ServerView
	e.waitFor("web-1 provisioning", 60*time.Second, func(st orchestrator.Status) bool {
		for _, s := range st.Servers {
			if s.Name == "web-1" && s.State == orchestrator.ServerProvisioning {
				first = s
				return true
			}
		}
		return false
	})
	// The agent would report its own provision timeout; freeze it instead,
	// as a machine that hangs would: only the orchestrator's deadline is
	// left to give up on web-1.
	pids := agentPids(e.cluster, first.Machine)
	if len(pids) != 1 {
		t.Fatalf("agent pids of %s: %v", first.Machine, pids)
	}
	must(t, syscall.Kill(pids[0], syscall.SIGSTOP))
	e.waitFor("web-1 abandoned and replaced", 60*time.Second, func(st orchestrator.Status) bool {
		for _, s := range st.Servers {
			if s.Name == "web-1" {
				return false
			}
		}
		return len(st.Servers) == 1
	})
	if !e.hasEvent("abandon", "web-1: not ready within provision.timeout 1.5s") || !e.hasEvent("commission", "replacing web-1") {
		t.Errorf("events: %+v", e.events())
	}
	for _, name := range e.queues() {
		if name == first.Queue {
			t.Errorf("the abandoned server's queue %s still exists", name)
		}
	}
	waitUntil(t, "the abandoned machine terminated", 30*time.Second, func() bool {
		return len(agentPids(e.cluster, first.Machine)) == 0
	})
}

func TestE2EReuseReturnsMachineToSpares(t *testing.T) {
	e := newE2E(t, 1, "0s", e2eRole{Min: 1, Max: 2, Scale: true, Reuse: true})
	e.start()
	e.waitFor("baseline", 60*time.Second, pool(1, 1))
	e.setMetrics("load 0.95")
	e.waitFor("scaled up", 60*time.Second, pool(2, 1))
	e.setMetrics("load 0.05")
	e.waitFor("scaled down", 60*time.Second, func(st orchestrator.Status) bool { return len(st.Servers) == 1 && len(readyServers(st)) == 1 })
	var halted orchestrator.Event
	waitUntil(t, "the reuse event", 30*time.Second, func() bool {
		for _, ev := range e.events() {
			if ev.Kind == "reuse" {
				halted = ev
				return true
			}
		}
		return false
	})
	st := e.waitFor("the reused machine among the spares", 30*time.Second, func(st orchestrator.Status) bool {
		for _, m := range st.Machines {
			if m.ID == halted.Machine && m.State == orchestrator.MachineSpare {
				return st.Spares.Idle == 1
			}
		}
		return false
	})
	if len(agentPids(e.cluster, halted.Machine)) != 1 {
		t.Errorf("the reused machine's agent %s does not run", halted.Machine)
	}
	_ = st
}

func waitUntil(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func slicesEqual(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	a, b = append([]string(nil), a...), append([]string(nil), b...)
	sort.Strings(a)
	sort.Strings(b)
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestE2EUpDrainsEverythingOnInterrupt(t *testing.T) {
	e := newE2E(t, 1, "0s", e2eRole{Min: 2, Max: 2})
	var out bytes.Buffer
	cmd := exec.Command(os.Args[0], "up", "-plain", filepath.Join(e.dir, "roster.hcl"))
	cmd.Dir = e.dir
	sb := &syncBuffer{b: &out}
	cmd.Stdout, cmd.Stderr = sb, sb
	must(t, cmd.Start())
	exited := make(chan error, 1)
	waited := make(chan struct{})
	go func() {
		exited <- cmd.Wait()
		close(waited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-waited
	})
	deadline := time.Now().Add(30 * time.Second)
	for e.addr == "" {
		if b, err := os.ReadFile(filepath.Join(e.dataDir, APIAddrFile)); err == nil && len(bytes.TrimSpace(b)) > 0 {
			e.addr = strings.TrimSpace(string(b))
		} else if time.Now().After(deadline) {
			t.Fatal("roster up did not start its API")
		} else {
			time.Sleep(50 * time.Millisecond)
		}
	}
	e.waitFor("2 servers and a spare", 60*time.Second, pool(2, 1))
	if n := len(agentPids(e.cluster, "")); n != 3 {
		t.Fatalf("%d agents run, want 3", n)
	}
	must(t, cmd.Process.Signal(syscall.SIGINT))
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("roster up exited with %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("roster up did not stop within 60s of SIGINT")
	}
	text := out.String()
	for _, want := range []string{"web-1: halted (shutting down)", "web-2: halted (shutting down)", "roster up: stopped"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "did not halt in time") {
		t.Errorf("machines had to be terminated without a halt:\n%s", text)
	}
	if pids := agentPids(e.cluster, ""); len(pids) != 0 {
		t.Errorf("agents left behind: %v", pids)
	}
	// Nor plugin processes: no process works in this test's machines.
	ents, _ := os.ReadDir("/proc")
	for _, ent := range ents {
		if link, err := os.Readlink(filepath.Join("/proc", ent.Name(), "cwd")); err == nil && strings.HasPrefix(link, e.dataDir) {
			t.Errorf("process %s left behind in %s", ent.Name(), link)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for the two writers of a command.
type syncBuffer struct {
	mu sync.Mutex
	b  *bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
