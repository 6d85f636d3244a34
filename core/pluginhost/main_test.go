package pluginhost

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/rosterhq/roster/sdk"
)

// The test binary plays three parts, chosen by its arguments:
//
//	plugin-serve <name>            a built-in served by self-exec
//	agent-for-test <plugin_dir>    an agent that launches testplugin and
//	                               prints its pid (for the SIGKILL test)
//	anything else                  the tests
func TestMain(m *testing.M) {
	if len(os.Args) >= 3 && os.Args[1] == "plugin-serve" {
		sdk.Serve(selfRole{name: os.Args[2]})
		os.Exit(0)
	}
	if len(os.Args) >= 3 && os.Args[1] == "agent-for-test" {
		os.Exit(fakeAgent(os.Args[2]))
	}
	dir, err := os.MkdirTemp("", "pluginhost-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// binDir holds the binaries the tests build, once per run.
var binDir string

var (
	buildOnce sync.Map // package -> *buildResult
)

type buildResult struct {
	once sync.Once
	path string
	err  error
}

// build compiles pkg into binDir/name once per test run.
func build(t testing.TB, pkg, name string) string {
	t.Helper()
	v, _ := buildOnce.LoadOrStore(pkg, &buildResult{})
	r := v.(*buildResult)
	r.once.Do(func() {
		r.path = filepath.Join(binDir, name)
		cmd := exec.Command("go", "build", "-o", r.path, pkg)
		out, err := cmd.CombinedOutput()
		if err != nil {
			r.err = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
		}
	})
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.path
}

// testPlugin returns a fresh plugin_dir holding roster-role-testplugin.
func testPlugin(t testing.TB) (dir, path string) {
	t.Helper()
	bin := build(t, "./testdata/testplugin", "testplugin")
	dir = t.TempDir()
	path = filepath.Join(dir, ExecutablePrefix+"testplugin")
	copyFile(t, bin, path)
	return dir, path
}

func copyFile(t testing.TB, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// testLogger logs to the test's log.
func testLogger(t testing.TB) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "test", Level: hclog.Debug, Output: testWriter{t}})
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	s := string(p)
	if len(s) > 300 {
		s = s[:300] + fmt.Sprintf("… (%d bytes)", len(p))
	}
	w.t.Log(s)
	return len(p), nil
}

// selfRole is the built-in the test binary serves.
type selfRole struct{ name string }

func (r selfRole) Info(context.Context) (sdk.Info, error) {
	return sdk.Info{Name: r.name, Version: "0.0.1-self", Description: "served by the test binary"}, nil
}
func (selfRole) ConfigSchema(context.Context) (sdk.Schema, error) {
	return sdk.Schema{Attributes: []sdk.Attribute{{Name: "greeting", Type: sdk.String, Default: sdk.StringVal("hi")}}}, nil
}
func (selfRole) Provision(context.Context, sdk.ProvisionRequest) (sdk.ProvisionResponse, error) {
	return sdk.ProvisionResponse{}, nil
}
func (selfRole) HealthCheck(context.Context, sdk.HealthCheckRequest) (sdk.HealthCheckResponse, error) {
	return sdk.HealthCheckResponse{Healthy: true, Metrics: map[string]float64{"pid": float64(os.Getpid())}}, nil
}
func (selfRole) Drain(context.Context, sdk.DrainRequest) (sdk.DrainResponse, error) {
	return sdk.DrainResponse{}, nil
}
func (selfRole) Teardown(context.Context, sdk.TeardownRequest) (sdk.TeardownResponse, error) {
	return sdk.TeardownResponse{}, nil
}

// fakeAgent launches testplugin, then ends as many of its threads as it
// can, among them, in all likelihood, the one the plugin would have been
// forked from without the launcher thread: Pdeathsig would kill the plugin
// right then. It prints the plugin's pid once the plugin answers after
// those threads are gone, then waits to be killed.
func fakeAgent(dir string) int {
	// The runtime never ends the main thread (it parks it instead), so
	// keep the launching goroutine off it: this goroutine holds it.
	runtime.LockOSThread()
	host, err := New(Options{PluginDir: dir, Logger: hclog.NewNullLogger()})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	type res struct {
		p   *Plugin
		tid int
		err error
	}
	ch := make(chan res, 1)
	go func() {
		// Locked and never unlocked: the runtime ends this thread when
		// the goroutine returns.
		runtime.LockOSThread()
		p, err := host.Launch(context.Background(), "testplugin")
		ch <- res{p, syscall.Gettid(), err}
	}()
	r := <-ch
	if r.err != nil {
		fmt.Fprintln(os.Stderr, r.err)
		return 1
	}
	// The plugin was forked from whatever thread ran go-plugin's start.
	// Use up every idle thread of the runtime with goroutines that lock
	// one each, then let them all end: each takes its thread with it.
	tids := []int{r.tid}
	const churn = 64
	ready := make(chan int, churn)
	release := make(chan struct{})
	for i := 0; i < churn; i++ {
		go func() {
			runtime.LockOSThread()
			ready <- syscall.Gettid()
			<-release
		}()
	}
	for i := 0; i < churn; i++ {
		tids = append(tids, <-ready)
	}
	close(release)
	deadline := time.Now().Add(10 * time.Second)
	for _, tid := range tids {
		for {
			if _, err := os.Stat(fmt.Sprintf("/proc/self/task/%d", tid)); os.IsNotExist(err) {
				break
			}
			if time.Now().After(deadline) {
				fmt.Fprintf(os.Stderr, "thread %d did not exit\n", tid)
				return 1
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	hc, err := r.p.HealthCheck(context.Background(), sdk.HealthCheckRequest{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "health check after the launching thread exited:", err)
		return 1
	}
	fmt.Println(strconv.Itoa(int(hc.Metrics["pid"])))
	_ = os.Stdout.Sync()
	select {}
}

// readLine reads one line from an agent's stdout with a deadline.
func readLine(t *testing.T, sc *bufio.Scanner, d time.Duration) string {
	t.Helper()
	ch := make(chan string, 1)
	go func() {
		if sc.Scan() {
			ch <- sc.Text()
		}
		close(ch)
	}()
	select {
	case s, ok := <-ch:
		if !ok {
			t.Fatalf("agent ended without printing: %v", sc.Err())
		}
		return s
	case <-time.After(d):
		t.Fatalf("agent printed nothing within %s", d)
	}
	return ""
}

// alive says whether pid is a live (not zombie) process.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses.
	s := string(b)
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == ')' {
			if i+2 < len(s) {
				return s[i+2] != 'Z' && s[i+2] != 'X'
			}
			break
		}
	}
	return true
}

// waitGone waits until pid is no longer alive.
func waitGone(t *testing.T, pid int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still alive after %s", pid, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
