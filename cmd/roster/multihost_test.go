//go:build linux

package main

// A multi-host run on one machine: every machine is a "host" in a network
// namespace of its own, with its own address on a private bridge, running
// `ip netns exec <ns> roster agent …`. The orchestrator runs in this test
// process in the root namespace, with the haproxy it manages; fauxqs (SQS
// and S3) listens on the bridge's address. Nothing but the namespaces this
// test makes is reachable on the bridge's subnet, and the hosts have no
// default route: their traffic stays on this machine. docs/multihost.md
// explains the layout.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/hashicorp/go-hclog"

	"github.com/rosterhq/roster/core/orchestrator"
	"github.com/rosterhq/roster/core/provider"
	localprov "github.com/rosterhq/roster/core/provider/local"
	"github.com/rosterhq/roster/core/queue/fauxqs"
)

// requireNetns skips the test when it cannot make namespaces (not root, no
// iproute2), or fails it when CI is set: CI runs as root and must not pass
// by skipping.
func requireNetns(t *testing.T, also ...string) {
	t.Helper()
	var why []string
	if os.Geteuid() != 0 {
		why = append(why, "needs root to create network namespaces")
	}
	for _, bin := range append([]string{"ip"}, also...) {
		if _, err := exec.LookPath(bin); err != nil {
			if _, err := os.Stat("/usr/sbin/" + bin); err != nil {
				why = append(why, bin+" is not installed")
			}
		}
	}
	if len(why) == 0 {
		return
	}
	msg := "multi-host test: " + strings.Join(why, "; ")
	if ci := os.Getenv("CI"); ci != "" && ci != "false" && ci != "0" {
		t.Fatalf("%s; CI is set, so this is a failure, not a skip", msg)
	}
	t.Skip(msg)
}

// ipCmd runs `ip args…`, with its output in the error.
func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// hostNet is a bridge in the root namespace with the subnet 10.203.<n>.0/24
// (the bridge is .1) and the host namespaces attached to it.
type hostNet struct {
	t      *testing.T
	tag    string // names: bridge rb<tag>, namespaces rst-<tag>-<i>, veths rv<tag><i>
	net    string // "10.203.<n>"
	bridge string

	mu   sync.Mutex
	next int
	ns   map[string]bool
}

// newHostNet makes the bridge on a /24 of 10.203.0.0/16 that nothing on
// this machine routes yet (tests may run side by side), and removes it, the
// namespaces and every process in them in t.Cleanup.
func newHostNet(t *testing.T) *hostNet {
	t.Helper()
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	n := &hostNet{t: t, tag: hex.EncodeToString(b)[:5], ns: map[string]bool{}}
	n.bridge = "rb" + n.tag
	routes, err := exec.Command("ip", "-4", "route", "show", "table", "all").Output()
	if err != nil {
		t.Fatalf("ip route: %v", err)
	}
	for try := 0; ; try++ {
		n.net = fmt.Sprintf("10.203.%d", 1+mrand.IntN(254))
		if !bytes.Contains(routes, []byte(n.net+".")) {
			break
		}
		if try > 50 {
			t.Fatalf("no free /24 in 10.203.0.0/16")
		}
	}
	t.Cleanup(n.cleanup)
	// A bridge without an address of its own takes the lowest MAC of its
	// ports, so it would change as hosts come and go, and the hosts' ARP
	// entries for the gateway would point nowhere until they expire (new
	// connections stall for up to 30 s): give it a fixed, locally
	// administered one.
	mac := fmt.Sprintf("02:52:%02x:%02x:%02x:01", b[0], b[1], b[2])
	for _, args := range [][]string{
		{"link", "add", n.bridge, "address", mac, "type", "bridge"},
		{"addr", "add", n.gateway() + "/24", "dev", n.bridge},
		{"link", "set", n.bridge, "up"},
	} {
		must(t, ipCmd(args...))
	}
	return n
}

// gateway is the bridge's address, where the root namespace's services
// (fauxqs, haproxy) listen for the hosts.
func (n *hostNet) gateway() string { return n.net + ".1" }

