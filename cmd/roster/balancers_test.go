package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/rosterhq/roster/core/balancer"
	"github.com/rosterhq/roster/core/orchestrator"
	"github.com/rosterhq/roster/plugins/static"
)

func TestValidateLampExample(t *testing.T) {
	inProcessSchemas(t)
	code, out, errs := runCmd("validate", "../../examples/lamp")
	if code != 0 || errs != "" {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
	if !strings.Contains(out, "2 roles") {
		t.Errorf("stdout: %s", out)
	}
}

func TestValidateReportsBalancerBlocks(t *testing.T) {
	inProcessSchemas(t)
	dir := t.TempDir()
	src := `cluster = "x"
roles   = []
balancer "haproxy" "front" {
  frontend = "127.0.0.1:99999"
  balnce   = "leastconn"
}
balancer "file" "nginx" {}
balancer "none" "nothing" {
  extra = 1
}
`
	must(t, os.WriteFile(filepath.Join(dir, "roster.hcl"), []byte(src), 0o644))
	code, out, _ := runCmd("validate", "-json", dir)
	if code != 1 {
		t.Fatalf("exit %d, want 1; stdout: %s", code, out)
	}
	var res validateJSON
	must(t, json.Unmarshal([]byte(out), &res))
	type want struct {
		summary string
		line    int
		column  int
	}
	wants := []want{
		{"Invalid frontend", 4, 14},    // the value
		{"Unsupported argument", 5, 3}, // did you mean "balance"?
		{"Missing required argument", 7, 0},
		{"Unsupported argument", 9, 3},
	}
	for _, w := range wants {
		found := false
		for _, d := range res.Diagnostics {
			if d.Severity == "error" && d.Summary == w.summary && d.Range != nil && d.Range.Start.Line == w.line &&
				(w.column == 0 || d.Range.Start.Column == w.column) && strings.HasSuffix(d.Range.Filename, "roster.hcl") {
				found = true
			}
		}
		if !found {
			t.Errorf("no %q error at line %d col %d; got %s", w.summary, w.line, w.column, out)
		}
	}
	if res.ErrorCount != len(wants) {
		t.Errorf("error_count = %d, want %d: %s", res.ErrorCount, len(wants), out)
	}
}

// stopRecorder is a balancer that records Stop.
type stopRecorder struct {
	*balancer.None
	stopped bool
	err     error
}

func (s *stopRecorder) Stop(context.Context) error { s.stopped = true; return s.err }

func TestStopBalancersStopsOnlyStoppers(t *testing.T) {
	a := &stopRecorder{None: balancer.NewNone("a")}
	b := &stopRecorder{None: balancer.NewNone("b"), err: errors.New("stuck")}
	bals := map[string]balancer.Balancer{"a": a, "b": b, "plain": balancer.NewNone("plain")}
	err := stopBalancers(context.Background(), bals, hclog.NewNullLogger())
	if !a.stopped || !b.stopped {
		t.Errorf("stopped a=%v b=%v, want both", a.stopped, b.stopped)
	}
	if err == nil || !strings.Contains(err.Error(), `balancer "b"`) || !strings.Contains(err.Error(), "stuck") {
		t.Errorf("err = %v, want one naming balancer b", err)
	}
}

// freePort returns a loopback port nobody listens on now.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// haproxyPid reads a managed haproxy's pid, 0 when there is none running.
func haproxyPid(dataDir, name string) int {
	b, err := os.ReadFile(filepath.Join(dataDir, "balancers", name, "haproxy.pid"))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || syscall.Kill(pid, 0) != nil {
		return 0
	}
	if stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && isZombie(string(stat)) {
		return 0
	}
	return pid
}

// TestE2EHaproxyRegistersDrainsAndStops runs the static role behind a
// managed haproxy: ready servers take traffic through it; a server scaled
// in is drained and removed from haproxy before its halt is sent; `roster
// orchestrator` stopping leaves haproxy serving, and `roster up` stops it
// on Ctrl-C.
func TestE2EHaproxyRegistersDrainsAndStops(t *testing.T) {
	e := newE2E(t, 0, "0s", e2eRole{Min: 1, Max: 2, Scale: true})
	front := e.useHaproxy()
	cfgPath := filepath.Join(e.dir, "roster.hcl")

	e.setMetrics("load 0.9")
	e.start()
	e.waitFor("two servers registered", 60*time.Second, registeredN(2))
	seen := map[string]bool{}
	waitUntil(t, "both servers answering through haproxy", 20*time.Second, func() bool {
		if name, err := getServer(front); err == nil {
			seen[name] = true
		}
		return len(seen) == 2
	})

	// Scale in: the server taken out must leave haproxy before its halt.
	e.setMetrics("load 0.1")
	st := e.waitFor("one server left", 60*time.Second, pool(1, 0))
	kept := st.Servers[0].Name
	var gone string
	for name := range seen {
		if name != kept {
			gone = name
		}
	}
	log := e.log()
	removed := strings.Index(log, "server removed")
	halt := strings.Index(log, gone+": halt (")
	switch {
	case removed < 0 || halt < 0:
		t.Errorf("log lacks the removal from haproxy (%d) or the halt of %s (%d)", removed, gone, halt)
	case !strings.Contains(log[removed:min(len(log), removed+200)], gone):
		t.Errorf("the first server removed from haproxy is not %s: %s", gone, log[removed:min(len(log), removed+200)])
	case removed > halt:
		t.Errorf("%s was halted before haproxy removed it", gone)
	}
	for range 5 {
		if name, err := getServer(front); err != nil || name != kept {
			t.Errorf("through haproxy: %q, %v; want %s only", name, err, kept)
		}
	}

	// roster orchestrator stops; haproxy keeps serving.
	must(t, e.cmd.Process.Signal(syscall.SIGTERM))
	_ = e.cmd.Wait()
	e.cmd = nil
	pid := haproxyPid(e.dataDir, "front")
	if pid == 0 {
		t.Fatal("haproxy stopped with roster orchestrator; it must keep running")
	}
	if name, err := getServer(front); err != nil || name != kept {
		t.Errorf("with the orchestrator stopped: %q, %v; want %s", name, err, kept)
	}

	// roster up attaches to it, and Ctrl-C stops it with the fleet.
	up := exec.Command(os.Args[0], "up", "-plain", cfgPath)
	up.Dir = e.dir
	var out bytes.Buffer
	sb := &syncBuffer{b: &out}
	up.Stdout, up.Stderr = sb, sb
	must(t, up.Start())
	waited := make(chan error, 1)
	go func() { waited <- up.Wait() }()
	t.Cleanup(func() {
		_ = up.Process.Kill()
	})
	_ = os.Remove(filepath.Join(e.dataDir, APIAddrFile))
	e.addr = ""
	waitUntil(t, "roster up's API", 30*time.Second, func() bool {
		b, err := os.ReadFile(filepath.Join(e.dataDir, APIAddrFile))
		if err == nil && len(bytes.TrimSpace(b)) > 0 {
			e.addr = strings.TrimSpace(string(b))
			var st orchestrator.Status
			return e.tryGet("/v1/status", &st) == nil && st.Epoch > 0
		}
		return false
	})
	if p := haproxyPid(e.dataDir, "front"); p != pid {
		t.Errorf("roster up started haproxy %d instead of attaching to %d", p, pid)
	}
	must(t, up.Process.Signal(syscall.SIGINT))
	select {
	case err := <-waited:
		if err != nil {
			t.Errorf("roster up exited with %v:\n%s", err, out.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("roster up did not stop within 60s of SIGINT:\n%s", out.String())
	}
	if syscall.Kill(pid, 0) == nil {
		if stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && !isZombie(string(stat)) {
			t.Errorf("haproxy %d still runs after roster up stopped", pid)
		}
	}
	if c, err := net.DialTimeout("tcp", front, time.Second); err == nil {
		c.Close()
		t.Errorf("%s still accepts connections after roster up stopped", front)
	}
}

// useHaproxy puts a managed haproxy on a free port in place of the e2e
// config's `none` balancer, killed when the test ends, and returns its
// frontend's address.
func (e *e2e) useHaproxy() string {
	t := e.t
	t.Helper()
	if _, err := exec.LookPath("haproxy"); err != nil {
		if _, err := os.Stat("/usr/sbin/haproxy"); err != nil {
			t.Skip("haproxy is not installed (make test-deps installs it)")
		}
	}
	front := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfgPath := filepath.Join(e.dir, "roster.hcl")
	cfg, err := os.ReadFile(cfgPath)
	must(t, err)
	hap := fmt.Sprintf("balancer \"haproxy\" \"front\" {\n  frontend       = %q\n  check_interval = \"500ms\"\n}", front)
	if !bytes.Contains(cfg, []byte(`balancer "none" "front" {}`)) {
		t.Fatalf("the e2e config has changed: %s", cfg)
	}
	must(t, os.WriteFile(cfgPath, bytes.Replace(cfg, []byte(`balancer "none" "front" {}`), []byte(hap), 1), 0o644))
	t.Cleanup(func() {
		if pid := haproxyPid(e.dataDir, "front"); pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	return front
}

// registered counts the ready servers of role registered with their
// balancer.
func registered(st orchestrator.Status, role string) int {
	n := 0
	for _, s := range st.Servers {
		if s.Role == role && s.State == orchestrator.ServerReady && s.Registered {
			n++
		}
	}
	return n
}

// registeredN says n ready web servers are registered.
func registeredN(n int) func(orchestrator.Status) bool {
	return func(st orchestrator.Status) bool { return registered(st, "web") == n }
}

// getServer asks haproxy's frontend for a page and returns the static
// server that answered.
func getServer(front string) (string, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + front + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %s", resp.Status)
	}
	return resp.Header.Get(static.ServerHeader), nil
}
