//go:build loadtest

package main

// The lamp example under load (docs/loadtest.md): `roster up` runs
// examples/lamp with real apache, memcached, PostgreSQL and haproxy; wrk
// pushes the web pool's busy_ratio above up_above through haproxy, the pool
// grows, the load drops and the pool shrinks back to min, and not one
// request may fail meanwhile. Run it with `make loadtest` (which also
// writes docs/loadtest.md's results and docs/loadtest.svg) or
//
//	go test -tags loadtest -count=1 -run TestLoadLamp -timeout 15m ./cmd/roster/
//
// Set ROSTER_LOADTEST_DOCS to a directory holding loadtest.md to write the
// results there.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rosterhq/roster/cmd/roster/internal/loadtest"
	"github.com/rosterhq/roster/core/orchestrator"
)

// The load: what each phase runs through haproxy. work_ms makes every
// request hold its apache worker 50 ms, as a page waiting on a backend
// would, so that busy workers follow the requests in flight and the two
// shared cores are not what is measured.
const (
	loadPath         = "/?work_ms=50"
	loadConnections  = 16 // wrk, during the load: 16 + the probe's 2 fill 2.25 servers of 8 workers
	coolConnections  = 1  // wrk, after it: with the probe, about 0.1 of 3 servers
	probeConnections = 2
	sampleEvery      = time.Second
	p99Over          = 5 * time.Second // the probe's p99 is over the last 5 s
)

type lampRun struct {
	t        *testing.T
	dir      string // the example's copy
	dataDir  string
	cluster  string
	front    string // haproxy's frontend host:port
	api      string
	up       *exec.Cmd
	upDone   chan error
	upOut    *os.File
	start    time.Time
	minPool  int
	maxPool  int
	upAbove  float64
	downBlow float64
}

