package pluginhost

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/rosterhq/roster/sdk"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func launch(t *testing.T, h *Host, name string) *Plugin {
	t.Helper()
	p, err := h.Launch(ctxT(t), name)
	if err != nil {
		t.Fatalf("Launch(%q): %v", name, err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func health(t *testing.T, p *Plugin, mode string) sdk.HealthCheckResponse {
	t.Helper()
	cfg, err := sdk.ConfigFromMap(map[string]any{"mode": mode})
	if err != nil {
		t.Fatal(err)
	}
	r, err := p.HealthCheck(ctxT(t), sdk.HealthCheckRequest{Config: cfg})
	if err != nil {
		t.Fatalf("HealthCheck: %v", err)
	}
	return r
}

func TestDiscoveryAndList(t *testing.T) {
	dir, _ := testPlugin(t)
	// Not executable: found, but listed with an error.
	if err := os.WriteFile(filepath.Join(dir, ExecutablePrefix+"noexec"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Shadows the built-in: not used.
	copyFile(t, filepath.Join(dir, ExecutablePrefix+"testplugin"), filepath.Join(dir, ExecutablePrefix+"selftest"))
	// Not a plugin at all.
	if err := os.WriteFile(filepath.Join(dir, "README"), []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	h, err := New(Options{PluginDir: dir, SelfExe: os.Args[0], Builtins: []string{"selftest"}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	names, err := h.Names()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(names, ","); got != "noexec,selftest,testplugin" {
		t.Errorf("Names = %s, want noexec,selftest,testplugin", got)
	}

	list, err := h.List(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string][]PluginInfo{}
	for _, p := range list {
		byName[p.Name] = append(byName[p.Name], p)
	}
	self := byName["selftest"]
	if len(self) != 2 {
		t.Fatalf("selftest listed %d times, want twice (built-in, and the shadowed file): %+v", len(self), self)
	}
	if !self[0].Builtin || self[0].Err != nil || self[0].Info.Name != "selftest" || self[0].Info.Version != "0.0.1-self" {
		t.Errorf("built-in selftest: %+v", self[0])
	}
	if self[0].Info.ProtocolVersion != sdk.ProtocolVersion {
		t.Errorf("built-in protocol version %d", self[0].Info.ProtocolVersion)
	}
	if self[1].Err == nil || !strings.Contains(self[1].Err.Error(), "built-in") {
		t.Errorf("shadowed selftest: want an error naming the built-in precedence, got %v", self[1].Err)
	}
	tp := byName["testplugin"]
	if len(tp) != 1 || tp[0].Err != nil || tp[0].Builtin {
		t.Fatalf("testplugin: %+v", tp)
	}
	if tp[0].Info.Version != "1.2.3" || !strings.HasPrefix(tp[0].Digest, "sha256:") {
		t.Errorf("testplugin info %+v digest %q", tp[0].Info, tp[0].Digest)
	}
	want, _ := FileDigest(tp[0].Path)
	if tp[0].Digest != want {
		t.Errorf("digest %s, want %s", tp[0].Digest, want)
	}
	if len(tp[0].Schema.Attributes) != 1 || tp[0].Schema.Attributes[0].Name != "mode" ||
		len(tp[0].Schema.Blocks) != 1 || tp[0].Schema.Blocks[0].Schema.Attributes[0].Name != "n" {
		t.Errorf("testplugin schema %+v", tp[0].Schema)
	}
	if ne := byName["noexec"]; len(ne) != 1 || ne[0].Err == nil || !strings.Contains(ne[0].Err.Error(), "not executable") {
		t.Errorf("noexec: %+v", ne)
	}

	// The built-in wins over the file of the same name.
	p := launch(t, h, "selftest")
	if !p.Builtin() {
		t.Errorf("selftest launched from %s, not the built-in", p.Path())
	}
	if r := health(t, p, ""); int(r.Metrics["pid"]) != p.Pid() {
		t.Errorf("built-in pid %v, Pid() %d", r.Metrics["pid"], p.Pid())
	}

	for _, name := range []string{"missing", "../testplugin", "Bad"} {
		if _, err := h.Launch(ctxT(t), name); !errors.Is(err, sdk.ErrNotFound) {
			t.Errorf("Launch(%q): %v, want sdk.ErrNotFound", name, err)
		}
		if _, err := h.PluginSchema(ctxT(t), name); !errors.Is(err, sdk.ErrNotFound) {
			t.Errorf("PluginSchema(%q): %v, want sdk.ErrNotFound", name, err)
		}
	}
	h2, _ := New(Options{Logger: testLogger(t)})
	if _, err := h2.Launch(ctxT(t), "testplugin"); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("without plugin_dir: %v, want sdk.ErrNotFound", err)
	}
}

func TestPluginSchemaCachedPerDigest(t *testing.T) {
	dir, path := testPlugin(t)
	var logs syncBuffer
	h, err := New(Options{PluginDir: dir, Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Debug, Output: &logs})})
	if err != nil {
		t.Fatal(err)
	}
	starts := func() int { return strings.Count(logs.String(), "plugin process started") }
	for i := 0; i < 2; i++ {
		s, err := h.PluginSchema(ctxT(t), "testplugin")
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Attributes) != 1 || s.Attributes[0].Name != "mode" {
			t.Fatalf("schema %+v", s)
		}
	}
	// One launch answered both: Info is kept beside the schema.
	if info, err := h.RoleInfo(ctxT(t), "testplugin"); err != nil || info.Name != "testplugin" || !info.Stateful {
		t.Fatalf("RoleInfo = %+v, %v", info, err)
	}
	if n := starts(); n != 1 {
		t.Fatalf("two PluginSchema calls and a RoleInfo started %d processes, want 1", n)
	}
	// A changed file is a new digest, asked afresh.
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.Write([]byte("trailing bytes change the digest, not the program"))
	_ = f.Close()
	if _, err := h.PluginSchema(ctxT(t), "testplugin"); err != nil {
		t.Fatal(err)
	}
	if n := starts(); n != 2 {
		t.Fatalf("after the file changed: %d processes started, want 2", n)
	}
	d2, _ := FileDigest(path)
	if _, ok := h.cached("testplugin", d2); !ok {
		t.Fatalf("schema not cached under the new digest %s", d2)
	}
}

func TestRoundTrip(t *testing.T) {
	dir, _ := testPlugin(t)
	h, err := New(Options{PluginDir: dir, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	p := launch(t, h, "testplugin")
	ctx := ctxT(t)
	info, err := p.Info(ctx)
	if err != nil || info.Name != "testplugin" || info.Version != "1.2.3" || info.ProtocolVersion != sdk.ProtocolVersion {
		t.Fatalf("Info = %+v, %v", info, err)
	}
	schema, err := p.ConfigSchema(ctx)
	if err != nil || len(schema.Attributes) != 1 {
		t.Fatalf("ConfigSchema = %+v, %v", schema, err)
	}
	srv := sdk.Server{Role: "t", Name: "t-1", MachineID: "m", WorkDir: t.TempDir()}
	prov, err := p.Provision(ctx, sdk.ProvisionRequest{Server: srv})
	if err != nil || prov.Endpoints["test"] != "127.0.0.1:1" {
		t.Fatalf("Provision = %+v, %v", prov, err)
	}
	r := health(t, p, "")
	if !r.Healthy || int(r.Metrics["pid"]) != p.Pid() {
		t.Fatalf("HealthCheck = %+v (Pid %d)", r, p.Pid())
	}
	if _, err := p.Drain(ctx, sdk.DrainRequest{Server: srv, Deadline: time.Now().Add(time.Second)}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Teardown(ctx, sdk.TeardownRequest{Server: srv}); err != nil {
		t.Fatal(err)
	}
	if err := p.Configure(ctx, sdk.ConfigureRequest{Server: srv}); !errors.Is(err, sdk.ErrUnimplemented) {
		t.Fatalf("Configure: %v, want sdk.ErrUnimplemented", err)
	}
	pid := p.Pid()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pid, 10*time.Second)
	if _, err := p.Info(ctx); !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("Info after Close: %v, want sdk.ErrUnavailable", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// events collects a host's events.
type events struct {
	ch chan Event
}

func newEvents() *events { return &events{ch: make(chan Event, 100)} }

func (e *events) on(ev Event) { e.ch <- ev }

func (e *events) wait(t *testing.T, kind EventKind) Event {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case ev := <-e.ch:
			if ev.Kind == kind {
				return ev
			}
		case <-deadline:
			t.Fatalf("no %s event", kind)
		}
	}
}

func TestCrashedPluginIsRelaunched(t *testing.T) {
	dir, _ := testPlugin(t)
	ev := newEvents()
	var logs syncBuffer
	logger := hclog.New(&hclog.LoggerOptions{Level: hclog.Info, Output: io.MultiWriter(&logs, testWriter{t}), JSONFormat: true})
	h, err := New(Options{PluginDir: dir, Logger: logger, OnEvent: ev.on,
		Backoff: Backoff{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	p := launch(t, h, "testplugin")
	ev.wait(t, EventStarted)
	for round := 1; round <= 2; round++ {
		old := p.Pid()
		if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		// Noticed without any call being made.
		ex := ev.wait(t, EventExited)
		if ex.Pid != old || ex.ExitStatus != "signal: killed" || ex.Restarts != round-1 {
			t.Errorf("exit event %+v, want pid %d, signal: killed, %d restarts", ex, old, round-1)
		}
		st := ev.wait(t, EventStarted)
		if st.Restarts != round || st.Pid == old {
			t.Errorf("start event %+v after killing %d", st, old)
		}
		r := health(t, p, "")
		if int(r.Metrics["pid"]) != st.Pid || p.Pid() != st.Pid || p.Restarts() != round {
			t.Errorf("after relaunch: metrics pid %v, Pid %d, event pid %d, restarts %d", r.Metrics["pid"], p.Pid(), st.Pid, p.Restarts())
		}
	}
	out := logs.String()
	for _, want := range []string{`"@message":"plugin exited"`, `"exit_status":"signal: killed"`, `"plugin":"testplugin"`, `"restarts":1`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s", want)
		}
	}
}

func TestCallsFailFastWhileDown(t *testing.T) {
	dir, _ := testPlugin(t)
	ev := newEvents()
	h, err := New(Options{PluginDir: dir, Logger: testLogger(t), OnEvent: ev.on,
		Backoff: Backoff{Initial: time.Hour, Max: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	p := launch(t, h, "testplugin")
	pid := p.Pid()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ex := ev.wait(t, EventExited)
	if ex.Backoff != time.Hour {
		t.Errorf("backoff %s, want 1h", ex.Backoff)
	}
	_, err = p.HealthCheck(ctxT(t), sdk.HealthCheckRequest{})
	if !errors.Is(err, sdk.ErrUnavailable) || !strings.Contains(err.Error(), "testplugin") {
		t.Fatalf("HealthCheck while down: %v, want sdk.ErrUnavailable naming the plugin", err)
	}
	if p.Pid() != 0 {
		t.Errorf("Pid while down = %d", p.Pid())
	}
	// Close interrupts the backoff.
	done := make(chan struct{})
	go func() { _ = p.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not interrupt the relaunch backoff")
	}
	ev.wait(t, EventClosed)
}

func TestChecksumPin(t *testing.T) {
	dir, path := testPlugin(t)
	digest, err := FileDigest(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{PluginDir: dir, Logger: testLogger(t), Pins: map[string]string{"testplugin": strings.ToUpper(digest[:10]) + digest[10:]}}); err == nil {
		t.Fatal("a pin with an upper-case prefix was accepted")
	}
	good, err := New(Options{PluginDir: dir, Logger: testLogger(t), Pins: map[string]string{"testplugin": "sha256:" + strings.ToUpper(digest[7:])}})
	if err != nil {
		t.Fatal(err)
	}
	p := launch(t, good, "testplugin")
	if r := health(t, p, ""); !r.Healthy {
		t.Fatalf("pinned plugin: %+v", r)
	}
	_ = p.Close()

	// The same host hashes afresh on every launch: change the file and
	// the pin refuses it.
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.Write([]byte{0})
	_ = f.Close()
	actual, _ := FileDigest(path)
	_, err = good.Launch(ctxT(t), "testplugin")
	if !errors.Is(err, sdk.ErrChecksumMismatch) {
		t.Fatalf("Launch of a changed file: %v, want sdk.ErrChecksumMismatch", err)
	}
	for _, want := range []string{path, digest, actual} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if _, err := good.PluginSchema(ctxT(t), "testplugin"); !errors.Is(err, sdk.ErrChecksumMismatch) {
		t.Errorf("PluginSchema of a changed file: %v, want sdk.ErrChecksumMismatch", err)
	}
	list, _ := good.List(ctxT(t))
	if len(list) != 1 || !errors.Is(list[0].Err, sdk.ErrChecksumMismatch) {
		t.Errorf("List: %+v", list)
	}

	for _, bad := range []string{"md5:abc", "sha256:xyz", "sha256:" + strings.Repeat("a", 63)} {
		if _, err := New(Options{Pins: map[string]string{"x": bad}}); err == nil {
			t.Errorf("pin %q accepted", bad)
		}
	}
}

func TestEnvironmentAllowList(t *testing.T) {
	dir, _ := testPlugin(t)
	t.Setenv("AWS_SECRET_ACCESS_KEY", "very-secret")
	t.Setenv("ROSTER_TEST_SECRET", "also-secret")
	t.Setenv("LC_ALL", "C.UTF-8")
	t.Setenv("TEST_EXTRA", "from-the-host")
	h, err := New(Options{PluginDir: dir, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	p := launch(t, h, "testplugin")
	m := health(t, p, "").Metrics
	for k, want := range map[string]float64{"env_aws_secret": 0, "env_roster_secret": 0, "env_extra": 0,
		"env_path": 1, "env_lc_all": 1, "env_log_level": 1} {
		if m[k] != want {
			t.Errorf("%s = %v, want %v", k, m[k], want)
		}
	}

	h, err = New(Options{PluginDir: dir, Logger: testLogger(t), ExtraEnv: []string{"TEST_EXTRA"}})
	if err != nil {
		t.Fatal(err)
	}
	if m := health(t, launch(t, h, "testplugin"), "").Metrics; m["env_extra"] != 1 || m["env_aws_secret"] != 0 {
		t.Errorf("ExtraEnv passthrough: %v", m)
	}
}

func TestPluginEnv(t *testing.T) {
	host := []string{"PATH=/bin", "HOME=/root", "AWS_ACCESS_KEY_ID=a", "AWS_SECRET_ACCESS_KEY=s", "ROSTER_TOKEN=t",
		"LC_TIME=C", "LANG=C.UTF-8", "FOO=bar", "ROSTER_PLUGIN=spoof"}
	got := pluginEnv(host, []string{"FOO", "BAR=1", "MISSING"}, []string{"ROSTER_PLUGIN=cookie", "PLUGIN_MIN_PORT=1"})
	want := []string{"BAR=1", "FOO=bar", "HOME=/root", "LANG=C.UTF-8", "LC_TIME=C", "PATH=/bin", "PLUGIN_MIN_PORT=1", "ROSTER_PLUGIN=cookie"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("pluginEnv =\n%v\nwant\n%v", got, want)
	}
}

// syncBuffer is a bytes.Buffer safe for the logger's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestLongLogLines(t *testing.T) {
	dir, _ := testPlugin(t)
	var logs syncBuffer
	logger := hclog.New(&hclog.LoggerOptions{Name: "agent", Level: hclog.Debug, Output: &logs, JSONFormat: true})
	h, err := New(Options{PluginDir: dir, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	p := launch(t, h, "testplugin")
	if r := health(t, p, "biglog"); !r.Healthy {
		t.Fatalf("%+v", r)
	}
	// Still answering, and more than once.
	for i := 0; i < 3; i++ {
		health(t, p, "")
	}
	// The lines arrive asynchronously; wait for all of them.
	wants := map[string]string{"raw": "raw-end", "json": "json-end", "stdio": "stdio-end", "stdout": "stdout-end"}
	deadline := time.Now().Add(20 * time.Second)
	for {
		missing := []string{}
		for k, end := range wants {
			if !wholeLine(logs.String(), k+"-begin", end) {
				missing = append(missing, k)
			}
		}
		// The 3 MiB line without newlines comes in pieces of 1 MiB.
		if n := strings.Count(logs.String(), `"partial":true`); n < 3 {
			missing = append(missing, "3 MiB line in 3 pieces")
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			for _, l := range strings.Split(logs.String(), "\n") {
				if strings.Contains(l, "json-begin") {
					t.Logf("json line: %s … %s", l[:min(len(l), 300)], l[max(0, len(l)-300):])
				}
			}
			t.Fatalf("log lines not found whole, under agent.plugin.testplugin: %v", missing)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// wholeLine says whether one log entry of logger agent.plugin.testplugin
// holds both begin and end.
func wholeLine(logs, begin, end string) bool {
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, begin) && strings.Contains(l, end) && strings.Contains(l, `"@module":"agent.plugin.testplugin"`) &&
			strings.Count(l, `"@module"`) == 1 {
			return true
		}
	}
	return false
}

func TestLineLogger(t *testing.T) {
	var buf syncBuffer
	l := newLineLogger(hclog.New(&hclog.LoggerOptions{Output: &buf, JSONFormat: true}), hclog.Info, 8)
	for _, chunk := range []string{"ab", "c\nde", "fghijklmnop", "q\n\nr\r\n", "tail"} {
		if _, err := l.Write([]byte(chunk)); err != nil {
			t.Fatal(err)
		}
	}
	var msgs []string
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		i := strings.Index(line, `"@message":"`)
		msg := line[i+len(`"@message":"`):]
		msgs = append(msgs, msg[:strings.IndexByte(msg, '"')])
	}
	if got := strings.Join(msgs, "|"); got != "abc|defghijk|lmnopq|r" {
		t.Errorf("messages %s, want abc|defghijk|lmnopq|r", got)
	}
}

func TestCapLines(t *testing.T) {
	in := strings.Repeat("a", 25) + "\n" + strings.Repeat("b", 5)
	r := &capLines{ReadCloser: io.NopCloser(strings.NewReader(in)), max: 10}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	want := "aaaaaaaaaa\naaaaaaaaaa\naaaaa\nbbbbb"
	if string(out) != want {
		t.Errorf("got %q, want %q", out, want)
	}
	sc := bufio.NewScanner(&capLines{ReadCloser: io.NopCloser(strings.NewReader(strings.Repeat("z", 200<<10))), max: 32 << 10})
	n := 0
	for sc.Scan() {
		n++
	}
	if sc.Err() != nil || n != 7 {
		t.Errorf("scanning a 200 KiB line: %d lines, %v", n, sc.Err())
	}
}

func TestCloseKillsProcessGroup(t *testing.T) {
	dir, _ := testPlugin(t)
	h, err := New(Options{PluginDir: dir, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	p := launch(t, h, "testplugin")
	child := int(health(t, p, "child").Metrics["child_pid"])
	if child == 0 || !alive(child) {
		t.Fatalf("child %d not running", child)
	}
	t.Cleanup(func() { _ = syscall.Kill(child, syscall.SIGKILL) })
	pid := p.Pid()
	_ = p.Close()
	waitGone(t, pid, 10*time.Second)
	waitGone(t, child, 10*time.Second)
}

func TestNoOrphanAfterAgentSIGKILL(t *testing.T) {
	dir, _ := testPlugin(t)
	agent := exec.Command(os.Args[0], "agent-for-test", dir)
	agent.Stderr = testWriter{t}
	out, err := agent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = agent.Process.Kill(); _ = agent.Wait() })
	line := readLine(t, bufio.NewScanner(out), 60*time.Second)
	pid, err := strconv.Atoi(line)
	if err != nil || pid <= 0 {
		t.Fatalf("agent printed %q", line)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	if !alive(pid) {
		t.Fatalf("plugin %d is not running while its agent is", pid)
	}
	if err := agent.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = agent.Wait()
	waitGone(t, pid, 10*time.Second)
}

func TestStartHonoursContext(t *testing.T) {
	dir := t.TempDir()
	// A "plugin" that never completes the handshake.
	script := "#!/bin/sh\nexec sleep 300\n"
	if err := os.WriteFile(filepath.Join(dir, ExecutablePrefix+"hang"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	h, err := New(Options{PluginDir: dir, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := h.Launch(ctx, "hang")
		errc <- err
	}()
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Launch: %v, want context.Canceled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Launch ignored its context")
	}
}

func TestBuiltinStaticFromRosterBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the roster binary")
	}
	roster := build(t, "github.com/rosterhq/roster/cmd/roster", "roster")
	ev := newEvents()
	h, err := New(Options{SelfExe: roster, Builtins: []string{"static"}, Logger: testLogger(t), OnEvent: ev.on,
		Backoff: Backoff{Initial: 10 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	schema, err := h.PluginSchema(ctxT(t), "static")
	if err != nil {
		t.Fatal(err)
	}
	if len(schema.Attributes) == 0 {
		t.Fatal("static declares no attributes")
	}
	p := launch(t, h, "static")
	ev.wait(t, EventStarted)
	ctx := ctxT(t)
	srv := sdk.Server{Role: "web", Name: "web-1", MachineID: "m-1", WorkDir: t.TempDir()}
	cfg, _ := sdk.ConfigFromMap(map[string]any{"port": 0, "provision_delay": "0s"})
	prov, err := p.Provision(ctx, sdk.ProvisionRequest{Server: srv, Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	addr := prov.Endpoints["http"]
	get := func() string {
		t.Helper()
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if body := get(); !strings.Contains(body, "web-1") {
		t.Fatalf("index page %q does not name the server", body)
	}
	// The HTTP server dies with the plugin process; the relaunched
	// process serves again on the same port from the state file.
	if err := syscall.Kill(p.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ev.wait(t, EventExited)
	ev.wait(t, EventStarted)
	hc, err := p.HealthCheck(ctx, sdk.HealthCheckRequest{Server: srv, Config: cfg, Endpoints: prov.Endpoints})
	if err != nil || !hc.Healthy {
		t.Fatalf("HealthCheck after relaunch: %+v, %v", hc, err)
	}
	if body := get(); !strings.Contains(body, "web-1") {
		t.Fatalf("after relaunch: %q", body)
	}
	if _, err := p.Drain(ctx, sdk.DrainRequest{Server: srv, Config: cfg, Deadline: time.Now().Add(5 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	td, err := p.Teardown(ctx, sdk.TeardownRequest{Server: srv, Config: cfg})
	if err != nil || len(td.Logs) != 1 {
		t.Fatalf("Teardown: %+v, %v", td, err)
	}
}
