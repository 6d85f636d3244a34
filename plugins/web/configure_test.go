package web

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rosterhq/roster/sdk"
	"github.com/rosterhq/roster/sdk/process"
	"github.com/rosterhq/roster/sdk/rolekit"
	"github.com/rosterhq/roster/sdk/roletest"
)

func TestEnvChecked(t *testing.T) {
	good := map[string]any{"document_root": "file:///x", "env": map[string]any{
		"LAMP_DB_HOST_PORT": "127.0.0.1:5432", "_x1": "", "Q": `say "hi" \ and $HOME`,
	}}
	s, err := decode(mustConfig(t, good))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Env) != 3 || s.Env["Q"] != `say "hi" \ and $HOME` {
		t.Fatalf("env decoded to %q", s.Env)
	}
	if s, _ := decode(mustConfig(t, map[string]any{"document_root": "file:///x"})); len(s.Env) != 0 {
		t.Fatalf("env without the attribute: %q", s.Env)
	}

	bad := map[string]map[string]any{
		"digit first":     {"1X": "v"},
		"dash":            {"A-B": "v"},
		"dot":             {"A.B": "v"},
		"space":           {"A B": "v"},
		"role's own":      {"ROSTER_SERVER": "v"},
		"role's own case": {"roster_x": "v"},
		"header":          {"HTTP_PROXY": "v"},
		"newline":         {"A": "x\nSetEnv B y"},
		"carriage return": {"A": "x\rB"},
		"nul":             {"A": "x\x00"},
		"tab":             {"A": "x\ty"},
		"apache variable": {"A": "${HOME}"},
		"too long":        {"A": strings.Repeat("x", maxEnvValue+1)},
	}
	for name, env := range bad {
		t.Run(name, func(t *testing.T) {
			_, err := decode(mustConfig(t, map[string]any{"document_root": "file:///x", "env": env}))
			if !errors.Is(err, sdk.ErrInvalidConfig) {
				t.Fatalf("decode = %v, want ErrInvalidConfig", err)
			}
			for k := range env {
				if !strings.Contains(err.Error(), "env ") || !strings.Contains(err.Error(), k) {
					t.Errorf("error %q does not name env %s", err, k)
				}
			}
		})
	}
}