func TestLoadLamp(t *testing.T) {
	for _, bin := range []string{"wrk", "haproxy", "apache2", "memcached"} {
		if _, err := exec.LookPath(bin); err != nil {
			if _, err2 := os.Stat("/usr/sbin/" + bin); err2 != nil {
				t.Fatalf("%s is not installed: run make test-deps", bin)
			}
		}
	}
	r := newLampRun(t)
	r.startUp()

	// The baseline: the db, two web servers registered with haproxy, a
	// spare.
	r.waitStatus("the baseline (db ready, web at min and registered, a spare)", 5*time.Minute, func(st orchestrator.Status) bool {
		web, db := roleView(st, "web"), roleView(st, "db")
		return web != nil && db != nil && db.Ready == 1 && web.Ready == r.minPool && web.Current == r.minPool &&
			registered(st, "web") == r.minPool && st.Spares.Idle >= 1
	})
	body := r.get(loadPath)
	if !strings.Contains(body, "greeting: Hello from the db role") || !strings.Contains(body, "visits: ") {
		t.Fatalf("the lamp page through haproxy:\n%s", body)
	}

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var wg sync.WaitGroup
	probe := &loadtest.Probe{URL: "http://" + r.front + loadPath, Concurrency: probeConnections, Timeout: 10 * time.Second,
		Server: func(_ *http.Response, b []byte) string { return field(string(b), "server") }}
	sampler := &lampSampler{r: r}
	wg.Add(3)
	go func() { defer wg.Done(); probe.Run(ctx) }()
	go func() { defer wg.Done(); sampler.run(ctx) }()
	go func() { defer wg.Done(); sampler.checkRoutes(ctx) }()

	var phases []loadtest.PhaseResult
	var marks []loadtest.Phase

	// Baseline traffic: the probe alone.
	from := time.Now()
	time.Sleep(10 * time.Second)
	phases = append(phases, r.phase("baseline (probe only)", from, time.Now(), 0, loadtest.WrkResult{}, probe, sampler))
	marks = append(marks, loadtest.Phase{Name: "baseline", From: from.Sub(r.start), To: time.Since(r.start), Shade: "#eeeeee"})

	// The load: until the pool has grown and then held for a while.
	from = time.Now()
	wrk := r.startWrk(loadConnections)
	grewAt := time.Time{}
	r.waitStatus("the web pool to grow and settle under load", 4*time.Minute, func(st orchestrator.Status) bool {
		web := roleView(st, "web")
		if web == nil {
			return false
		}
		if web.Ready > r.minPool && grewAt.IsZero() {
			grewAt = time.Now()
		}
		last := web.LastChange
		settled := !grewAt.IsZero() && web.Ready == web.Current && time.Since(last) > 25*time.Second
		return settled || (web.Ready == r.maxPool && web.Current == r.maxPool && time.Since(last) > 10*time.Second)
	})
	res := r.stopWrk(wrk)
	phases = append(phases, r.phase("load", from, time.Now(), loadConnections, res, probe, sampler))
	marks = append(marks, loadtest.Phase{Name: fmt.Sprintf("load: wrk, %d connections", loadConnections), From: from.Sub(r.start), To: time.Since(r.start), Shade: "#fbe3d2"})

	// The load drops: the pool must shrink back to min, with traffic on.
	from = time.Now()
	wrk = r.startWrk(coolConnections)
	r.waitStatus("the web pool back to min", 4*time.Minute, func(st orchestrator.Status) bool {
		web := roleView(st, "web")
		if web == nil || web.Ready != r.minPool || web.Current != r.minPool {
			return false
		}
		for _, s := range st.Servers {
			if s.Role == "web" && s.State != orchestrator.ServerReady {
				return false
			}
		}
		return true
	})
	time.Sleep(5 * time.Second) // traffic on the settled pool
	res = r.stopWrk(wrk)
	phases = append(phases, r.phase("after the load", from, time.Now(), coolConnections, res, probe, sampler))
	marks = append(marks, loadtest.Phase{Name: fmt.Sprintf("after: wrk, %d connection", coolConnections), From: from.Sub(r.start), To: time.Since(r.start), Shade: "#e3eef8"})

	stop()
	wg.Wait()
	results := probe.Results()
	samples := sampler.samples(results)
	events := r.events(results)

	// Everything stops with roster up, haproxy included.
	r.interrupt()

	rep := loadtest.Report{
		Command: "make loadtest", When: time.Now(), Machine: machineDesc(),
		Phases: phases, ProbeConnections: probeConnections, Events: events,
		Samples: samples, SeriesEvery: 10 * time.Second, Image: "loadtest.svg",
	}
	all := loadtest.Summarize(results, time.Time{}, time.Time{})
	rep.Probe = &all
	r.writeResults(rep, loadtest.Chart{
		Title: "examples/lamp under load: wrk through haproxy, the web pool scaling on busy_ratio",
		Subtitle: fmt.Sprintf("%d shared CPU cores; apache prefork, 8 workers per server; every request held 50 ms (work_ms); p99 over the last %s",
			runtime.NumCPU(), p99Over),
		Samples: samples, Phases: marks, Metric: "busy_ratio", UpAbove: r.upAbove, DownBelow: r.downBlow,
		Min: r.minPool, Max: r.maxPool, LatencyNote: "p99 latency through haproxy, ms (Go probe)",
	})

	// The behaviour: the pool grew, shrank back, and nothing failed.
	tot := rep.Totals()
	if tot.PoolPeak <= r.minPool {
		t.Errorf("the pool never grew: peak %d ready servers (min %d)", tot.PoolPeak, r.minPool)
	}
	if tot.PoolEnd != r.minPool {
		t.Errorf("the pool ended at %d ready servers, want min %d", tot.PoolEnd, r.minPool)
	}
	if n := tot.Wrk.Non2xx(); n != 0 {
		t.Errorf("wrk: %d responses were not 2xx: %v", n, tot.Wrk.Statuses)
	}
	if n := tot.Wrk.SocketErrors(); n != 0 {
		t.Errorf("wrk: %d socket errors (connect %d, read %d, write %d)", n, tot.Wrk.Connect, tot.Wrk.Read, tot.Wrk.Write)
	}
	if tot.Wrk.Timeout != 0 {
		t.Errorf("wrk: %d timeouts", tot.Wrk.Timeout)
	}
	if tot.Wrk.Requests == 0 {
		t.Error("wrk sent no request")
	}
	if tot.Probe.Failed != 0 {
		for _, x := range results {
			if !x.OK() {
				t.Logf("probe failure at +%s: status %d %s (server %q)", x.At.Sub(r.start).Round(time.Millisecond), x.Status, x.Err, x.Server)
			}
		}
		t.Errorf("probe: %d of %d requests failed", tot.Probe.Failed, tot.Probe.Requests)
	}
	sampler.mu.Lock()
	defer sampler.mu.Unlock()
	for _, v := range sampler.violations {
		t.Errorf("balancer order: %s", v)
	}
	if sampler.halting == 0 {
		t.Log("no server was seen halting by the route check (drains were quick); the order is still checked by the zero-error count")
	}
}

