package web

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rosterhq/roster/sdk"
	"github.com/rosterhq/roster/sdk/netutil"
	"github.com/rosterhq/roster/sdk/roletest"
)

// testSiteDir is the tests' own PHP site: a visit counter (index.php), the
// health page, a page that takes a second (slow.php) and one that prints
// the variables it is given (env.php).
const testSiteDir = "testdata/site"

// requireServices skips the test when apache2, memcached or (with php)
// mod_php and php-memcached are missing, except in CI, where it fails.
func requireServices(t testing.TB, php bool) {
	t.Helper()
	need := []string{apacheBinary, memcachedBinary, filepath.Join(apacheModules, "mod_mpm_event.so")}
	if php {
		m, _ := filepath.Glob(filepath.Join(apacheModules, "libphp*.so"))
		if len(m) == 0 {
			need = append(need, filepath.Join(apacheModules, "libphp*.so"))
		} else {
			mods, _ := filepath.Glob("/etc/php/*/mods-available/memcached.ini")
			if len(mods) == 0 {
				need = append(need, "php-memcached")
			}
		}
	}
	for _, p := range need {
		if _, err := os.Stat(p); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s missing: CI installs apache2 memcached libapache2-mod-php php-memcached (.ci/apt-packages)", p)
			}
			t.Skipf("%s missing: apt-get install -y apache2 memcached libapache2-mod-php php-memcached", p)
		}
	}
}

// testSite returns the test site's absolute path, for a file:// URL.
func testSite(t testing.TB) string {
	t.Helper()
	return mustAbs(t, testSiteDir)
}

