package roletest

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/rosterhq/roster/sdk"
	"github.com/rosterhq/roster/sdk/rolehost"
)

// InProcess serves role in this process over a real gRPC connection (go-
// plugin's plugin.TestPluginGRPCConn), so that the sdk's adapters, the
// encoding of config values and the mapping of errors all run, and returns
// the host's view of it. The connection closes when the test ends.
func InProcess(t testing.TB, role sdk.Role) rolehost.Role {
	t.Helper()
	logger := Logger(t)
	ps := plugin.PluginSet{sdk.PluginName: rolehost.Plugin(role, logger.Named("role"))}
	client, server := plugin.TestPluginGRPCConn(t, false, ps)
	t.Cleanup(func() {
		// Close asks the server to stop (go-plugin's controller service);
		// stopping it here as well would race with that.
		_ = client.Close()
		select {
		case <-server.DoneCh:
		case <-time.After(10 * time.Second):
			server.Stop()
		}
	})
	r, err := rolehost.DispenseFrom(client)
	if err != nil {
		t.Fatalf("dispensing the in-process role: %v", err)
	}
	return r
}

// Binary launches the role plugin binary at path as core would (handshake,
// gRPC, AutoMTLS, the plugin's log forwarded to the test log) and returns the
// host's view of it. The process is killed when the test ends.
func Binary(t testing.TB, path string) rolehost.Role {
	t.Helper()
	r, _ := binary(t, path)
	return r
}

func binary(t testing.TB, path string) (rolehost.Role, *plugin.Client) {
	t.Helper()
	cmd := exec.Command(path)
	cmd.Env = append(os.Environ(), sdk.LogLevelEnv+"=debug")
	client := plugin.NewClient(rolehost.ClientConfig(cmd, Logger(t)))
	t.Cleanup(client.Kill)
	r, err := rolehost.Dispense(client)
	if err != nil {
		t.Fatalf("launching role plugin %s: %v", path, err)
	}
	return r, client
}

// Build compiles the main package pkg (a path such as "." or
// "./cmd/roster-role-hello", relative to the test's working directory, or
// an import path) into a fresh temporary directory and returns the binary's
// path. The binary is named roster-role-<last element of the import path>
// (the prefix is not doubled), as core looks for it in plugin_dir. It fails
// the test when the build fails.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("building %s: the go command is not on PATH: %v", pkg, err)
	}
	// Name the binary after the package's import path, as go build would,
	// so that a plugin in ./plugin-hello of module roster-role-hello is
	// roster-role-hello.
	list, err := exec.Command(goBin, "list", "-f", "{{.ImportPath}}", pkg).Output()
	if err != nil {
		t.Fatalf("building %s: go list: %v", pkg, err)
	}
	name := path.Base(strings.TrimSpace(string(list)))
	if !strings.HasPrefix(name, "roster-role-") {
		name = "roster-role-" + name
	}
	out := filepath.Join(t.TempDir(), name)
	cmd := exec.CommandContext(context.Background(), goBin, "build", "-o", out, pkg)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v\n%s", pkg, err, msg)
	}
	return out
}

// Logger returns an hclog logger that writes to the test's log, and stops
// writing when the test ends (plugins log from goroutines that may outlive
// it). Set ROSTER_TEST_LOG=trace (or debug, info…) to change its level; it
// is info by default.
func Logger(t testing.TB) hclog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(w.stop)
	level := hclog.LevelFromString(os.Getenv("ROSTER_TEST_LOG"))
	if level == hclog.NoLevel {
		level = hclog.Info
	}
	return hclog.New(&hclog.LoggerOptions{Name: "roletest", Level: level, Output: w})
}

type testWriter struct {
	mu      sync.Mutex
	t       testing.TB
	stopped bool
}

var _ io.Writer = (*testWriter)(nil)

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopped {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testWriter) stop() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
}