func TestEnvRendered(t *testing.T) {
	s, err := decode(mustConfig(t, map[string]any{"document_root": "file:///x", "env": map[string]any{
		"B": `a "b" c\`, "A": "1",
	}}))
	if err != nil {
		t.Fatal(err)
	}
	conf, err := renderApache(apacheParams{settings: s, Layout: layoutOf("/w"), Server: "web-1", MemcachedAddr: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	want := "SetEnv ROSTER_MEMCACHED \"127.0.0.1:1\"\n# The role's env attribute; Configure rewrites these and reloads gracefully.\nSetEnv A \"1\"\nSetEnv B \"a \\\"b\\\" c\\\\\"\n\n<Directory />"
	if !strings.Contains(string(conf), want) {
		t.Fatalf("httpd.conf lacks, sorted by name and quoted:\n%s\n--- in:\n%s", want, conf)
	}
}

// envOf GETs env.php for the names and returns what the page sees.
func envOf(t testing.TB, httpAddr string, names ...string) map[string]any {
	t.Helper()
	code, body := roletest.Get(t, "http://"+httpAddr+"/env.php?names="+url.QueryEscape(strings.Join(names, ",")))
	if code != 200 {
		t.Fatalf("env.php: %d %s", code, body)
	}
	var out map[string]any // a string, or nil when not set
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatalf("env.php: %v: %s", err, body)
	}
	return out
}

func TestEnvReachesThePageVerbatim(t *testing.T) {
	requireServices(t, true)
	env := map[string]string{
		"T_QUOTES":    `say "hi" and 'bye'`,
		"T_BACKSLASH": `C:\dir\ and a last \`,
		"T_SPACES":    "  two  spaces  around  ",
		"T_DOLLAR":    "$HOME $ {x} 100%",
		"T_EMPTY":     "",
		"T_UNICODE":   "héllo ✓",
		"T_DSN":       "host=127.0.0.1 port=5432 dbname=lamp user=lamp password=p#w;d",
	}
	envAny := map[string]any{}
	var names []string
	for k, v := range env {
		envAny[k] = v
		names = append(names, k)
	}
	role := New().(*Role)
	srv := sdk.Server{Name: "web-1", WorkDir: roletest.WorkDir(t)}
	cfg := mustConfig(t, cfgMap(testSite(t), map[string]any{"env": envAny}))
	ctx := context.Background()
	prov, err := role.Provision(ctx, sdk.ProvisionRequest{Server: srv, Config: cfg})
	t.Cleanup(func() { role.Teardown(context.Background(), sdk.TeardownRequest{Server: srv, Config: cfg}) })
	if err != nil {
		t.Fatal(err)
	}
	got := envOf(t, prov.Endpoints["http"], names...)
	for k, v := range env {
		if got[k] != v {
			t.Errorf("the page sees %s = %#v, want %q", k, got[k], v)
		}
	}
}

func TestConfigureReloadsGracefully(t *testing.T) {
	requireServices(t, true)
	role := New().(*Role)
	srv := sdk.Server{Name: "web-1", WorkDir: roletest.WorkDir(t)}
	site := testSite(t)
	cfgA := mustConfig(t, cfgMap(site, map[string]any{"env": map[string]any{"DB": "10.0.0.1:5432", "GONE": "x"}}))
	cfgB := mustConfig(t, cfgMap(site, map[string]any{"env": map[string]any{"DB": "10.0.0.2:6543", "NEW": "y"}}))
	ctx := context.Background()
	prov, err := role.Provision(ctx, sdk.ProvisionRequest{Server: srv, Config: cfgA})
	t.Cleanup(func() { role.Teardown(context.Background(), sdk.TeardownRequest{Server: srv, Config: cfgB}) })
	if err != nil {
		t.Fatal(err)
	}
	eps := prov.Endpoints
	httpAddr := eps["http"]
	if got := envOf(t, httpAddr, "DB", "GONE", "NEW"); got["DB"] != "10.0.0.1:5432" || got["GONE"] != "x" || got["NEW"] != nil {
		t.Fatalf("before Configure the page sees %v", got)
	}
	parent := apachePid(t, srv.WorkDir)
	_, body := roletest.Get(t, "http://"+httpAddr+"/")
	if !strings.Contains(body, "visits: 1") {
		t.Fatalf("GET /: %q", body)
	}

	// A request in flight across the reload.
	type result struct {
		code int
		body string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := rolekit.ProbeClient().Get("http://" + httpAddr + "/slow.php")
		if err != nil {
			done <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- result{code: resp.StatusCode, body: string(b), err: err}
	}()
	waitFor(t, func() bool {
		h, err := role.HealthCheck(ctx, sdk.HealthCheckRequest{Server: srv, Config: cfgA, Endpoints: eps})
		return err == nil && h.Metrics["busy_workers"] >= 1
	})
	genBefore := generation(t, httpAddr)

	if err := role.Configure(ctx, sdk.ConfigureRequest{Server: srv, Config: cfgB, Endpoints: eps}); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	// Every request after Configure sees B, whichever worker takes it.
	for i := range 10 {
		got := envOf(t, httpAddr, "DB", "GONE", "NEW")
		if got["DB"] != "10.0.0.2:6543" || got["GONE"] != nil || got["NEW"] != "y" {
			t.Fatalf("request %d after Configure sees %v, want DB=10.0.0.2:6543 NEW=y and no GONE", i, got)
		}
	}
	r := <-done
	if r.err != nil || r.code != 200 || r.body != "slow done\n" {
		t.Fatalf("the request in flight during the reload: %d %q %v; want it completed", r.code, r.body, r.err)
	}
	// Graceful: the same parent, memcached untouched (the counter goes on),
	// a new configuration generation.
	if p := apachePid(t, srv.WorkDir); p != parent {
		t.Errorf("apache's parent changed from %d to %d: want a graceful reload, not a restart", parent, p)
	}
	if _, body := roletest.Get(t, "http://"+httpAddr+"/"); !strings.Contains(body, "visits: 2") {
		t.Errorf("GET / after Configure: %q, want the counter kept", body)
	}
	genAfter := generation(t, httpAddr)
	if genAfter <= genBefore {
		t.Errorf("configuration generation %v after Configure, %v before: want a reload", genAfter, genBefore)
	}
	if h, err := role.HealthCheck(ctx, sdk.HealthCheckRequest{Server: srv, Config: cfgB, Endpoints: eps}); err != nil || !h.Healthy {
		t.Errorf("HealthCheck after Configure: %+v %v", h, err)
	}

	// The same values again: nothing to do, no reload.
	confBefore, _ := os.Stat(layoutOf(srv.WorkDir).Conf)
	if err := role.Configure(ctx, sdk.ConfigureRequest{Server: srv, Config: cfgB, Endpoints: eps}); err != nil {
		t.Fatalf("Configure with unchanged values: %v", err)
	}
	if g := generation(t, httpAddr); g != genAfter {
		t.Errorf("Configure with unchanged values reloaded apache: generation %v, was %v", g, genAfter)
	}
	if fi, _ := os.Stat(layoutOf(srv.WorkDir).Conf); !fi.ModTime().Equal(confBefore.ModTime()) {
		t.Error("Configure with unchanged values rewrote httpd.conf")
	}

	// What only Provision applies is refused by name, and nothing changes.
	cfgC := mustConfig(t, cfgMap(site, map[string]any{"env": map[string]any{"DB": "10.0.0.3:1"}, "memcached_mb": 32, "max_request_workers": 9}))
	err = role.Configure(ctx, sdk.ConfigureRequest{Server: srv, Config: cfgC, Endpoints: eps})
	if !errors.Is(err, sdk.ErrFailedPrecondition) || !strings.Contains(err.Error(), "max_request_workers, memcached_mb") {
		t.Fatalf("Configure with a new memcached_mb and max_request_workers = %v, want ErrFailedPrecondition naming both", err)
	}
	if got := envOf(t, httpAddr, "DB"); got["DB"] != "10.0.0.2:6543" {
		t.Errorf("a refused Configure changed env: %v", got)
	}
	// An env apache could not carry is refused before anything is written.
	bad := mustConfig(t, cfgMap(site, map[string]any{"env": map[string]any{"DB": "a\nb"}}))
	if err := role.Configure(ctx, sdk.ConfigureRequest{Server: srv, Config: bad, Endpoints: eps}); !errors.Is(err, sdk.ErrInvalidConfig) {
		t.Errorf("Configure with a line break in env = %v, want ErrInvalidConfig", err)
	}
	if g := generation(t, httpAddr); g != genAfter {
		t.Errorf("refused Configures reloaded apache: generation %v, was %v", g, genAfter)
	}

	pids := daemonPids(t, srv.WorkDir)
	if _, err := role.Teardown(ctx, sdk.TeardownRequest{Server: srv, Config: cfgB, Endpoints: eps}); err != nil {
		t.Fatal(err)
	}
	roletest.AssertExited(t, pids)
}

func TestConfigureBeforeProvision(t *testing.T) {
	err := New().(*Role).Configure(context.Background(), sdk.ConfigureRequest{
		Server: sdk.Server{Name: "web-1", WorkDir: t.TempDir()},
		Config: mustConfig(t, cfgMap("/nonexistent", map[string]any{"env": map[string]any{"A": "b"}})),
	})
	if !errors.Is(err, sdk.ErrFailedPrecondition) {
		t.Fatalf("Configure before Provision = %v, want ErrFailedPrecondition", err)
	}
}

func apachePid(t testing.TB, workDir string) int {
	t.Helper()
	sup, err := process.NewSupervisor(layoutOf(workDir).Run, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := sup.Find(apacheName)
	if err != nil {
		t.Fatal(err)
	}
	return p.Pid
}

// generation is apache's configuration generation, as the worker that
// answers reports it.
func generation(t testing.TB, httpAddr string) float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := fetchApacheStatus(ctx, httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	return s.Generation
}
