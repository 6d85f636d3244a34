package tomcat

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rosterhq/roster/sdk"
	"github.com/rosterhq/roster/sdk/netutil"
	"github.com/rosterhq/roster/sdk/rolekit"
	"github.com/rosterhq/roster/sdk/roletest"
)

// requireServices skips the test when Tomcat, java or (with front) apache2
// are missing, except in CI, where it fails.
func requireServices(t testing.TB, front bool) {
	t.Helper()
	need := []string{filepath.Join(catalinaHome, "bin", "bootstrap.jar"), filepath.Join(catalinaHome, "lib", "catalina.jar")}
	if front {
		need = append(need, apacheBinary, filepath.Join(apacheModules, "mod_proxy_http.so"))
	}
	missing := ""
	for _, p := range need {
		if _, err := os.Stat(p); err != nil {
			missing = p
			break
		}
	}
	if _, err := javaBinary(); err != nil && missing == "" {
		missing = "java"
	}
	if missing == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s missing: CI installs tomcat10 and apache2 (.ci/apt-packages)", missing)
	}
	t.Skipf("%s missing: apt-get install -y tomcat10 apache2", missing)
}

func mustAbs(t testing.TB, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// cfgMap is the config the tests start from: the example WAR, a small heap.
func cfgMap(t testing.TB, extra map[string]any) map[string]any {
	m := map[string]any{
		"war":         "file://" + mustAbs(t, exampleWAR),
		"heap_mb":     96,
		"jvm_options": []any{"-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"},
		"health_path": "/health.jsp",
	}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

func mustConfig(t testing.TB, m map[string]any) sdk.Config {
	t.Helper()
	c, diags := roletest.DecodeMap(Schema(), m)
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	return c
}

// daemonPids returns the pids of every process of the server's daemons.
func daemonPids(t testing.TB, workDir string) []int {
	t.Helper()
	return roletest.DaemonPids(t, layoutOf(workDir).Run, tomcatName, apacheName)
}

// assertGone fails unless every pid has exited and no process mentions
// the work directory.
func assertGone(t testing.TB, pids []int, workDir string) {
	t.Helper()
	roletest.AssertExited(t, pids)
	if p := roletest.ProcessesMentioning(workDir); len(p) > 0 {
		t.Errorf("processes of %s left: %v", workDir, p)
	}
}

// uidOf returns the real uid of a process.
func uidOf(t testing.TB, pid int) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "Uid:" {
			return f[1]
		}
	}
	t.Fatalf("no Uid in /proc/%d/status", pid)
	return ""
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 30s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestLifecycleWithRoletest(t *testing.T) {
	requireServices(t, false)
	var pids []int
	var held net.Conn
	defer func() {
		if held != nil {
			held.Close()
		}
	}()
	wd := roletest.WorkDir(t)
	res := roletest.Run(t, New(), roletest.Case{
		Config:        cfgMap(t, nil),
		Server:        sdk.Server{WorkDir: wd},
		WantEndpoints: []string{"http"},
		DrainTimeout:  time.Second,
		Check: func(t testing.TB, r *roletest.Result) {
			pids = daemonPids(t, r.Server.WorkDir)
			if len(pids) != 1 {
				t.Errorf("daemon processes %v: want the JVM alone", pids)
			}
			if _, ok := r.Endpoints["tomcat"]; ok {
				t.Errorf("endpoints %v: no tomcat endpoint without apache_front", r.Endpoints)
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
			if !strings.Contains(first, "server: tomcat-1") || !strings.Contains(first, "visits: 1\n") ||
				!strings.Contains(second, "visits: 2\n") || !strings.Contains(first, "forwarded-host: null") {
				t.Errorf("the example application answered %q, then %q", first, second)
			}
			for _, m := range []string{"busy_threads", "current_threads", "max_threads", "busy_ratio", "open_connections", "heap_used_mb", "heap_max_mb", "requests_per_second"} {
				if _, ok := r.Health.Metrics[m]; !ok {
					t.Errorf("metric %s missing from %v", m, r.Health.Metrics)
				}
			}
			if hm := r.Health.Metrics["heap_max_mb"]; hm < 48 || hm > 96 {
				t.Errorf("heap_max_mb %v: want about heap_mb = 96", hm)
			}
			if r.Health.Metrics["max_threads"] != 200 || r.Health.Metrics["busy_threads"] != 0 {
				t.Errorf("idle server's thread metrics: %v", r.Health.Metrics)
			}
			// Two requests since the first check, less the check's own.
			h, err := r.Role.HealthCheck(context.Background(), sdk.HealthCheckRequest{Server: r.Server, Config: r.Config, Endpoints: r.Endpoints})
			if err != nil || !h.Healthy || h.Metrics["requests_per_second"] <= 0 {
				t.Errorf("second HealthCheck: %+v, %v", h, err)
			}
			// A connection held open (a request whose headers never end)
			// shows in open_connections, and outlives the drain deadline.
			c, err := net.Dial("tcp", r.Endpoints["http"])
			if err != nil {
				t.Fatal(err)
			}
			held = c
			io.WriteString(c, "GET /health.jsp HTTP/1.1\r\nHost: x\r\n")
			port, _ := netutil.PortOf(r.Endpoints["http"])
			waitFor(t, "held connection established", func() bool { n, _ := netutil.Established(port); return n == 1 })
			h, err = r.Role.HealthCheck(context.Background(), sdk.HealthCheckRequest{Server: r.Server, Config: r.Config, Endpoints: r.Endpoints})
			if err != nil || h.Metrics["open_connections"] != 1 {
				t.Errorf("open_connections with one held connection: %v, %v", h.Metrics, err)
			}
			// When root, the JVM runs as the tomcat user.
			if u, err := rolekit.RunAs(tomcatUser); err == nil && u != nil && len(pids) > 0 {
				if got := uidOf(t, pids[0]); got != u.Uid {
					t.Errorf("JVM runs as uid %s, want %s (%s)", got, u.Uid, tomcatUser)
				}
			}
			// The private base: no shutdown port, no AJP.
			sx, err := os.ReadFile(filepath.Join(layoutOf(r.Server.WorkDir).Conf, "server.xml"))
			if err != nil || !strings.Contains(string(sx), `<Server port="-1"`) || strings.Contains(string(sx), `protocol="AJP`) {
				t.Errorf("server.xml: %v\n%s", err, sx)
			}
		},
	})
	// The held connection outlived the deadline; Teardown ended it anyway.
	if res.Drain.OpenConnections != 1 {
		t.Errorf("Drain past its deadline reports %d open connections, want the held one", res.Drain.OpenConnections)
	}
	names := map[string]string{}
	for _, l := range res.Teardown.Logs {
		names[l.Name] = l.Path
	}
	for _, n := range []string{"tomcat/catalina.log", "tomcat/access.log", "tomcat/catalina.out"} {
		if names[n] == "" {
			t.Errorf("Teardown logs %v lack %s", res.Teardown.Logs, n)
		}
	}
	if b, _ := os.ReadFile(names["tomcat/access.log"]); !strings.Contains(string(b), `"GET / HTTP/1.1" 200`) {
		t.Errorf("access.log lacks the test's requests:\n%s", b)
	}
	steps := map[string]bool{}
	for _, p := range res.Progress {
		steps[p.Step] = true
	}
	for _, s := range []string{"packages", "fetch", "configure", "start", "ready"} {
		if !steps[s] {
			t.Errorf("progress %+v lacks step %s", res.Progress, s)
		}
	}
	if res.Progress[len(res.Progress)-1].Fraction != 1 {
		t.Errorf("progress does not end at 1: %+v", res.Progress)
	}
	assertGone(t, pids, wd)
}

// TestBinaryWithApacheFront runs the role as a real plugin binary, as core
// does, with apache in front.
func TestBinaryWithApacheFront(t *testing.T) {
	requireServices(t, true)
	bin := roletest.Build(t, "./internal/testmain")
	wd := roletest.WorkDir(t)
	var pids []int
	res := roletest.RunBinary(t, bin, roletest.Case{
		Config:        cfgMap(t, map[string]any{"apache_front": true, "context_path": "/hello", "health_path": "/hello/health.jsp"}),
		Server:        sdk.Server{Name: "tomcat-7", WorkDir: wd},
		WantEndpoints: []string{"http", "tomcat"},
		Check: func(t testing.TB, r *roletest.Result) {
			pids = daemonPids(t, r.Server.WorkDir)
			if r.Endpoints["http"] == r.Endpoints["tomcat"] {
				t.Fatalf("endpoints %v: apache and tomcat share an address", r.Endpoints)
			}
			code, body := roletest.Get(t, "http://"+r.Endpoints["http"]+"/hello/")
			if code != 200 || !strings.Contains(body, "server: tomcat-7") || !strings.Contains(body, "context: /hello") ||
				!strings.Contains(body, "forwarded-host: "+r.Endpoints["http"]) {
				t.Errorf("through apache: %d %q; want the application, proxied", code, body)
			}
			code, body = roletest.Get(t, "http://"+r.Endpoints["tomcat"]+"/hello/")
			if code != 200 || !strings.Contains(body, "forwarded-host: null") {
				t.Errorf("tomcat directly: %d %q", code, body)
			}
			if code, _ := roletest.Get(t, "http://"+r.Endpoints["http"]+"/"); code != 404 {
				t.Errorf("GET / with context_path /hello: %d, want 404", code)
			}
			if _, ok := r.Health.Metrics["front_connections"]; !ok {
				t.Errorf("metrics %v lack front_connections", r.Health.Metrics)
			}
		},
	})
	if res.Drain.OpenConnections != 0 {
		t.Errorf("Drain left %d connections", res.Drain.OpenConnections)
	}
	var apacheLogs int
	for _, l := range res.Teardown.Logs {
		if strings.HasPrefix(l.Name, "apache/") {
			apacheLogs++
		}
	}
	if apacheLogs < 2 {
		t.Errorf("Teardown logs %v: want apache's access and error logs", res.Teardown.Logs)
	}
	assertGone(t, pids, wd)
}

func TestConfigErrorsCaughtBySchema(t *testing.T) {
	cases := []struct{ name, hcl, want string }{
		{"missing war", `port = 0`, "war"},
		{"wrong type", "war = \"file:///x.war\"\nheap_mb = \"big\"", "number"},
		{"unknown attribute", "war = \"file:///x.war\"\nheap = 3", "heap"},
		{"list of strings", "war = \"file:///x.war\"\njvm_options = \"-Xss1m\"", "list"},
		{"bool", "war = \"file:///x.war\"\napache_front = \"maybe\"", "bool"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			roletest.Run(t, New(), roletest.Case{ConfigHCL: c.hcl, WantConfigError: c.want})
		})
	}
}

func TestConfigErrorsCaughtByProvision(t *testing.T) {
	cases := map[string]map[string]any{
		"context_path relative":  {"context_path": "shop"},
		"context_path trailing":  {"context_path": "/shop/"},
		"context_path dotdot":    {"context_path": "/a/.."},
		"context_path hash":      {"context_path": "/a#b"},
		"port out of range":      {"port": 70000},
		"tiny heap":              {"heap_mb": 8},
		"not an option":          {"jvm_options": []any{"Xmx1g"}},
		"changes the class path": {"jvm_options": []any{"-cp"}},
		"bad health_status":      {"health_status": 42},
		"bad health_path":        {"health_path": "health"},
		"bad listen":             {"listen_address": "localhost"},
		"front_port alone":       {"front_port": 18080},
		"same ports":             {"port": 18080, "front_port": 18080, "apache_front": true},
		"no threads":             {"max_threads": 0},
		"bad sha256":             {"war_sha256": "abc"},
	}
	for name, extra := range cases {
		t.Run(name, func(t *testing.T) {
			wd := roletest.WorkDir(t)
			roletest.Run(t, New(), roletest.Case{
				Config:             cfgMap(t, extra),
				Server:             sdk.Server{WorkDir: wd},
				WantProvisionError: sdk.ErrInvalidConfig,
			})
			if _, err := os.Stat(layoutOf(wd).Dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a config refused by its values left %s behind", layoutOf(wd).Dir)
			}
		})
	}
}

// TestNotAWAR refuses artifacts that Tomcat could not deploy, before the
// JVM starts.
func TestNotAWAR(t *testing.T) {
	requireServices(t, false)
	cases := map[string]string{
		"single file not a zip":     "file://" + mustAbs(t, exampleApp+"/index.jsp"),
		"directory without WEB-INF": "file://" + mustAbs(t, exampleApp+"/WEB-INF"),
	}
	for name, war := range cases {
		t.Run(name, func(t *testing.T) {
			wd := roletest.WorkDir(t)
			roletest.Run(t, New(), roletest.Case{
				Config:             cfgMap(t, map[string]any{"war": war}),
				Server:             sdk.Server{WorkDir: wd},
				WantProvisionError: sdk.ErrInvalidConfig,
			})
			if p := roletest.ProcessesMentioning(wd); len(p) > 0 {
				t.Errorf("processes left: %v", p)
			}
		})
	}
}

func TestMissingPackageNamed(t *testing.T) {
	_, err := New().Provision(context.Background(), sdk.ProvisionRequest{
		Server: sdk.Server{Name: "tomcat-1", WorkDir: roletest.WorkDir(t)},
		Config: mustConfig(t, cfgMap(t, map[string]any{"packages": []any{"roster-no-such-package"}})),
	})
	if !errors.Is(err, sdk.ErrNotFound) || !strings.Contains(err.Error(), "roster-no-such-package") {
		t.Fatalf("Provision = %v, want ErrNotFound naming the package", err)
	}
}

func TestWrongSHA256Refused(t *testing.T) {
	requireServices(t, false)
	wd := roletest.WorkDir(t)
	roletest.Run(t, New(), roletest.Case{
		Config:             cfgMap(t, map[string]any{"war_sha256": strings.Repeat("0", 64)}),
		Server:             sdk.Server{WorkDir: wd},
		WantProvisionError: sdk.ErrChecksumMismatch,
	})
	if ents, _ := os.ReadDir(layoutOf(wd).Webapps); len(ents) > 0 {
		t.Errorf("a WAR with the wrong digest was deployed: %v", ents)
	}
	if p := roletest.ProcessesMentioning(wd); len(p) > 0 {
		t.Errorf("processes left after a refused artifact: %v", p)
	}
}

// TestFailedDeploymentFailsFast deploys a WAR whose web.xml is broken:
// Tomcat starts but the application does not, and Provision says so at
// once, quoting Tomcat's log, and leaves nothing running.
func TestFailedDeploymentFailsFast(t *testing.T) {
	requireServices(t, false)
	wd := roletest.WorkDir(t)
	app := filepath.Join(wd, "broken")
	if err := os.MkdirAll(filepath.Join(app, "WEB-INF"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(app, "WEB-INF", "web.xml"), []byte("<web-app><servlet>not closed"), 0o644)
	os.WriteFile(filepath.Join(app, "health.jsp"), []byte("ok"), 0o644)
	war := filepath.Join(wd, "broken.war")
	if err := os.WriteFile(war, buildWAR(t, app), 0o644); err != nil {
		t.Fatal(err)
	}
	role := New()
	srv := sdk.Server{Name: "tomcat-1", WorkDir: filepath.Join(wd, "server")}
	cfg := mustConfig(t, cfgMap(t, map[string]any{"war": "file://" + war}))
	_, err := role.Provision(context.Background(), sdk.ProvisionRequest{Server: srv, Config: cfg})
	if !errors.Is(err, sdk.ErrInvalidConfig) || !strings.Contains(err.Error(), "catalina.log") {
		t.Fatalf("Provision = %v, want invalid config quoting catalina.log", err)
	}
	if p := roletest.ProcessesMentioning(srv.WorkDir); len(p) > 0 {
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

// TestTwoServersDrainAndRelaunch runs two servers of the role on one host
// (one plain serving an exploded application, one behind apache serving
// the WAR, provisioned at once), finds them again from a relaunched plugin
// process, and drains both while a slow request is in flight on each.
func TestTwoServersDrainAndRelaunch(t *testing.T) {
	requireServices(t, true)
	role := New()
	ctx := context.Background()
	srvs := []sdk.Server{{Name: "tomcat-1", WorkDir: roletest.WorkDir(t)}, {Name: "tomcat-2", WorkDir: roletest.WorkDir(t)}}
	// tomcat-1 deploys the example's sources as an exploded application,
	// tomcat-2 the WAR, behind apache.
	cfgs := []sdk.Config{
		mustConfig(t, cfgMap(t, map[string]any{"war": "file://" + mustAbs(t, exampleApp)})),
		mustConfig(t, cfgMap(t, map[string]any{"apache_front": true})),
	}
	eps := make([]sdk.Endpoints, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range srvs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := role.Provision(ctx, sdk.ProvisionRequest{Server: srvs[i], Config: cfgs[i]})
			eps[i], errs[i] = resp.Endpoints, err
		}()
	}
	wg.Wait()
	for i := range srvs {
		t.Cleanup(func() { role.Teardown(context.Background(), sdk.TeardownRequest{Server: srvs[i], Config: cfgs[i]}) })
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if eps[0]["http"] == eps[1]["http"] || eps[0]["http"] == eps[1]["tomcat"] {
		t.Fatalf("two servers share ports: %v %v", eps[0], eps[1])
	}
	for i, e := range eps {
		_, body := roletest.Get(t, "http://"+e["http"]+"/")
		if !strings.Contains(body, "server: "+srvs[i].Name) || !strings.Contains(body, "visits: 1\n") {
			t.Errorf("%s answered %q: want its own name and its own counter", srvs[i].Name, body)
		}
		// Compile the slow page before it is timed.
		if code, body := roletest.Get(t, "http://"+e["http"]+"/slow.jsp?ms=0"); code != 200 || body != "slow done\n" {
			t.Fatalf("slow.jsp: %d %q", code, body)
		}
	}

	// A relaunched plugin process has only the work directories.
	relaunched := New()
	var pids [][]int
	for i := range srvs {
		h, err := relaunched.HealthCheck(ctx, sdk.HealthCheckRequest{Server: srvs[i], Config: cfgs[i]})
		if err != nil || !h.Healthy {
			t.Fatalf("HealthCheck after relaunch of %s: %+v %v", srvs[i].Name, h, err)
		}
		pids = append(pids, daemonPids(t, srvs[i].WorkDir))
	}

	t.Run("drain", func(t *testing.T) {
		for i := range srvs {
			t.Run(srvs[i].Name, func(t *testing.T) {
				t.Parallel()
				drainWithSlowRequest(t, relaunched, srvs[i], cfgs[i], eps[i])
			})
		}
	})
	for i := range srvs {
		if _, err := relaunched.Teardown(ctx, sdk.TeardownRequest{Server: srvs[i], Config: cfgs[i], Endpoints: eps[i]}); err != nil {
			t.Fatal(err)
		}
		assertGone(t, pids[i], srvs[i].WorkDir)
	}
}

func drainWithSlowRequest(t *testing.T, role sdk.Role, srv sdk.Server, cfg sdk.Config, eps sdk.Endpoints) {
	ctx := context.Background()
	slow := roletest.StartRequest(t, "http://"+eps["http"]+"/slow.jsp?ms=1500")
	// Wait until Tomcat works on it.
	waitFor(t, "the slow request busy in tomcat", func() bool {
		h, err := role.HealthCheck(ctx, sdk.HealthCheckRequest{Server: srv, Config: cfg, Endpoints: eps})
		return err == nil && h.Metrics["busy_threads"] >= 1
	})
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
	// The server stopped taking work: its port refuses connections.
	if c, err := net.DialTimeout("tcp", eps["http"], time.Second); err == nil {
		c.Close()
		t.Fatal("the http endpoint still accepts connections after Drain")
	}
}

func TestDecodeDefaults(t *testing.T) {
	s, err := decode(mustConfig(t, map[string]any{"war": "file:///x.war"}))
	if err != nil {
		t.Fatal(err)
	}
	if s.ContextPath != "/" || s.appName() != "ROOT" || s.HeapMB != 256 || s.MaxThreads != 200 || s.HealthPath != "/" ||
		s.HealthStatus != 200 || s.KeepAliveTimeout != 5 || s.ApacheFront || s.ListenAddress != "127.0.0.1" {
		t.Fatalf("defaults: %+v", s)
	}
	if got := strings.Join(s.packages(), " "); got != "tomcat10" {
		t.Fatalf("packages %q", got)
	}
	s, _ = decode(mustConfig(t, map[string]any{"war": "file:///x.war", "context_path": "/shop/v2", "apache_front": true, "listen_address": "0.0.0.0"}))
	if s.appName() != "shop#v2" || strings.Join(s.packages(), " ") != "tomcat10 apache2" || s.endpointHost() != "127.0.0.1" {
		t.Fatalf("%+v", s)
	}
}

func TestJavaArgsPutOperatorOptionsLast(t *testing.T) {
	l := layoutOf("/srv/w")
	s, _ := decode(mustConfig(t, map[string]any{"war": "file:///x.war", "heap_mb": 512, "jvm_options": []any{"-Xmx1g", "-Dfoo=bar"}}))
	args := javaArgs(l, s, "tomcat-3")
	joined := strings.Join(args, " ")
	iDefault, iOperator := strings.Index(joined, "-Xmx512m"), strings.Index(joined, "-Xmx1g")
	iMain := strings.Index(joined, "org.apache.catalina.startup.Bootstrap start")
	if iDefault < 0 || iOperator < iDefault || iMain < iOperator || !strings.HasSuffix(joined, "Bootstrap start") {
		t.Fatalf("java args: %s", joined)
	}
	for _, want := range []string{"-Dcatalina.base=/srv/w/tomcat/base", "-Dcatalina.home=" + catalinaHome, "-Droster.server=tomcat-3", "bootstrap.jar:"} {
		if !strings.Contains(joined, want) {
			t.Errorf("java args lack %s: %s", want, joined)
		}
	}
}

func TestSkippedJars(t *testing.T) {
	in := "a=1\ntomcat.util.scan.StandardJarScanFilter.jarsToSkip=\\\nfoo.jar,\\\nbar.jar\nb=2\n"
	got := string(withSkippedJars([]byte(in)))
	want := "a=1\ntomcat.util.scan.StandardJarScanFilter.jarsToSkip=\\\n" + skipJars + "\\\nfoo.jar,\\\nbar.jar\nb=2\n"
	if got != want {
		t.Fatalf("got %q\nwant %q", got, want)
	}
	got = string(withSkippedJars([]byte("tomcat.util.scan.StandardJarScanFilter.jarsToSkip=x.jar\n")))
	if got != "tomcat.util.scan.StandardJarScanFilter.jarsToSkip=x.jar,"+strings.TrimSuffix(skipJars, ",")+"\n" {
		t.Fatalf("one-line value: %q", got)
	}
	if got := string(withSkippedJars([]byte("a=1\n"))); !strings.HasSuffix(got, jarsToSkipKey+strings.TrimSuffix(skipJars, ",")+"\n") {
		t.Fatalf("absent key: %q", got)
	}
}

func TestParseStatusAndRate(t *testing.T) {
	body := `<?xml version="1.0" encoding="utf-8"?><?xml-stylesheet type="text/xsl" href="/xform.xsl" ?>
<status><jvm><memory free='34542664' total='49283072' max='268435456'/></jvm><connector name='"http-nio-127.0.0.1-18080"'><threadInfo  maxThreads="200" currentThreadCount="10" currentThreadsBusy="3" /><requestInfo  maxTime="1601" processingTime="1603" requestCount="42" errorCount="0" bytesReceived="0" bytesSent="84" /></connector><connector name='"http-nio-127.0.0.1-18081"'><threadInfo  maxThreads="4" currentThreadCount="2" currentThreadsBusy="1" /><requestInfo requestCount="7"/></connector></status>`
	s, err := parseStatus([]byte(body), 18080)
	if err != nil {
		t.Fatal(err)
	}
	if s.BusyThreads != 3 || s.CurrentThreads != 10 || s.MaxThreads != 200 || s.RequestCount != 42 || s.HeapMax != 268435456 || s.HeapUsed != 49283072-34542664 {
		t.Fatalf("parsed %+v", s)
	}
	if _, err := parseStatus([]byte(body), 9999); err == nil {
		t.Fatal("a connector that is not there was found")
	}
	var e entry
	t0 := time.Now()
	if r := e.rate(100, t0); r != 0 {
		t.Fatalf("first rate = %v", r)
	}
	if r := e.rate(121, t0.Add(10*time.Second)); r != 2 {
		t.Fatalf("rate = %v, want (121-100-1)/10", r)
	}
}

func TestPickPortsDistinct(t *testing.T) {
	for range 20 {
		ps, err := pickPorts(settings{ApacheFront: true})
		if err != nil {
			t.Fatal(err)
		}
		if ps.tomcat == 0 || ps.status == 0 || ps.front == 0 || ps.tomcat == ps.status || ps.tomcat == ps.front || ps.status == ps.front {
			t.Fatalf("ports %+v", ps)
		}
	}
	ps, _ := pickPorts(settings{Port: 18080})
	if ps.tomcat != 18080 || ps.status == 18080 || ps.front != 0 {
		t.Fatalf("ports %+v", ps)
	}
}

// TestPortTakenFailsFast configures a port another program holds (and
// accepts on, never answering): Provision reads Tomcat's BindException
// rather than waiting on that program, fails as unavailable (a retry may
// pick other ports) and leaves nothing running.
func TestPortTakenFailsFast(t *testing.T) {
	requireServices(t, false)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	wd := roletest.WorkDir(t)
	roletest.Run(t, New(), roletest.Case{
		Config:             cfgMap(t, map[string]any{"port": ln.Addr().(*net.TCPAddr).Port}),
		Server:             sdk.Server{WorkDir: wd},
		WantProvisionError: sdk.ErrUnavailable,
	})
	if p := roletest.ProcessesMentioning(wd); len(p) > 0 {
		t.Errorf("processes left: %v", p)
	}
}