func newLampRun(t *testing.T) *lampRun {
	t.Helper()
	base := t.TempDir()
	// The db role (postgres) and apache's workers (www-data) must reach
	// their work directories: every directory above needs o+x.
	for d := base; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		must(t, os.Chmod(d, 0o711))
	}
	r := &lampRun{t: t, dir: filepath.Join(base, "lamp"), cluster: fmt.Sprintf("lamp%06d", rand.IntN(1000000))}
	r.dataDir = filepath.Join(r.dir, ".roster")
	src := "../../examples/lamp"
	must(t, filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			if d.Name() == ".roster" {
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(r.dir, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(r.dir, rel), b, 0o644)
	}))
	must(t, os.Mkdir(r.dataDir, 0o711))

	// Free ports instead of the example's fixed ones, and a cluster name
	// of its own, so that the run shares the host with anything.
	r.front = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	r.rewrite("roster.hcl", `cluster\s*=\s*"lamp"`, fmt.Sprintf("cluster = %q", r.cluster))
	r.rewrite("roster.hcl", `frontend\s*=\s*"127\.0\.0\.1:8080"`, fmt.Sprintf("frontend = %q", r.front))
	r.rewrite("roster.hcl", `address\s*=\s*"127\.0\.0\.1:7070"`, `address = "127.0.0.1:0"`)

	// The thresholds and bounds, from the example itself.
	web, err := os.ReadFile(filepath.Join(r.dir, "roles", "web.hcl"))
	must(t, err)
	r.minPool = int(number(t, web, "min"))
	r.maxPool = int(number(t, web, "max"))
	r.upAbove = number(t, web, "up_above")
	r.downBlow = number(t, web, "down_below")
	t.Cleanup(r.cleanup)
	return r
}

// rewrite replaces the one match of pattern in the copy's file.
func (r *lampRun) rewrite(file, pattern, repl string) {
	r.t.Helper()
	p := filepath.Join(r.dir, file)
	b, err := os.ReadFile(p)
	must(r.t, err)
	re := regexp.MustCompile(pattern)
	if n := len(re.FindAllIndex(b, -1)); n != 1 {
		r.t.Fatalf("examples/lamp/%s: %d matches of %s, want 1 (has the example changed?)", file, n, pattern)
	}
	must(r.t, os.WriteFile(p, re.ReplaceAll(b, []byte(repl)), 0o644))
}

