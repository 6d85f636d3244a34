package rolekit

import (
	"context"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rosterhq/roster/sdk"
	"github.com/rosterhq/roster/sdk/process"
)

func TestServersOnePerWorkDir(t *testing.T) {
	var s Servers[int]
	dir := t.TempDir()
	a, err := s.Get(sdk.Server{Name: "web-1", WorkDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	b, unlock, err := s.Lock(sdk.Server{Name: "web-1", WorkDir: dir + "/."})
	if err != nil {
		t.Fatal(err)
	}
	unlock()
	if a != b {
		t.Fatal("the same work directory, written two ways, gave two entries")
	}
	c, _ := s.Get(sdk.Server{Name: "web-2", WorkDir: t.TempDir()})
	if a == c {
		t.Fatal("two work directories share an entry")
	}
	s.Role = "web"
	_, err = s.Get(sdk.Server{Name: "web-3"})
	if !errors.Is(err, sdk.ErrInvalidConfig) || !strings.Contains(err.Error(), `web: server "web-3" has no work directory`) {
		t.Fatalf("Get without a work directory = %v", err)
	}
}

func TestServersLockSerialises(t *testing.T) {
	var s Servers[int]
	srv := sdk.Server{Name: "db-1", WorkDir: t.TempDir()}
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, unlock, err := s.Lock(srv)
			if err != nil {
				t.Error(err)
				return
			}
			defer unlock()
			v := *n
			time.Sleep(time.Microsecond)
			*n = v + 1
		}()
	}
	wg.Wait()
	if n, _ := s.Get(srv); *n != 50 {
		t.Fatalf("counter = %d after 50 locked increments: calls overlapped", *n)
	}
}

