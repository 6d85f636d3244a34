// Package fauxqs starts fauxqs, an SQS/SNS/S3-compatible test server from
// npm, for tests and benchmarks that need a real AWS-compatible endpoint on
// loopback (the SQS backend's conformance suite, S3 log shipping, the control
// loop on SQS).
//
// The server is found through $ROSTER_FAUXQS (the Makefile points it at
// .tools/node_modules/fauxqs/dist/cli.js), else in .tools/node_modules under
// the module root; `make test-deps` installs it. When it or node is missing,
// Start skips the test, or fails it when $CI is set, so that CI never passes
// by skipping.
//
// fauxqs's own command line listens on every interface; Start runs it through
// a small wrapper that listens on 127.0.0.1 and an ephemeral port instead, and
// exits when the test process's end of its stdin closes, so that no server
// outlives its test even when the test binary is killed.
package fauxqs

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// Dummy settings that the clients of a fauxqs server use; fauxqs checks no
// signature. Pass them through the SDK's options, never the environment.
const (
	Region          = "us-east-1"
	AccessKeyID     = "test"
	SecretAccessKey = "test"
)

// Credentials returns static dummy credentials for a fauxqs server.
func Credentials() aws.CredentialsProvider {
	return credentials.NewStaticCredentialsProvider(AccessKeyID, SecretAccessKey, "")
}

const wrapper = `import { buildApp } from %q;
const app = buildApp({ logger: false });
const address = await app.listen({ port: 0, host: %q });
process.stdout.write("listening " + address + "\n");
process.stdin.on("end", () => process.exit(0));
process.stdin.on("error", () => process.exit(0));
process.stdin.resume();
`

// Find returns the path of fauxqs's dist/cli.js, or "" when it is not
// installed.
func Find() string {
	if p := os.Getenv("ROSTER_FAUXQS"); p != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			p := filepath.Join(dir, ".tools", "node_modules", "fauxqs", "dist", "cli.js")
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// Start starts a fauxqs server on a free loopback port, waits until it
// answers, and returns its endpoint (http://127.0.0.1:port). The server stops
// in tb.Cleanup.
func Start(tb testing.TB) string {
	tb.Helper()
	return StartWith(tb, Options{})
}

// Options change where a server started by StartWith listens.
type Options struct {
	// Host is the IP address to listen on; empty means 127.0.0.1. Tests
	// that run agents in network namespaces pass the address of a bridge
	// they created, so that the namespaces reach the server; never a
	// public or wildcard address.
	Host string
}

// StartWith is Start with options: it listens on o.Host and a free port and
// returns http://<host>:port.
func StartWith(tb testing.TB, o Options) string {
	tb.Helper()
	host := o.Host
	if host == "" {
		host = "127.0.0.1"
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		tb.Fatalf("fauxqs: listen address %q: want one IP address (not a wildcard)", host)
	}
	cli := Find()
	if cli == "" {
		unavailable(tb, "fauxqs is not installed (run `make test-deps`, or set ROSTER_FAUXQS to its dist/cli.js)")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		unavailable(tb, "node is not installed: fauxqs needs it")
	}
	app := filepath.Join(filepath.Dir(cli), "app.js")
	script := filepath.Join(tb.TempDir(), "fauxqs-loopback.mjs")
	appURL := (&url.URL{Scheme: "file", Path: app}).String()
	if err := os.WriteFile(script, []byte(fmt.Sprintf(wrapper, appURL, host)), 0o600); err != nil {
		tb.Fatalf("fauxqs: write wrapper: %v", err)
	}

	cmd := exec.Command(node, script)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatalf("fauxqs: %v", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatalf("fauxqs: %v", err)
	}
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		tb.Fatalf("fauxqs: start %s %s: %v", node, script, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	tb.Cleanup(func() {
		// Closing stdin asks the wrapper to exit; kill it if it does not.
		stdin.Close()
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})

	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "listening "); ok {
				addr <- a
				break
			}
		}
		// Keep draining so the server never blocks on a full pipe.
		for sc.Scan() {
		}
	}()
	var endpoint string
	select {
	case endpoint = <-addr:
	case <-exited:
		tb.Fatalf("fauxqs exited before listening: %s", stderr.String())
	case <-time.After(30 * time.Second):
		tb.Fatalf("fauxqs did not start listening within 30s: %s", stderr.String())
	}
	if err := waitHealthy(endpoint, 30*time.Second); err != nil {
		tb.Fatalf("fauxqs at %s: %v: %s", endpoint, err, stderr.String())
	}
	return endpoint
}

func waitHealthy(endpoint string, within time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var last error
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, endpoint+"/health", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("health check answered %s", resp.Status)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("not healthy: %w", last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func unavailable(tb testing.TB, why string) {
	tb.Helper()
	if ci := os.Getenv("CI"); ci != "" && ci != "false" && ci != "0" {
		tb.Fatalf("%s; CI is set, so this is a failure, not a skip", why)
	}
	tb.Skip(why)
}

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