func number(t *testing.T, src []byte, name string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^\s*` + name + `\s*=\s*([0-9.]+)`).FindSubmatch(src)
	if m == nil {
		t.Fatalf("examples/lamp/roles/web.hcl has no %s", name)
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	must(t, err)
	return v
}

func (r *lampRun) startUp() {
	r.t.Helper()
	var err error
	r.upOut, err = os.Create(filepath.Join(r.dir, "roster-up.out"))
	must(r.t, err)
	r.up = exec.Command(os.Args[0], "up", "-plain", "-log-level", "debug", "roster.hcl")
	r.up.Dir = r.dir
	r.up.Stdout, r.up.Stderr = r.upOut, r.upOut
	r.start = time.Now()
	must(r.t, r.up.Start())
	r.upDone = make(chan error, 1)
	go func() { r.upDone <- r.up.Wait() }()
	waitUntil(r.t, "roster up's API", time.Minute, func() bool {
		b, err := os.ReadFile(filepath.Join(r.dataDir, APIAddrFile))
		if err != nil || len(bytes.TrimSpace(b)) == 0 {
			return false
		}
		r.api = strings.TrimSpace(string(b))
		var st orchestrator.Status
		return r.getJSON("/v1/status", &st) == nil && st.Epoch > 0
	})
}

func (r *lampRun) getJSON(path string, v any) error {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + r.api + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func (r *lampRun) status() (orchestrator.Status, error) {
	var st orchestrator.Status
	err := r.getJSON("/v1/status?limit=1000", &st)
	return st, err
}

func (r *lampRun) waitStatus(what string, d time.Duration, cond func(orchestrator.Status) bool) {
	r.t.Helper()
	deadline := time.Now().Add(d)
	for {
		st, err := r.status()
		if err == nil && cond(st) {
			r.t.Logf("+%s %s", time.Since(r.start).Round(time.Second), what)
			return
		}
		select {
		case err := <-r.upDone:
			r.upDone <- err
			r.t.Fatalf("roster up exited (%v) while waiting for %s", err, what)
		default:
		}
		if time.Now().After(deadline) {
			b, _ := json.MarshalIndent(st, "", "  ")
			r.t.Fatalf("timed out after %s waiting for %s (last error %v); status:\n%s", d, what, err, b)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (r *lampRun) get(path string) string {
	r.t.Helper()
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + r.front + path)
	must(r.t, err)
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	if resp.StatusCode != http.StatusOK {
		r.t.Fatalf("GET %s through haproxy: %s\n%s", path, resp.Status, b.String())
	}
	return b.String()
}

type wrkRun struct {
	cmd  *exec.Cmd
	out  bytes.Buffer
	done chan error
}

func (r *lampRun) startWrk(conns int) *wrkRun {
	r.t.Helper()
	script := filepath.Join(r.dir, "statuses.lua")
	must(r.t, os.WriteFile(script, []byte(loadtest.StatusScript), 0o644))
	threads := min(2, conns)
	w := &wrkRun{done: make(chan error, 1)}
	// Far longer than needed: the test stops it with SIGINT, which makes
	// wrk print its summary.
	w.cmd = exec.Command("wrk", "-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns), "-d", "30m",
		"--timeout", "10s", "--latency", "-s", script, "http://"+r.front+loadPath)
	w.cmd.Stdout, w.cmd.Stderr = &w.out, &w.out
	must(r.t, w.cmd.Start())
	go func() { w.done <- w.cmd.Wait() }()
	r.t.Cleanup(func() {
		if w.cmd.ProcessState == nil {
			_ = w.cmd.Process.Kill()
		}
	})
	return w
}

func (r *lampRun) stopWrk(w *wrkRun) loadtest.WrkResult {
	r.t.Helper()
	_ = w.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-w.done:
	case <-time.After(30 * time.Second):
		_ = w.cmd.Process.Kill()
		<-w.done
		r.t.Fatalf("wrk did not stop on SIGINT:\n%s", w.out.String())
	}
	r.t.Logf("wrk:\n%s", w.out.String())
	res, err := loadtest.ParseWrk(w.out.String())
	if err != nil {
		r.t.Fatal(err)
	}
	return res
}

func (r *lampRun) phase(name string, from, to time.Time, conns int, w loadtest.WrkResult, p *loadtest.Probe, s *lampSampler) loadtest.PhaseResult {
	pr := loadtest.PhaseResult{Name: name, Duration: to.Sub(from), Connections: conns, Wrk: w,
		Probe: loadtest.Summarize(p.Results(), from, to)}
	s.mu.Lock()
	defer s.mu.Unlock()
	first := true
	for _, x := range s.raw {
		if x.at.Before(from) || x.at.After(to) {
			continue
		}
		if first {
			pr.PoolStart = x.ready
			first = false
		}
		pr.PoolPeak = max(pr.PoolPeak, x.ready)
		pr.PoolEnd = x.ready
	}
	return pr
}

// events lists the web pool's changes and when each new server first
// answered the probe through haproxy.
func (r *lampRun) events(results []loadtest.Result) []loadtest.Event {
	st, err := r.status()
	if err != nil {
		r.t.Logf("events: %v", err)
		return nil
	}
	firstSeen := map[string]time.Time{}
	for _, x := range results {
		// When the answer came: a request sent earlier may have waited in
		// haproxy's queue for the new server.
		if end := x.At.Add(x.Latency); x.OK() && x.Server != "" {
			if t, ok := firstSeen[x.Server]; !ok || end.Before(t) {
				firstSeen[x.Server] = end
			}
		}
	}
	var out []loadtest.Event
	for _, e := range st.Events {
		if e.Role != "web" || e.Time.Before(r.start) {
			continue
		}
		switch e.Kind {
		case "scale", "ready", "halted":
		default:
			continue
		}
		msg, _, _ := strings.Cut(e.Message, "; logs at ")
		if e.Kind == "ready" {
			msg, _, _ = strings.Cut(msg, " (")
			if t, ok := firstSeen[e.Server]; ok && t.After(e.Time) {
				msg += fmt.Sprintf("; the probe's first answer from it %s later", t.Sub(e.Time).Round(time.Millisecond))
			}
		}
		out = append(out, loadtest.Event{At: e.Time.Sub(r.start), Message: msg})
	}
	return out
}

// interrupt sends roster up its Ctrl-C and checks that everything stops,
// haproxy included.
func (r *lampRun) interrupt() {
	r.t.Helper()
	hpid := haproxyPid(r.dataDir, "front")
	if hpid == 0 {
		r.t.Error("no managed haproxy runs before the interrupt")
	}
	must(r.t, r.up.Process.Signal(syscall.SIGINT))
	select {
	case err := <-r.upDone:
		r.upDone <- err
		if err != nil {
			r.t.Errorf("roster up exited with %v", err)
		}
	case <-time.After(3 * time.Minute):
		r.t.Fatal("roster up did not stop within 3 minutes of SIGINT")
	}
	if hpid > 0 && syscall.Kill(hpid, 0) == nil {
		if stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", hpid)); err == nil && !isZombie(string(stat)) {
			r.t.Errorf("haproxy %d still runs after roster up stopped", hpid)
		}
	}
	if pids := agentPids(r.cluster, ""); len(pids) != 0 {
		r.t.Errorf("agents left behind: %v", pids)
	}
}

// cleanup stops whatever a failed run left: roster up (gracefully first),
// the cluster's agents with their sessions, haproxy.
func (r *lampRun) cleanup() {
	if r.up != nil && r.up.Process != nil {
		select {
		case err := <-r.upDone:
			r.upDone <- err
		default:
			_ = r.up.Process.Signal(syscall.SIGINT)
			select {
			case <-r.upDone:
			case <-time.After(2 * time.Minute):
				_ = r.up.Process.Kill()
				<-r.upDone
			}
		}
	}
	for _, pid := range agentPids(r.cluster, "") {
		if sid, err := sessionOf(pid); err == nil && sid > 0 {
			for _, p := range sessionMembers(sid) {
				_ = syscall.Kill(p, syscall.SIGKILL)
			}
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if pid := haproxyPid(r.dataDir, "front"); pid > 0 {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if r.upOut != nil {
		r.upOut.Close()
	}
	if r.t.Failed() {
		r.t.Logf("roster up's output:\n%s", tailFile(filepath.Join(r.dir, "roster-up.out"), 80))
		r.t.Logf("roster up's log:\n%s", tailFile(filepath.Join(r.dataDir, upLogFile), 200))
	}
}

func tailFile(p string, n int) string {
	b, _ := os.ReadFile(p)
	lines := strings.Split(string(b), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (r *lampRun) writeResults(rep loadtest.Report, chart loadtest.Chart) {
	r.t.Helper()
	var md bytes.Buffer
	must(r.t, rep.WriteMarkdown(&md))
	r.t.Logf("results:\n%s", md.String())
	dir := os.Getenv("ROSTER_LOADTEST_DOCS")
	if dir == "" {
		dir = r.dir
		must(r.t, os.WriteFile(filepath.Join(dir, "loadtest.md"), []byte("# results\n\n"+loadtest.BeginMarker+"\n"+loadtest.EndMarker+"\n"), 0o644))
	}
	f, err := os.Create(filepath.Join(dir, "loadtest.svg"))
	must(r.t, err)
	must(r.t, chart.WriteSVG(f))
	must(r.t, f.Close())
	must(r.t, loadtest.ReplaceSection(filepath.Join(dir, "loadtest.md"), md.Bytes()))
	r.t.Logf("wrote %s and %s", filepath.Join(dir, "loadtest.md"), filepath.Join(dir, "loadtest.svg"))
}

// lampSampler polls the API for the pool's size and busy ratio, and checks
// the balancer's routes against the servers' states.
type lampSampler struct {
	r *lampRun

	mu         sync.Mutex
	raw        []rawSample
	violations []string
	halting    int // halting servers seen by the route check
}

type rawSample struct {
	at             time.Time
	ready, current int
	busy, window   float64
}

func (s *lampSampler) run(ctx context.Context) {
	tick := time.NewTicker(sampleEvery)
	defer tick.Stop()
	for {
		if st, err := s.r.status(); err == nil {
			x := rawSample{at: time.Now(), busy: math.NaN(), window: math.NaN()}
			if web := roleView(st, "web"); web != nil {
				x.ready, x.current = web.Ready, web.Current
				if web.Average != nil {
					x.window = *web.Average
				}
			}
			sum, n := 0.0, 0
			for _, sv := range st.Servers {
				if v, ok := sv.Metrics["busy_ratio"]; ok && sv.Role == "web" && sv.State == orchestrator.ServerReady {
					sum += v
					n++
				}
			}
			if n > 0 {
				x.busy = sum / float64(n)
			}
			s.mu.Lock()
			s.raw = append(s.raw, x)
			s.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// checkRoutes compares, every 100 ms, the servers' states with haproxy's
// backend (read after the API, so that a route seen is one that existed
// after the state): a halting server must be out of haproxy already
// (DESIGN step 7: drained and deregistered before the halt), and a server
// ready and registered must be in it.
func (s *lampSampler) checkRoutes(ctx context.Context) {
	sock := filepath.Join(s.r.dataDir, "balancers", "front", "admin.sock")
	missing := map[string]int{}
	for ctx.Err() == nil {
		var servers []orchestrator.ServerView
		if err := s.r.getJSON("/v1/servers", &servers); err == nil {
			routes, err := haproxyServers(sock, "be_front")
			if err == nil {
				s.mu.Lock()
				for _, sv := range servers {
					if sv.Role != "web" {
						continue
					}
					switch {
					case sv.State == orchestrator.ServerHalting:
						s.halting++
						if routes[sv.Name] {
							s.violations = append(s.violations, fmt.Sprintf("+%s: %s is halting but haproxy still routes to it", time.Since(s.r.start).Round(time.Millisecond), sv.Name))
						}
					case sv.State == orchestrator.ServerReady && sv.Registered && !routes[sv.Name]:
						// Twice in a row: a scale-in may begin between the two reads.
						if missing[sv.Name]++; missing[sv.Name] == 2 {
							s.violations = append(s.violations, fmt.Sprintf("+%s: %s is ready and registered but not in haproxy", time.Since(s.r.start).Round(time.Millisecond), sv.Name))
						}
					default:
						missing[sv.Name] = 0
					}
				}
				s.mu.Unlock()
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// samples turns the raw samples and the probe's results into the plot's.
func (s *lampSampler) samples(results []loadtest.Result) []loadtest.Sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]loadtest.Sample, 0, len(s.raw))
	for _, x := range s.raw {
		st := loadtest.Summarize(results, x.at.Add(-p99Over), x.at)
		out = append(out, loadtest.Sample{At: x.at.Sub(s.r.start), Ready: x.ready, Current: x.current,
			Busy: x.busy, Window: x.window, P99: st.P99, Failed: st.Failed})
	}
	return out
}

// haproxyServers lists the servers of a backend through haproxy's runtime
// API.
func haproxyServers(sock, backend string) (map[string]bool, error) {
	c, err := net.DialTimeout("unix", sock, time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := fmt.Fprintf(c, "show servers state %s\n", backend); err != nil {
		return nil, err
	}
	out := map[string]bool{}
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		// "1" (the format's version), "# be_id be_name srv_id srv_name …".
		if len(f) < 4 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if f[1] == backend {
			out[f[3]] = true
		}
	}
	return out, sc.Err()
}

func roleView(st orchestrator.Status, name string) *orchestrator.RoleView {
	for i := range st.Roles {
		if st.Roles[i].Name == name {
			return &st.Roles[i]
		}
	}
	return nil
}

// field reads `name: value` from the lamp page.
func field(body, name string) string {
	for line := range strings.SplitSeq(body, "\n") {
		if v, ok := strings.CutPrefix(line, name+": "); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func machineDesc() string {
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	d := fmt.Sprintf("%d CPU cores shared with everything else on the host", runtime.NumCPU())
	if model != "" {
		d += " (" + model + ")"
	}
	return d
}
