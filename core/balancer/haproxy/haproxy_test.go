package haproxy

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"

	"github.com/rosterhq/roster/core/balancer"
	"github.com/rosterhq/roster/core/config"
)

// needHAProxy skips a test without haproxy here, and fails it on CI, where
// .ci/apt-packages installs it.
func needHAProxy(t testing.TB) {
	t.Helper()
	if _, err := findBinary(""); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("haproxy is required on CI: %v", err)
		}
		t.Skipf("haproxy not installed: %v", err)
	}
}

func parseBody(t testing.TB, src string) hcl.Body {
	t.Helper()
	f, diags := hclparse.NewParser().ParseHCL([]byte(src), "roster.hcl")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	return f.Body
}

// freeAddr returns a loopback address nobody listens on right now.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// openFront opens the haproxy balancer "front" from the block body src,
// and stops its haproxy when the test ends.
func openFront(t testing.TB, dataDir, src string) *Balancer {
	t.Helper()
	b, err := balancer.Open(context.Background(), config.Balancer{Type: Type, Name: "front", Body: parseBody(t, src)},
		balancer.Options{DataDir: dataDir, Logger: hclog.NewNullLogger()})
	if err != nil {
		t.Fatal(err)
	}
	hb := b.(*Balancer)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := hb.Stop(ctx); err != nil {
			t.Error(err)
		}
	})
	return hb
}

// upstream is a tiny HTTP server that answers with its name; /slow waits
// until release is closed.
type upstream struct {
	name    string
	srv     *httptest.Server
	started chan struct{}
	release chan struct{}
	once    sync.Once
}

func newUpstream(t testing.TB, name string) *upstream {
	u := &upstream{name: name, started: make(chan struct{}), release: make(chan struct{})}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			u.once.Do(func() { close(u.started) })
			<-u.release
		}
		fmt.Fprint(w, u.name)
	}))
	t.Cleanup(func() {
		select {
		case <-u.release:
		default:
			close(u.release)
		}
		u.srv.Close()
	})
	return u
}

func (u *upstream) endpoint() string { return u.srv.Listener.Addr().String() }

var client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

func get(url string) (string, error) {
	resp, err := client.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
	}
	return string(body), nil
}

// eventually retries cond until it holds or 10s pass.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func names(l []balancer.Backend) string {
	var s []string
	for _, b := range l {
		s = append(s, b.Server+"@"+b.Endpoint)
	}
	return strings.Join(s, ",")
}