// addHost makes a namespace with lo and eth0 (a veth whose peer is on the
// bridge) at the next address; no default route.
func (n *hostNet) addHost() (ns, addr string, err error) {
	n.mu.Lock()
	n.next++
	i := n.next
	ns = fmt.Sprintf("rst-%s-%d", n.tag, i)
	n.ns[ns] = true
	n.mu.Unlock()
	if i > 200 {
		return "", "", errors.New("hostNet: out of addresses")
	}
	addr = fmt.Sprintf("%s.%d", n.net, 10+i)
	veth, peer := fmt.Sprintf("rv%s%d", n.tag, i), fmt.Sprintf("rp%s%d", n.tag, i)
	for _, args := range [][]string{
		{"netns", "add", ns},
		{"link", "add", veth, "type", "veth", "peer", "name", peer},
		{"link", "set", veth, "master", n.bridge, "up"},
		{"link", "set", peer, "netns", ns},
		{"-n", ns, "link", "set", peer, "name", "eth0"},
		{"-n", ns, "addr", "add", addr + "/24", "dev", "eth0"},
		{"-n", ns, "link", "set", "eth0", "up"},
		{"-n", ns, "link", "set", "lo", "up"},
	} {
		if err := ipCmd(args...); err != nil {
			_ = n.delHost(ns)
			return "", "", err
		}
	}
	return ns, addr, nil
}

// nsPids lists the processes in namespace ns.
func nsPids(ns string) []int {
	out, _ := exec.Command("ip", "netns", "pids", ns).Output()
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		var p int
		if _, err := fmt.Sscan(f, &p); err == nil {
			pids = append(pids, p)
		}
	}
	return pids
}

