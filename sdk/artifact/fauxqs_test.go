package artifact

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fauxqsScript starts fauxqs (an SQS/SNS/S3 emulator from npm) on a free
// port of 127.0.0.1 and prints the port. fauxqs listens on 0.0.0.0 whatever
// it is told, so the script narrows net.Server.listen to loopback first.
const fauxqsScript = `
import net from 'node:net';
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (args[0] && typeof args[0] === 'object' && (args[0].host === '0.0.0.0' || args[0].host === undefined)) {
    args[0] = { ...args[0], host: '127.0.0.1' };
  }
  return listen.apply(this, args);
};
const { startFauxqs } = await import(%q);
const server = await startFauxqs({ port: 0, logger: false });
console.log('FAUXQS_PORT=' + server.port);
`

// findFauxqs returns the path of fauxqs' cli.js: $ROSTER_FAUXQS (set by
// make), or .tools/node_modules in the module root.
func findFauxqs() string {
	if p := os.Getenv("ROSTER_FAUXQS"); p != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	dir, _ := os.Getwd()
	for dir != "/" && dir != "." {
		p := filepath.Join(dir, ".tools/node_modules/fauxqs/dist/cli.js")
		if _, err := os.Stat(p); err == nil {
			return p
		}
		dir = filepath.Dir(dir)
	}
	return ""
}

// startFauxqs starts fauxqs for the test and returns its endpoint. It skips
// the test when fauxqs or node is missing, except in CI, where it fails.
func startFauxqs(t *testing.T) string {
	t.Helper()
	cli := findFauxqs()
	node, err := exec.LookPath("node")
	if cli == "" || err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("fauxqs or node missing (cli=%q, node err=%v): run make test-deps", cli, err)
		}
		t.Skip("fauxqs or node not installed: run make test-deps")
	}
	app := filepath.Join(filepath.Dir(cli), "app.js")
	cmd := exec.Command(node, "--input-type=module", "-e", fmt.Sprintf(fauxqsScript, "file://"+app))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	portc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if p, ok := strings.CutPrefix(sc.Text(), "FAUXQS_PORT="); ok {
				portc <- p
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	select {
	case p := <-portc:
		return "http://127.0.0.1:" + p
	case <-ctx.Done():
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait() // after which stderr is no longer written
		t.Fatalf("fauxqs did not start: %s", stderr.String())
	}
	return ""
}