func TestRegisterDrainDeregister(t *testing.T) {
	needHAProxy(t)
	ctx := context.Background()
	front := freeAddr(t)
	b := openFront(t, t.TempDir(), fmt.Sprintf(`frontend = %q
check_path = "/health"`, front))
	url := "http://" + front

	a, c := newUpstream(t, "web-a"), newUpstream(t, "web-b")
	if err := b.Register(ctx, "web", "web-a", a.endpoint()); err != nil {
		t.Fatal(err)
	}
	// The slow request is in flight to web-a, the only server yet.
	slow := make(chan error, 1)
	go func() {
		body, err := get(url + "/slow")
		if err == nil && body != "web-a" {
			err = fmt.Errorf("slow request answered by %q", body)
		}
		slow <- err
	}()
	select {
	case <-a.started:
	case err := <-slow:
		t.Fatalf("slow request ended early: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("slow request did not reach web-a")
	}
	if err := b.Register(ctx, "web", "web-b", c.endpoint()); err != nil {
		t.Fatal(err)
	}
	// Registering again changes nothing.
	if err := b.Register(ctx, "web", "web-b", c.endpoint()); err != nil {
		t.Fatal(err)
	}
	l, err := b.List(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := names(l), "web-a@"+a.endpoint()+",web-b@"+c.endpoint(); got != want {
		t.Fatalf("List = %s, want %s", got, want)
	}
	if l[0].Sessions != 1 || l[0].Draining || l[1].Role != "web" {
		t.Fatalf("List = %+v, want web-a with the slow session, nothing draining", l)
	}
	seen := map[string]int{}
	for range 10 {
		body, err := get(url + "/")
		if err != nil {
			t.Fatal(err)
		}
		seen[body]++
	}
	if seen["web-a"] == 0 || seen["web-b"] == 0 {
		t.Fatalf("requests reached %v, want both servers", seen)
	}

	drained := make(chan error, 1)
	go func() {
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		drained <- b.Drain(dctx, "web", "web-a")
	}()
	eventually(t, "web-a draining", func() bool {
		l, err := b.List(ctx, "web")
		return err == nil && len(l) == 2 && l[0].Draining
	})
	for range 10 {
		body, err := get(url + "/")
		if err != nil {
			t.Fatal(err)
		}
		if body != "web-b" {
			t.Fatalf("a request reached %s while it drains", body)
		}
	}
	select {
	case err := <-drained:
		t.Fatalf("Drain returned (%v) while a session to web-a is open", err)
	default:
	}
	close(a.release)
	if err := <-slow; err != nil {
		t.Fatalf("the request in flight during the drain: %v", err)
	}
	select {
	case err := <-drained:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Drain did not return after the last session ended")
	}

	if err := b.Deregister(ctx, "web", "web-a"); err != nil {
		t.Fatal(err)
	}
	for _, f := range []func() error{
		func() error { return b.Deregister(ctx, "web", "web-a") },
		func() error { return b.Drain(ctx, "web", "web-a") },
		func() error { return b.Deregister(ctx, "web", "web-zz") },
	} {
		if err := f(); err != nil {
			t.Fatalf("on a server that is gone: %v", err)
		}
	}
	l, err = b.List(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := names(l), "web-b@"+c.endpoint(); got != want {
		t.Fatalf("List = %s, want %s", got, want)
	}
	for range 4 {
		if body, err := get(url + "/"); err != nil || body != "web-b" {
			t.Fatalf("after deregister: %q, %v", body, err)
		}
	}
}

func TestRegisterAgainEndsDrainAndMoves(t *testing.T) {
	needHAProxy(t)
	ctx := context.Background()
	front := freeAddr(t)
	b := openFront(t, t.TempDir(), fmt.Sprintf("frontend = %q", front))
	a, a2 := newUpstream(t, "first"), newUpstream(t, "second")
	if err := b.Register(ctx, "web", "web-1", a.endpoint()); err != nil {
		t.Fatal(err)
	}
	if err := b.Drain(ctx, "web", "web-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := get("http://" + front); err == nil {
		t.Fatal("a request succeeded with the only server draining")
	}
	// The same server comes back at another address.
	if err := b.Register(ctx, "web", "web-1", a2.endpoint()); err != nil {
		t.Fatal(err)
	}
	l, err := b.List(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if len(l) != 1 || l[0].Draining || l[0].Endpoint != a2.endpoint() {
		t.Fatalf("List = %+v", l)
	}
	if body, err := get("http://" + front); err != nil || body != "second" {
		t.Fatalf("got %q, %v; want second", body, err)
	}
}

func TestRegisterRejects(t *testing.T) {
	needHAProxy(t)
	ctx := context.Background()
	b := openFront(t, t.TempDir(), fmt.Sprintf("frontend = %q", freeAddr(t)))
	for _, tc := range []struct{ server, endpoint, want string }{
		{"web-1", "127.0.0.1", `endpoint "127.0.0.1" is not host:port`},
		{"web-1", "127.0.0.1:http", `"http" is not a port`},
		{"web-1", "127.0.0.1:0", `"0" is not a port`},
		{"web-1", ":8080", "has no host"},
		{"web-1", "no-such-host.invalid:80", `cannot resolve "no-such-host.invalid"`},
		{"web 1", "127.0.0.1:80", `server name "web 1"`},
	} {
		err := b.Register(ctx, "web", tc.server, tc.endpoint)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), `balancer "front"`) {
			t.Errorf("Register(%q, %q) = %v, want an error with %q", tc.server, tc.endpoint, err, tc.want)
		}
	}
	if err := b.Register(ctx, "web", "web-1", "localhost:8081"); err != nil {
		t.Fatalf("a host name: %v", err)
	}
	err := b.Register(ctx, "db", "db-1", "127.0.0.1:5432")
	if err == nil || !strings.Contains(err.Error(), `routes role "web"`) {
		t.Fatalf("a second role: %v", err)
	}
	if l, err := b.List(ctx, "db"); err != nil || len(l) != 0 {
		t.Fatalf("List(db) = %v, %v", l, err)
	}
}

// TestRestartKeepsHAProxy is the orchestrator restarting: the new instance
// attaches to the haproxy the first one started, which kept routing.
func TestRestartKeepsHAProxy(t *testing.T) {
	needHAProxy(t)
	ctx := context.Background()
	dir, front := t.TempDir(), freeAddr(t)
	src := fmt.Sprintf("frontend = %q", front)
	b := openFront(t, dir, src)
	pid := b.proc.running(ctx)
	u := newUpstream(t, "web-1")
	if err := b.Register(ctx, "web", "web-1", u.endpoint()); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if body, err := get("http://" + front); err != nil || body != "web-1" {
		t.Fatalf("after Close: %q, %v", body, err)
	}

	b2 := openFront(t, dir, src)
	if got := b2.proc.running(ctx); got != pid {
		t.Fatalf("haproxy pid %d after reopening, want %d (not restarted)", got, pid)
	}
	l, err := b2.List(ctx, "web")
	if err != nil || names(l) != "web-1@"+u.endpoint() {
		t.Fatalf("List after reopening = %v, %v", l, err)
	}

	// A changed block replaces haproxy, keeping its servers and its port,
	// and no request fails meanwhile.
	stop := make(chan struct{})
	failed := make(chan error, 1)
	var served int
	go func() {
		defer close(failed)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if body, err := get("http://" + front); err != nil || body != "web-1" {
				failed <- fmt.Errorf("request %d during the replacement: %q, %v", served, body, err)
				return
			}
			served++
		}
	}()
	b3 := openFront(t, dir, src+"\nbalance = \"leastconn\"\ntimeouts { server = \"30s\" }")
	eventually(t, "requests through the new haproxy", func() bool {
		return statField(t, b3.api, "be_front", "web-1", "stot") >= 3
	})
	close(stop)
	if err := <-failed; err != nil {
		t.Fatal(err)
	}
	newPID := b3.proc.running(ctx)
	if newPID == pid || newPID == 0 {
		t.Fatalf("haproxy pid %d after a config change, want a new one (old %d)", newPID, pid)
	}
	cfg, err := os.ReadFile(filepath.Join(b3.Dir(), configFile))
	if err != nil || !strings.Contains(string(cfg), "balance leastconn") {
		t.Fatalf("config: %s, %v", cfg, err)
	}
	l, err = b3.List(ctx, "web")
	if err != nil || names(l) != "web-1@"+u.endpoint() {
		t.Fatalf("List after replacing haproxy = %v, %v", l, err)
	}
	if body, err := get("http://" + front); err != nil || body != "web-1" {
		t.Fatalf("after replacing haproxy: %q, %v", body, err)
	}
	// Servers carried over are deleted like dynamic ones.
	if err := b3.Deregister(ctx, "web", "web-1"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the old haproxy to exit", func() bool { return !alive(pid) })

	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := b3.Stop(sctx); err != nil {
		t.Fatal(err)
	}
	if alive(newPID) {
		t.Fatalf("haproxy %d runs after Stop", newPID)
	}
	if _, err := net.DialTimeout("tcp", front, time.Second); err == nil {
		t.Fatal("the frontend accepts connections after Stop")
	}
}

func TestAttach(t *testing.T) {
	needHAProxy(t)
	ctx := context.Background()
	front := freeAddr(t)
	managed := openFront(t, t.TempDir(), fmt.Sprintf("frontend = %q", front))
	sock := filepath.Join(managed.Dir(), socketFile)

	b, err := New(ctx, "ext", Config{Socket: sock, Backends: map[string]string{"web": "be_front"}, CheckInterval: time.Second}, balancer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if b.Managed() || b.Dir() != "" {
		t.Fatal("an attached balancer says it is managed")
	}
	u := newUpstream(t, "web-9")
	if err := b.Register(ctx, "web", "web-9", u.endpoint()); err != nil {
		t.Fatal(err)
	}
	if body, err := get("http://" + front); err != nil || body != "web-9" {
		t.Fatalf("through the attached backend: %q, %v", body, err)
	}
	if err := b.Register(ctx, "api", "api-1", u.endpoint()); err == nil || !strings.Contains(err.Error(), `no backend for role "api"`) {
		t.Fatalf("a role without a backend: %v", err)
	}
	if err := b.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if managed.proc.running(ctx) == 0 {
		t.Fatal("Stop of an attached balancer stopped haproxy")
	}

	_, err = New(ctx, "ext", Config{Socket: sock, Backends: map[string]string{"web": "be_nope"}}, balancer.Options{})
	if err == nil || !strings.Contains(err.Error(), `backend "be_nope"`) {
		t.Fatalf("attaching to a missing backend: %v", err)
	}
	_, err = New(ctx, "ext", Config{Socket: filepath.Join(t.TempDir(), "none.sock")}, balancer.Options{})
	if err == nil || !strings.Contains(err.Error(), "none.sock") {
		t.Fatalf("attaching to a missing socket: %v", err)
	}
}

func TestStartFailureIsReported(t *testing.T) {
	needHAProxy(t)
	// The frontend's port is taken.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = balancer.Open(context.Background(), config.Balancer{Type: Type, Name: "front",
		Body: parseBody(t, fmt.Sprintf("frontend = %q", l.Addr()))}, balancer.Options{DataDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "haproxy") || !strings.Contains(err.Error(), l.Addr().String()) {
		t.Fatalf("Open with the port taken: %v", err)
	}
}

// statField returns one numeric field of a server's `show stat` line.
func statField(t testing.TB, api runtimeAPI, backend, server, field string) int {
	t.Helper()
	out, err := api.exec(context.Background(), "show stat "+backend+" 4 -1")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	cols := strings.Split(strings.TrimPrefix(lines[0], "# "), ",")
	for _, l := range lines[1:] {
		f := strings.Split(l, ",")
		if len(f) < len(cols) || f[1] != server {
			continue
		}
		for i, c := range cols {
			if c == field {
				n, _ := strconv.Atoi(f[i])
				return n
			}
		}
	}
	t.Fatalf("no %s for %s/%s in %q", field, backend, server, out)
	return 0
}

// TestReviveAfterCrash: a managed haproxy that died is started again by the
// next List, with an empty backend for reconcile to fill.
func TestReviveAfterCrash(t *testing.T) {
	needHAProxy(t)
	ctx := context.Background()
	front := freeAddr(t)
	b := openFront(t, t.TempDir(), fmt.Sprintf("frontend = %q", front))
	u := newUpstream(t, "web-1")
	if err := b.Register(ctx, "web", "web-1", u.endpoint()); err != nil {
		t.Fatal(err)
	}
	pid := b.proc.running(ctx)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, "haproxy to die", func() bool { return !alive(pid) })
	l, err := b.List(ctx, "web")
	if err != nil || len(l) != 0 {
		t.Fatalf("List after the crash = %v, %v; want an empty list", l, err)
	}
	if got := b.proc.running(ctx); got == 0 || got == pid {
		t.Fatalf("haproxy pid %d after the crash (old %d)", got, pid)
	}
	if err := b.Register(ctx, "web", "web-1", u.endpoint()); err != nil {
		t.Fatal(err)
	}
	if body, err := get("http://" + front); err != nil || body != "web-1" {
		t.Fatalf("after the restart: %q, %v", body, err)
	}
}