func TestStateRoundTrip(t *testing.T) {
	type state struct {
		HTTP string `json:"http"`
		Port int    `json:"port"`
	}
	p := filepath.Join(t.TempDir(), "state.json")
	if st, err := LoadState[state](p); st != nil || err != nil {
		t.Fatalf("LoadState of a missing file = %v, %v; want nil, nil", st, err)
	}
	if err := SaveState(p, &state{HTTP: "127.0.0.1:8080", Port: 8080}); err != nil {
		t.Fatal(err)
	}
	st, err := LoadState[state](p)
	if err != nil || st == nil || st.HTTP != "127.0.0.1:8080" || st.Port != 8080 {
		t.Fatalf("LoadState = %+v, %v", st, err)
	}
	if err := os.WriteFile(p, []byte("{half"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadState[state](p); err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("LoadState of a broken file = %v, want an error naming it", err)
	}
}

func TestHTTPProbe(t *testing.T) {
	var probes int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(ProbeHeader) != "" {
			probes++
		}
		switch r.URL.Path {
		case "/moved":
			http.Redirect(w, r, "/", http.StatusMovedPermanently)
		case "/down":
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			w.Write([]byte("ok"))
		}
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	ctx := context.Background()
	code, body, err := HTTPGet(ctx, addr, "/")
	if err != nil || code != 200 || string(body) != "ok" {
		t.Fatalf("HTTPGet / = %d %q %v", code, body, err)
	}
	if err := HTTPCheck(ctx, addr, "/moved", 301); err != nil {
		t.Fatalf("a redirect was followed, or not expected: %v", err)
	}
	if err := HTTPCheck(ctx, addr, "/down", 200); err == nil || err.Error() != "GET /down: HTTP 503, want 200" {
		t.Fatalf("HTTPCheck /down = %v", err)
	}
	if err := (HTTPHealth{HealthPath: "/", HealthStatus: 200}).Check(ctx, addr); err != nil {
		t.Fatal(err)
	}
	if probes != 4 {
		t.Fatalf("%d requests carried %s, want 4", probes, ProbeHeader)
	}
	srv.Close()
	if err := HTTPCheck(ctx, addr, "/", 200); err == nil || !strings.HasPrefix(err.Error(), "GET /: ") {
		t.Fatalf("HTTPCheck of a closed server = %v", err)
	}
}

func TestDecodeHTTPHealth(t *testing.T) {
	h, err := DecodeHTTPHealth(sdk.Config{})
	if err != nil || h.HealthPath != "/" || h.HealthStatus != 200 {
		t.Fatalf("defaults of an empty config = %+v, %v", h, err)
	}
	for m, want := range map[string]string{
		"path":   `health_path "health": want a path starting with /`,
		"status": "health_status 42: want an HTTP status 100..599",
	} {
		vals := map[string]any{"health_path": "/", "health_status": 200}
		if m == "path" {
			vals["health_path"] = "health"
		} else {
			vals["health_status"] = 42
		}
		c, err := sdk.ConfigFromMap(vals)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := DecodeHTTPHealth(c); err == nil || err.Error() != want {
			t.Errorf("bad %s: %v, want %q", m, err, want)
		}
	}
}

func TestAttributesValidate(t *testing.T) {
	s := sdk.Schema{Attributes: append(HealthAttributes(), PackagesAttributes("apache2")...)}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(s.Attributes[2].Description, "besides apache2") {
		t.Fatalf("packages description %q", s.Attributes[2].Description)
	}
	m := Meta{About: sdk.Info{Name: "x"}, Schema: func() sdk.Schema { return s }}
	if info, _ := m.Info(context.Background()); info.Name != "x" {
		t.Fatal(info)
	}
	if got, _ := m.ConfigSchema(context.Background()); len(got.Attributes) != 4 {
		t.Fatal(got)
	}
}

func TestRate(t *testing.T) {
	var r Rate
	t0 := time.Now()
	if v, ok := r.Observe(Sample{At: t0, Count: 100}, 1); ok || v != 0 {
		t.Fatalf("first sample = %v, %v; want no rate", v, ok)
	}
	if v, ok := r.Observe(Sample{At: t0.Add(10 * time.Second), Count: 121}, 1); !ok || v != 2 {
		t.Fatalf("rate = %v, %v; want (121-100-1)/10", v, ok)
	}
	if _, ok := r.Observe(Sample{At: t0.Add(20 * time.Second), Count: 5}, 1); ok {
		t.Fatal("a counter that went back (a restart) gave a rate")
	}
	r.Reset()
	if _, ok := r.Observe(Sample{At: t0.Add(30 * time.Second), Count: 50}, 1); ok {
		t.Fatal("a rate after Reset")
	}
	if v, _ := PerSecond(Sample{At: t0, Count: 10}, Sample{At: t0.Add(time.Second), Count: 10}, 3); v != 0 {
		t.Fatalf("own requests beyond the increase gave %v, want 0", v)
	}
}

func TestEndpointHostAndDeadline(t *testing.T) {
	for in, want := range map[string]string{"0.0.0.0": "127.0.0.1", "::": "127.0.0.1", "10.0.0.5": "10.0.0.5", "::1": "::1"} {
		if got := EndpointHost(in); got != want {
			t.Errorf("EndpointHost(%q) = %q, want %q", in, got, want)
		}
	}
	ctx, cancel := WithDeadline(context.Background(), time.Time{})
	if _, ok := ctx.Deadline(); ok {
		t.Error("a zero deadline bounded the context")
	}
	cancel()
	d := time.Now().Add(time.Hour)
	ctx, cancel = WithDeadline(context.Background(), d)
	defer cancel()
	if got, ok := ctx.Deadline(); !ok || !got.Equal(d) {
		t.Errorf("deadline %v, %v; want %v", got, ok, d)
	}
}

func TestConfigBlock(t *testing.T) {
	p := filepath.Join(t.TempDir(), "web.hcl")
	src := "role \"web\" {\n  plugin = \"web\"\n  config {\n    port = 8080\n  }\n}\n"
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	body, err := ConfigBlock(p)
	if err != nil || strings.TrimSpace(body) != "port = 8080" {
		t.Fatalf("ConfigBlock = %q, %v", body, err)
	}
	if err := os.WriteFile(p, []byte("role \"web\" {\n  plugin = \"web\"\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ConfigBlock(p); err == nil || !strings.Contains(err.Error(), "no role with a config block") {
		t.Fatalf("ConfigBlock without one = %v", err)
	}
	if err := os.WriteFile(p, []byte("role {"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ConfigBlock(p); err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("ConfigBlock of broken HCL = %v, want a diagnostic naming the file", err)
	}
}

func TestCheckReachable(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to make directories another user cannot pass")
	}
	u, err := RunAs("nobody")
	if err != nil || u == nil {
		t.Fatalf("RunAs(nobody) = %v, %v", u, err)
	}
	base := t.TempDir()
	if err := os.Chmod(filepath.Dir(base), 0o755); err != nil {
		t.Fatal(err)
	}
	private := filepath.Join(base, "private")
	dir := filepath.Join(private, "docroot")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(private, 0o700); err != nil {
		t.Fatal(err)
	}
	err = CheckReachable(dir, "the document root", u)
	if err == nil || !strings.Contains(err.Error(), "user nobody cannot reach the document root: "+private+" is mode 0700") {
		t.Fatalf("CheckReachable = %v, want %s named", err, private)
	}
	if err := os.Chmod(private, 0o711); err != nil {
		t.Fatal(err)
	}
	if err := CheckReachable(dir, dir, u); err != nil {
		t.Fatal(err)
	}
	if _, err := RunAs("roster-no-such-user"); err == nil {
		t.Fatal("RunAs of an unknown user succeeded")
	}
}

func TestTeardown(t *testing.T) {
	dir := t.TempDir()
	run := filepath.Join(dir, "run")
	log := filepath.Join(dir, "a.log")
	if err := os.WriteFile(log, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	logs := []sdk.LogFile{{Name: "a.log", Path: log}, {Name: "missing.log", Path: filepath.Join(dir, "missing.log")}}
	stopped := 0
	stop := func(context.Context, *process.Supervisor) error { stopped++; return errors.New("boom") }
	// Never provisioned: nothing to stop, the logs that exist.
	resp, err := Teardown(context.Background(), "web", run, time.Millisecond, stop, logs...)
	if err != nil || stopped != 0 || len(resp.Logs) != 1 || resp.Logs[0].Name != "a.log" {
		t.Fatalf("Teardown without a supervisor = %+v, %v (stopped %d)", resp, err, stopped)
	}
	if err := os.Mkdir(run, 0o755); err != nil {
		t.Fatal(err)
	}
	resp, err = Teardown(context.Background(), "web", run, time.Millisecond, stop, logs...)
	if err == nil || err.Error() != "web: boom" || stopped != 1 || len(resp.Logs) != 1 {
		t.Fatalf("Teardown whose stop failed = %+v, %v (stopped %d); want the logs and the error", resp, err, stopped)
	}
}

func TestFetchProgress(t *testing.T) {
	var got []sdk.Progress
	req := sdk.ProvisionRequest{Progress: func(p sdk.Progress) { got = append(got, p) }}
	f := FetchProgress(req, "war", 0.1, 0.4)
	f(50, 100)
	f(10, -1)
	if len(got) != 2 || got[0].Step != "fetch" || got[0].Message != "war: 50 of 100 bytes" || math.Abs(got[0].Fraction-0.3) > 1e-9 || got[1].Fraction != 0.1 {
		t.Fatalf("progress %+v", got)
	}
}