func mustAbs(t testing.TB, p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func cfgMap(site string, extra map[string]any) map[string]any {
	m := map[string]any{
		"document_root": "file://" + site,
		"php":           true,
		"packages":      []any{"php-memcached"},
		"memcached_mb":  16,
		"health_path":   "/health.php",
	}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

// daemonPids returns the pids of every process of the server's daemons.
func daemonPids(t testing.TB, workDir string) []int {
	t.Helper()
	return roletest.DaemonPids(t, layoutOf(workDir).Run, apacheName, memcachedName)
}

func TestLifecycleWithRoletest(t *testing.T) {
	requireServices(t, true)
	site := testSite(t)
	var pids []int
	res := roletest.Run(t, New(), roletest.Case{
		Config:        cfgMap(site, nil),
		Server:        sdk.Server{WorkDir: roletest.WorkDir(t)},
		WantEndpoints: []string{"http", "memcached"},
		Check: func(t testing.TB, r *roletest.Result) {
			pids = daemonPids(t, r.Server.WorkDir)
			if len(pids) < 3 { // apache's parent, a worker, memcached
				t.Errorf("daemon processes %v: want apache's parent, its workers and memcached", pids)
			}
			base := "http://" + r.Endpoints["http"]
			var first, second string
			for i, out := range []*string{&first, &second} {
				code, body := roletest.Get(t, base+"/")
				if code != 200 {
					t.Fatalf("GET / #%d: %d %s", i, code, body)
				}
				*out = body
			}
			if !strings.Contains(first, "server: web-1") || !strings.Contains(first, "visits: 1") || !strings.Contains(second, "visits: 2") {
				t.Errorf("visit counter: first %q, second %q", first, second)
			}
			for _, m := range []string{"busy_workers", "idle_workers", "busy_ratio", "requests_per_second", "memcached_curr_connections", "memcached_hit_ratio"} {
				if _, ok := r.Health.Metrics[m]; !ok {
					t.Errorf("metric %s missing from %v", m, r.Health.Metrics)
				}
			}
			// The second health check sees the hit of the second visit.
			h, err := r.Role.HealthCheck(context.Background(), sdk.HealthCheckRequest{Server: r.Server, Config: r.Config, Endpoints: r.Endpoints})
			if err != nil || !h.Healthy {
				t.Fatalf("HealthCheck: %+v, %v", h, err)
			}
			if h.Metrics["busy_ratio"] != h.Metrics["busy_workers"]/150 || h.Metrics["memcached_hit_ratio"] != 0 {
				t.Errorf("metrics after two visits: %v", h.Metrics)
			}
			// One hit and one miss make a hit ratio of one half (the visit
			// counter only adds and increments, which are no lookups).
			mc, err := net.Dial("tcp", r.Endpoints["memcached"])
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(mc, "set k 0 0 1\r\nx\r\nget k\r\nget nokey\r\nquit\r\n")
			io.ReadAll(mc)
			mc.Close()
			h, err = r.Role.HealthCheck(context.Background(), sdk.HealthCheckRequest{Server: r.Server, Config: r.Config, Endpoints: r.Endpoints})
			if err != nil || h.Metrics["memcached_hit_ratio"] != 0.5 {
				t.Errorf("memcached_hit_ratio after a hit and a miss: %v, %v", h.Metrics, err)
			}
			// mod_status answers loopback only; the site cannot reach
			// memcached's port from outside either: it listens on 127.0.0.1.
			if code, _ := roletest.Get(t, base+StatusPath+"?auto"); code != 200 {
				t.Errorf("mod_status from loopback: %d", code)
			}
		},
	})
	if res.Drain.OpenConnections != 0 {
		t.Errorf("Drain left %d connections", res.Drain.OpenConnections)
	}
	names := map[string]bool{}
	for _, l := range res.Teardown.Logs {
		names[l.Name] = true
		if l.Name == "apache/error.log" {
			// AH00098: apache found its pid file overwritten, i.e. it shares
			// the name with the supervisor's.
			if b, err := os.ReadFile(l.Path); err == nil && strings.Contains(string(b), "AH00098") {
				t.Errorf("apache's error log reports a clobbered pid file:\n%s", b)
			}
		}
	}
	for _, n := range []string{"apache/access.log", "apache/error.log", "memcached/memcached.log"} {
		if !names[n] {
			t.Errorf("Teardown logs %v lack %s", res.Teardown.Logs, n)
		}
	}
	if len(res.Progress) < 4 || res.Progress[len(res.Progress)-1].Fraction != 1 {
		t.Errorf("progress %+v: want several steps ending at 1", res.Progress)
	}
	roletest.AssertExited(t, pids)
}

func TestConfigErrorsCaughtBySchema(t *testing.T) {
	cases := []struct{ name, hcl, want string }{
		{"missing document_root", `port = 0`, "document_root"},
		{"wrong type", "document_root = \"file:///x\"\nport = \"eighty\"", "number"},
		{"unknown attribute", "document_root = \"file:///x\"\nmemcache_mb = 3", "memcache_mb"},
		{"list of strings", "document_root = \"file:///x\"\npackages = \"php\"", "list"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			roletest.Run(t, New(), roletest.Case{ConfigHCL: c.hcl, WantConfigError: c.want})
		})
	}
}

func TestConfigErrorsCaughtByProvision(t *testing.T) {
	requireServices(t, true)
	cases := map[string]map[string]any{
		"port out of range": {"port": 70000},
		"mpm unknown":       {"mpm": "threaded"},
		"php with event":    {"mpm": "event"},
		"bad health_status": {"health_status": 42},
		"bad health_path":   {"health_path": "health"},
		"no memory":         {"memcached_mb": 0},
		"bad listen":        {"listen_address": "localhost"},
		"same ports":        {"port": 18080, "memcached_port": 18080},
		"bad package name":  {"packages": []any{"-o=evil"}},
		"bad sha256":        {"document_root_sha256": "abc"},
		"single file":       {"document_root": "file://" + mustAbs(t, testSiteDir+"/index.php")},
	}
	for name, extra := range cases {
		t.Run(name, func(t *testing.T) {
			roletest.Run(t, New(), roletest.Case{
				Config:             cfgMap("/nonexistent", extra),
				Server:             sdk.Server{WorkDir: roletest.WorkDir(t)},
				WantProvisionError: sdk.ErrInvalidConfig,
			})
		})
	}
}

func TestMissingPackageNamed(t *testing.T) {
	wd := roletest.WorkDir(t)
	_, err := New().Provision(context.Background(), sdk.ProvisionRequest{
		Server: sdk.Server{Name: "web-1", WorkDir: wd},
		Config: mustConfig(t, cfgMap("/nonexistent", map[string]any{"packages": []any{"roster-no-such-package"}})),
	})
	if !errors.Is(err, sdk.ErrNotFound) || !strings.Contains(err.Error(), "roster-no-such-package") {
		t.Fatalf("Provision = %v, want ErrNotFound naming the package", err)
	}
}

func mustConfig(t testing.TB, m map[string]any) sdk.Config {
	t.Helper()
	c, diags := roletest.DecodeMap(Schema(), m)
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	return c
}

func TestWrongSHA256Refused(t *testing.T) {
	requireServices(t, true)
	site := testSite(t)
	wd := roletest.WorkDir(t)
	roletest.Run(t, New(), roletest.Case{
		Config:             cfgMap(site, map[string]any{"document_root_sha256": strings.Repeat("0", 64)}),
		Server:             sdk.Server{WorkDir: wd},
		WantProvisionError: sdk.ErrChecksumMismatch,
	})
	if _, err := os.Stat(layoutOf(wd).Docroot); !errors.Is(err, os.ErrNotExist) {
		t.Error("a document root with the wrong digest was put in place")
	}
	if p := roletest.ProcessesMentioning(wd); len(p) > 0 {
		t.Errorf("processes left after a refused artifact: %v", p)
	}
}

func TestFailedProvisionLeavesNothing(t *testing.T) {
	requireServices(t, true)
	site := testSite(t)
	wd := roletest.WorkDir(t)
	extra := filepath.Join(wd, "broken.conf")
	os.WriteFile(extra, []byte("ThisIsNotADirective on\n"), 0o644)
	mcPort, err := netutil.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	role := New()
	srv := sdk.Server{Name: "web-1", WorkDir: wd}
	cfg := mustConfig(t, cfgMap(site, map[string]any{"apache_config": "file://" + extra, "memcached_port": mcPort}))
	_, err = role.Provision(context.Background(), sdk.ProvisionRequest{Server: srv, Config: cfg})
	if err == nil || !strings.Contains(err.Error(), "ThisIsNotADirective") {
		t.Fatalf("Provision = %v, want apache's complaint about the directive", err)
	}
	// memcached had started: it must be gone, and nothing of apache either.
	if p := append(roletest.ProcessesMentioning(wd), roletest.ProcessesMentioning("-p "+strconv.Itoa(mcPort))...); len(p) > 0 {
		t.Fatalf("processes left after a failed Provision: %v", p)
	}
	for range 2 {
		resp, err := role.Teardown(context.Background(), sdk.TeardownRequest{Server: srv, Config: cfg})
		if err != nil {
			t.Fatalf("Teardown after a failed Provision: %v", err)
		}
		if len(resp.Logs) == 0 {
			t.Error("Teardown after a failed Provision returned no logs")
		}
	}
}

func TestDrainWaitsForSlowRequest(t *testing.T) {
	requireServices(t, true)
	site := testSite(t)
	role := New()
	srv := sdk.Server{Name: "web-1", WorkDir: roletest.WorkDir(t)}
	cfg := mustConfig(t, cfgMap(site, nil))
	ctx := context.Background()
	prov, err := role.Provision(ctx, sdk.ProvisionRequest{Server: srv, Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { role.Teardown(context.Background(), sdk.TeardownRequest{Server: srv, Config: cfg}) })
	eps := prov.Endpoints
	pids := daemonPids(t, srv.WorkDir)

	slow := roletest.StartRequest(t, "http://"+eps["http"]+"/slow.php")
	// Wait until apache works on it.
	deadline := time.Now().Add(20 * time.Second)
	for {
		h, err := role.HealthCheck(ctx, sdk.HealthCheckRequest{Server: srv, Config: cfg, Endpoints: eps})
		if err != nil {
			t.Fatal(err)
		}
		if h.Metrics["busy_workers"] >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the slow request never showed as busy: %v", h.Metrics)
		}
		time.Sleep(5 * time.Millisecond)
	}
	drained, err := role.Drain(ctx, sdk.DrainRequest{Server: srv, Config: cfg, Endpoints: eps, Deadline: time.Now().Add(30 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if code, body := slow.AssertAnswered(t); code != 200 || body != "slow done\n" {
		t.Fatalf("slow request: %d %q; want it to complete during the drain", code, body)
	}
	if drained.OpenConnections != 0 {
		t.Fatalf("Drain: %d open connections", drained.OpenConnections)
	}
	// Apache stopped taking work: its port refuses connections.
	if c, err := net.DialTimeout("tcp", eps["http"], time.Second); err == nil {
		c.Close()
		t.Fatal("apache still accepts connections after Drain")
	}
	// memcached serves until Teardown.
	if _, err := memcachedStats(ctx, eps["memcached"]); err != nil {
		t.Fatalf("memcached after Drain: %v", err)
	}
	if _, err := role.Teardown(ctx, sdk.TeardownRequest{Server: srv, Config: cfg, Endpoints: eps}); err != nil {
		t.Fatal(err)
	}
	roletest.AssertExited(t, pids)
}

func TestDrainDeadline(t *testing.T) {
	requireServices(t, true)
	site := testSite(t)
	role := New()
	srv := sdk.Server{Name: "web-1", WorkDir: roletest.WorkDir(t)}
	cfg := mustConfig(t, cfgMap(site, nil))
	ctx := context.Background()
	prov, err := role.Provision(ctx, sdk.ProvisionRequest{Server: srv, Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { role.Teardown(context.Background(), sdk.TeardownRequest{Server: srv, Config: cfg}) })
	// A client that holds a request open: the headers never end.
	c, err := net.Dial("tcp", prov.Endpoints["http"])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /slow.php HTTP/1.1\r\nHost: x\r\n")
	port, _ := netutil.PortOf(prov.Endpoints["http"])
	waitFor(t, func() bool { n, _ := netutil.Established(port); return n >= 1 })
	drained, err := role.Drain(ctx, sdk.DrainRequest{Server: srv, Config: cfg, Endpoints: prov.Endpoints, Deadline: time.Now().Add(300 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	if drained.OpenConnections < 1 {
		t.Fatalf("Drain past its deadline reports %d open connections, want the held one", drained.OpenConnections)
	}
	pids := daemonPids(t, srv.WorkDir)
	if _, err := role.Teardown(ctx, sdk.TeardownRequest{Server: srv, Config: cfg, Endpoints: prov.Endpoints}); err != nil {
		t.Fatal(err)
	}
	roletest.AssertExited(t, pids)
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 20s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestTwoServersOneHostAndRelaunch(t *testing.T) {
	requireServices(t, true)
	site := testSite(t)
	role := New()
	cfg := mustConfig(t, cfgMap(site, nil))
	ctx := context.Background()
	srvs := []sdk.Server{{Name: "web-1", WorkDir: roletest.WorkDir(t)}, {Name: "web-2", WorkDir: roletest.WorkDir(t)}}
	eps := make([]sdk.Endpoints, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range srvs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := role.Provision(ctx, sdk.ProvisionRequest{Server: srvs[i], Config: cfg})
			eps[i], errs[i] = resp.Endpoints, err
		}()
	}
	wg.Wait()
	for i := range srvs {
		t.Cleanup(func() { role.Teardown(context.Background(), sdk.TeardownRequest{Server: srvs[i], Config: cfg}) })
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if eps[0]["http"] == eps[1]["http"] || eps[0]["memcached"] == eps[1]["memcached"] {
		t.Fatalf("two servers share ports: %v %v", eps[0], eps[1])
	}
	for i, e := range eps {
		_, body := roletest.Get(t, "http://"+e["http"]+"/")
		if !strings.Contains(body, "server: "+srvs[i].Name) || !strings.Contains(body, "visits: 1") {
			t.Errorf("%s answered %q: want its own name and its own counter", srvs[i].Name, body)
		}
	}

	// A relaunched plugin process has only the work directories.
	relaunched := New()
	var pids []int
	for i := range srvs {
		h, err := relaunched.HealthCheck(ctx, sdk.HealthCheckRequest{Server: srvs[i], Config: cfg})
		if err != nil || !h.Healthy {
			t.Fatalf("HealthCheck after relaunch of %s: %+v %v", srvs[i].Name, h, err)
		}
		pids = append(pids, daemonPids(t, srvs[i].WorkDir)...)
	}
	for i := range srvs {
		if _, err := relaunched.Teardown(ctx, sdk.TeardownRequest{Server: srvs[i], Config: cfg}); err != nil {
			t.Fatal(err)
		}
	}
	roletest.AssertExited(t, pids)
}

func TestUnhealthyAndExtraConfigAndEventMPM(t *testing.T) {
	requireServices(t, false)
	wd := roletest.WorkDir(t)
	site := filepath.Join(wd, "site")
	os.MkdirAll(site, 0o700) // private on purpose: Provision makes it readable
	os.WriteFile(filepath.Join(site, "index.html"), []byte("hello\n"), 0o600)
	conf := filepath.Join(wd, "extra.conf")
	os.WriteFile(conf, []byte("Header always set X-Roster-Extra yes\n"), 0o644)
	roletest.Run(t, New(), roletest.Case{
		Config: map[string]any{
			"document_root": "file://" + site,
			"apache_config": "file://" + conf,
			"health_path":   "/missing",
			"keep_alive":    false,
		},
		Server:        sdk.Server{WorkDir: roletest.WorkDir(t)},
		WantEndpoints: []string{"http", "memcached"},
		WantUnhealthy: true,
		Check: func(t testing.TB, r *roletest.Result) {
			if !strings.Contains(r.Health.Reason, "404") {
				t.Errorf("unhealthy reason %q: want the 404", r.Health.Reason)
			}
			// A client that would keep the connection alive: apache must
			// close it, since keep_alive = false.
			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			resp, err := (&http.Client{Transport: tr}).Get("http://" + r.Endpoints["http"] + "/")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != "hello\n" || resp.Header.Get("X-Roster-Extra") != "yes" || !resp.Close {
				t.Errorf("GET /: %q, headers %v", b, resp.Header)
			}
			code, status := roletest.Get(t, "http://"+r.Endpoints["http"]+StatusPath+"?auto")
			if code != 200 || !strings.Contains(status, "ServerMPM: event") {
				t.Errorf("mod_status: %d %q, want the event MPM", code, status)
			}
		},
	})
}

func TestDecodeDefaultsAndMPM(t *testing.T) {
	s, err := decode(mustConfig(t, map[string]any{"document_root": "file:///x"}))
	if err != nil {
		t.Fatal(err)
	}
	if s.MPM != "event" || s.MemcachedMB != 64 || !s.KeepAlive || s.HealthPath != "/" || s.HealthStatus != 200 || s.MaxRequestWorkers != 150 {
		t.Fatalf("defaults: %+v", s)
	}
	s, _ = decode(mustConfig(t, map[string]any{"document_root": "file:///x", "php": true}))
	if s.MPM != "prefork" || strings.Join(s.packages(), " ") != "apache2 memcached libapache2-mod-php" {
		t.Fatalf("php: %+v", s)
	}
	if sl, th := eventShape(150); sl != 6 || th != 25 {
		t.Fatalf("eventShape(150) = %d, %d", sl, th)
	}
	if sl, th := eventShape(3); sl != 1 || th != 3 {
		t.Fatalf("eventShape(3) = %d, %d", sl, th)
	}
}

func TestParseStatusAndRate(t *testing.T) {
	s := parseApacheStatus("localhost\nServerMPM: prefork\nTotal Accesses: 120\nReqPerSec: .5\nBusyWorkers: 3\nIdleWorkers: 7\nScoreboard: __W\n")
	if s.TotalAccesses != 120 || s.ReqPerSec != 0.5 || s.BusyWorkers != 3 || s.IdleWorkers != 7 {
		t.Fatalf("parsed %+v", s)
	}
	var e entry
	t0 := time.Now()
	if r := e.rate(s, t0); r != 0.5 {
		t.Fatalf("first rate = %v, want mod_status' average", r)
	}
	s.TotalAccesses = 142
	if r := e.rate(s, t0.Add(10*time.Second)); r != 2 {
		t.Fatalf("rate = %v, want (142-120-2)/10", r)
	}
}