// delHost kills what still runs in ns and deletes it (its veth goes with
// it).
func (n *hostNet) delHost(ns string) error {
	for _, p := range nsPids(ns) {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
	err := ipCmd("netns", "del", ns)
	n.mu.Lock()
	delete(n.ns, ns)
	n.mu.Unlock()
	if err != nil && !strings.Contains(err.Error(), "No such file") {
		return err
	}
	return nil
}

// hostExists says whether namespace ns is there.
func hostExists(ns string) bool {
	_, err := os.Stat(filepath.Join("/run/netns", ns))
	return err == nil
}

func (n *hostNet) cleanup() {
	n.mu.Lock()
	var left []string
	for ns := range n.ns {
		left = append(left, ns)
	}
	n.mu.Unlock()
	for _, ns := range left {
		if err := n.delHost(ns); err != nil {
			n.t.Errorf("cleanup: %v", err)
		}
	}
	if err := ipCmd("link", "del", n.bridge); err != nil {
		n.t.Errorf("cleanup: %v", err)
	}
}

// nsProvider is a provider whose machines are hosts in namespaces: the
// local provider (machine records, launch tokens, sessions, Terminate)
// with `ip netns exec <ns>` before the agent, and a namespace made before
// each launch and deleted after each termination.
type nsProvider struct {
	net   *hostNet
	local *localprov.Provider

	mu    sync.Mutex
	hosts map[string]nsHost // machine id → host
}

type nsHost struct{ ns, addr string }

var _ provider.Provider = (*nsProvider)(nil)

// pluginEnv is what the hosts' role plugins need of the agent's
// environment to fetch from fauxqs's S3 (the plugin host passes no AWS_*
// on its own).
var pluginEnv = []string{"AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION",
	"AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_EC2_METADATA_DISABLED"}

func newNSProvider(hn *hostNet, ps providerSetup) (*nsProvider, error) {
	ip, err := exec.LookPath("ip")
	if err != nil {
		return nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	p := &nsProvider{net: hn, hosts: map[string]nsHost{}}
	p.local, err = localprov.New(localprov.Options{
		Exe:     ip,
		DataDir: ps.Config.DataDir,
		AgentArgs: func(id string) []string {
			h := p.host(id)
			args := append([]string{"netns", "exec", h.ns, exe}, ps.AgentArgs(id, "netns")...)
			for _, e := range pluginEnv {
				args = append(args, "-plugin-env", e)
			}
			return args
		},
		TerminateGrace: 5 * time.Second,
		// The agents' logs stay for a failing test to show.
		KeepTerminated: true,
		Logger:         ps.Logger.Named("provider"),
	})
	return p, err
}

func (p *nsProvider) host(id string) nsHost {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hosts[id]
}

func (p *nsProvider) Name() string { return "netns" }

func (p *nsProvider) Launch(ctx context.Context, req provider.LaunchRequest) (provider.Machine, error) {
	if p.host(req.MachineID).ns == "" {
		ns, addr, err := p.net.addHost()
		if err != nil {
			return provider.Machine{}, fmt.Errorf("netns provider: machine %s: %w", req.MachineID, err)
		}
		p.mu.Lock()
		p.hosts[req.MachineID] = nsHost{ns: ns, addr: addr}
		p.mu.Unlock()
	}
	m, err := p.local.Launch(ctx, req)
	m.Address = p.host(req.MachineID).addr
	return m, err
}

func (p *nsProvider) Terminate(ctx context.Context, id string) error {
	if err := p.local.Terminate(ctx, id); err != nil {
		return err
	}
	h := p.host(id)
	if h.ns == "" {
		return nil
	}
	if err := p.net.delHost(h.ns); err != nil {
		return fmt.Errorf("netns provider: machine %s: %w", id, err)
	}
	p.mu.Lock()
	delete(p.hosts, id)
	p.mu.Unlock()
	return nil
}

func (p *nsProvider) List(ctx context.Context, tags map[string]string) ([]provider.Machine, error) {
	ms, err := p.local.List(ctx, tags)
	for i := range ms {
		ms[i].Address = p.host(ms[i].ID).addr
	}
	return ms, err
}

func (p *nsProvider) Close() error { return p.local.Close() }

// waitO waits for cond on the in-process orchestrator's status.
func waitO(t *testing.T, o *orchestrator.Orchestrator, what string, d time.Duration, cond func(orchestrator.Status) bool) orchestrator.Status {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		s := o.Status()
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: servers %+v, spares %+v, events %+v", d, what, s.Servers, s.Spares, lastEvents(s, 30))
		}
		select {
		case <-o.Changed():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func lastEvents(s orchestrator.Status, n int) []string {
	var out []string
	for _, e := range s.Events {
		out = append(out, e.Kind+": "+e.Message)
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return out
}

// freePort picks a free TCP port on addr.
func freeHostPort(t *testing.T, addr string) string {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
	must(t, err)
	defer ln.Close()
	return net.JoinHostPort(addr, fmt.Sprint(ln.Addr().(*net.TCPAddr).Port))
}

// TestMultiHostWebOverSQS: three hosts in namespaces, the web role (apache
// and memcached, its site fetched from S3) on two of them registered with
// haproxy by the hosts' addresses, one spare; a host's agent killed and its
// server replaced on the spare's host, the dead host's namespace removed;
// at the end every server halts and ships its logs to S3.
func TestMultiHostWebOverSQS(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	requireNetns(t, "haproxy", "apache2", "memcached")
	hn := newHostNet(t)
	endpoint := fauxqs.StartWith(t, fauxqs.Options{Host: hn.gateway()})
	fauxAWSEnv(t, endpoint)
	ctx := context.Background()

	// The site, and the bucket for the logs, in fauxqs's S3.
	s3c := fauxS3(endpoint)
	for _, b := range []string{"site", "logs"} {
		if _, err := s3c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(b)}); err != nil {
			t.Fatal(err)
		}
	}
	const page = "<h1>roster across hosts</h1>\n"
	if _, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("site"), Key: aws.String("www/index.html"), Body: strings.NewReader(page)}); err != nil {
		t.Fatal(err)
	}

	// The web role's apache runs as www-data, which must reach the
	// servers' work directories below data_dir.
	dir := t.TempDir()
	must(t, os.Chmod(filepath.Dir(dir), 0o755))
	must(t, os.Chmod(dir, 0o755))
	cluster := fmt.Sprintf("mh%06d", mrand.IntN(1000000))
	front := freeHostPort(t, hn.gateway())
	cfg := fmt.Sprintf(`cluster  = %q
data_dir = ".roster"
spares   = 1
roles    = ["roles/*.hcl"]
queue "sqs" {
  region   = %q
  endpoint = %q
}
provider "local" {}
balancer "haproxy" "front" {
  frontend       = %q
  check_interval = "1s"
}
logs {
  destination = "s3://logs/multihost"
}
api {
  address = "127.0.0.1:0"
}
agent {
  spare_heartbeat = "1s"
}
`, cluster, fauxqs.Region, endpoint, front)
	role := `role "web" {
  plugin = "web"
  count {
    min = 2
    max = 2
  }
  health {
    interval        = "1s"
    timeout         = "2s"
    unhealthy_after = 3
    lost_after      = "6s"
  }
  provision {
    timeout = "90s"
  }
  drain {
    timeout = "2s"
  }
  register {
    balancer = "front"
    endpoint = "http"
  }
  config {
    document_root  = "s3://site/www/"
    listen_address = "0.0.0.0"
    memcached_mb   = 8
  }
}
`
	must(t, os.MkdirAll(filepath.Join(dir, "roles"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "roster.hcl"), []byte(cfg), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "roles", "web.hcl"), []byte(role), 0o644))

	logf, err := os.Create(filepath.Join(dir, "orchestrator.log"))
	must(t, err)
	logger := hclog.New(&hclog.LoggerOptions{Name: "roster", Level: hclog.Debug, Output: logf})
	var prov *nsProvider
	st, err := openStack(ctx, stackOptions{ConfigPath: filepath.Join(dir, "roster.hcl"), Logger: logger, Diags: logf,
		NewProvider: func(_ context.Context, ps providerSetup) (provider.Provider, error) {
			var err error
			prov, err = newNSProvider(hn, ps)
			return prov, err
		}})
	if err != nil {
		logf.Close()
		b, _ := os.ReadFile(logf.Name())
		t.Fatalf("openStack: %v\n%s", err, b)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = st.Run(runCtx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		tctx, tcancel := context.WithTimeout(context.Background(), 30*time.Second)
		if _, err := st.terminateAll(tctx); err != nil {
			t.Errorf("cleanup: terminate machines: %v", err)
		}
		if err := stopBalancers(tctx, st.bals, logger); err != nil {
			t.Errorf("cleanup: stop haproxy: %v", err)
		}
		tcancel()
		st.Close()
		for _, pid := range agentPids(cluster, "") {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			if len(b) > 40000 {
				b = b[len(b)-40000:]
			}
			t.Logf("orchestrator log (tail):\n%s", b)
			for _, m := range mustGlob(filepath.Join(dir, ".roster", "machines", "*", localprov.AgentLog)) {
				b, _ := os.ReadFile(m)
				if len(b) > 6000 {
					b = b[len(b)-6000:]
				}
				t.Logf("%s (tail):\n%s", m, b)
			}
		}
	})

	// Baseline: two web servers on two hosts, one spare host.
	s := waitO(t, st.o, "two ready web servers and a spare", 150*time.Second, pool(2, 1))
	addrs := map[string]string{} // server → its host's address
	for _, srv := range s.Servers {
		h := prov.host(srv.Machine)
		host, _, err := net.SplitHostPort(srv.Endpoints["http"])
		if err != nil || host != h.addr {
			t.Fatalf("server %s on host %s (%s) has endpoint %q, want the host's address", srv.Name, h.ns, h.addr, srv.Endpoints["http"])
		}
		addrs[srv.Name] = host
	}
	if len(addrs) != 2 || addrs["web-1"] == addrs["web-2"] {
		t.Fatalf("servers' addresses %v: want two hosts", addrs)
	}
	// haproxy has both, by address, and serves the page from S3 through them.
	checkRoutes(t, st, s)
	for i := 0; i < 6; i++ {
		if body := httpGet(t, "http://"+front+"/"); body != page {
			t.Fatalf("GET through haproxy = %q, want the site's page", body)
		}
	}
	// Each host's apache saw requests, from haproxy on the bridge.
	for _, srv := range s.Servers {
		logp := filepath.Join(dir, ".roster", "machines", srv.Machine, "servers", srv.Name, "web", "logs", "access.log")
		waitUntil(t, "requests in "+logp, 10*time.Second, func() bool {
			b, _ := os.ReadFile(logp)
			return bytes.Contains(b, []byte(hn.gateway()+" "))
		})
	}

	// A host's agent dies: its server is replaced on the spare's host, the
	// dead host is terminated and its namespace deleted.
	victim := s.Servers[0]
	victimNS := prov.host(victim.Machine).ns
	var spareHost string
	for _, m := range s.Machines {
		if m.State == orchestrator.MachineSpare {
			spareHost = m.ID
		}
	}
	pids := agentPids(cluster, victim.Machine)
	if len(pids) != 1 {
		t.Fatalf("agent pids of %s: %v", victim.Machine, pids)
	}
	must(t, syscall.Kill(pids[0], syscall.SIGKILL))
	s = waitO(t, st.o, "a replacement and a new spare", 150*time.Second, func(s orchestrator.Status) bool {
		for _, srv := range s.Servers {
			if srv.Name == victim.Name {
				return false
			}
		}
		return pool(2, 1)(s)
	})
	var repl orchestrator.ServerView
	for _, srv := range s.Servers {
		if srv.Replaces == victim.Name {
			repl = srv
		}
	}
	if repl.Name == "" || repl.Machine != spareHost {
		t.Errorf("no replacement of %s on the spare host %s: %+v", victim.Name, spareHost, s.Servers)
	}
	if host, _, _ := net.SplitHostPort(repl.Endpoints["http"]); host != prov.host(repl.Machine).addr || host == addrs[victim.Name] {
		t.Errorf("replacement %s endpoint %q: want its own host's address %s", repl.Name, repl.Endpoints["http"], prov.host(repl.Machine).addr)
	}
	waitUntil(t, "the dead host's namespace deleted", 60*time.Second, func() bool { return !hostExists(victimNS) })
	waitUntil(t, "haproxy routes to the servers now ready", 30*time.Second, func() bool {
		return routesMatch(t, st, st.o.Status())
	})
	for i := 0; i < 4; i++ {
		if body := httpGet(t, "http://"+front+"/"); body != page {
			t.Fatalf("GET through haproxy after the replacement = %q", body)
		}
	}

	// Shut down: every server drains, halts and ships its logs to S3.
	sctx, scancel := context.WithTimeout(ctx, 60*time.Second)
	defer scancel()
	must(t, st.o.Shutdown(sctx))
	for _, srv := range s.Servers {
		keys := s3Keys(t, s3c, "logs", "multihost/"+srv.Name+"/")
		found := false
		for _, k := range keys {
			found = found || strings.HasSuffix(k, "access.log")
		}
		if !found {
			t.Errorf("logs of %s in S3: %v, want its access.log", srv.Name, keys)
		}
	}

	// The queues were SQS queues on fauxqs, reached from every namespace.
	if _, err := os.Stat(filepath.Join(dir, ".roster", "queue")); !os.IsNotExist(err) {
		t.Errorf("a local queue directory exists (%v)", err)
	}
}

// checkRoutes fails unless haproxy's servers are the ready servers at
// their endpoints.
func checkRoutes(t *testing.T, st *stack, s orchestrator.Status) {
	t.Helper()
	waitUntil(t, "haproxy routes to the ready servers", 30*time.Second, func() bool { return routesMatch(t, st, s) })
}

func routesMatch(t *testing.T, st *stack, s orchestrator.Status) bool {
	bs, err := st.bals["front"].List(context.Background(), "web")
	if err != nil {
		t.Logf("haproxy list: %v", err)
		return false
	}
	want := map[string]string{}
	for _, srv := range readyServers(s) {
		want[srv.Name] = srv.Endpoints["http"]
	}
	if len(bs) != len(want) {
		return false
	}
	for _, b := range bs {
		if want[b.Server] != b.Endpoint || b.Draining {
			return false
		}
	}
	return true
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", url, resp.Status, b)
	}
	return string(b)
}

func mustGlob(p string) []string {
	m, _ := filepath.Glob(p)
	return m
}
