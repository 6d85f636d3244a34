package dns

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

const namedPath = "/usr/sbin/named"

// named is a private BIND 9 serving the dynamic zone example.test. on
// 127.0.0.1, which accepts updates signed with key "roster".
type named struct {
	addr   string // 127.0.0.1:port
	key    string // key name, fully qualified
	secret string // base64
	dir    string
}

// lockedBuffer keeps named's log for failure messages.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// freePort finds a port free for both TCP and UDP on 127.0.0.1.
func freePort(t testing.TB) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port))
		l.Close()
		if err == nil {
			u.Close()
			return port
		}
	}
	t.Fatal("no free port for named")
	return 0
}

func newSecret(t testing.TB) string {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(k)
}

// startNamed runs named in the foreground on a free loopback port and stops
// it when the test ends. It skips the test when named is not installed,
// unless CI=true.
func startNamed(t testing.TB) *named {
	t.Helper()
	if _, err := os.Stat(namedPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("named (bind9) is required in CI: %v", err)
		}
		t.Skipf("named (bind9) is not installed: %v", err)
	}
	dir := t.TempDir()
	n := &named{key: "roster.", secret: newSecret(t), dir: dir}
	port := freePort(t)
	n.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	zone := `$TTL 300
@	IN SOA ns1.example.test. hostmaster.example.test. 1 3600 600 86400 60
@	IN NS ns1.example.test.
ns1	IN A 127.0.0.1
`
	conf := fmt.Sprintf(`options {
	directory "%[1]s";
	pid-file "%[1]s/named.pid";
	session-keyfile "%[1]s/session.key";
	managed-keys-directory "%[1]s";
	listen-on port %[2]d { 127.0.0.1; };
	listen-on-v6 { none; };
	recursion no;
	dnssec-validation no;
	allow-transfer { none; };
	notify no;
};
controls { };
key "roster" {
	algorithm hmac-sha256;
	secret "%[3]s";
};
zone "example.test" {
	type primary;
	file "%[1]s/example.test.db";
	update-policy { grant roster subdomain example.test. A AAAA SRV; };
};
`, dir, port, n.secret)
	if err := os.WriteFile(filepath.Join(dir, "example.test.db"), []byte(zone), 0o644); err != nil {
		t.Fatal(err)
	}
	confPath := filepath.Join(dir, "named.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	var log lockedBuffer
	cmd := exec.Command(namedPath, "-g", "-4", "-c", confPath, "-p", strconv.Itoa(port), "-n", "1")
	cmd.Stdout, cmd.Stderr = &log, &log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting named: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})
	// Ready when it answers for the zone.
	deadline := time.Now().Add(30 * time.Second)
	c := &mdns.Client{Net: "tcp", Timeout: time.Second}
	for {
		m := new(mdns.Msg)
		m.SetQuestion("example.test.", mdns.TypeSOA)
		r, _, err := c.Exchange(m, n.addr)
		if err == nil && r.Rcode == mdns.RcodeSuccess && len(r.Answer) > 0 {
			break
		}
		select {
		case <-exited:
			t.Fatalf("named exited before serving the zone:\n%s", log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("named did not serve example.test. within 30s (last: %v, %v):\n%s", r, err, log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("named log:\n%s", log.String())
		}
	})
	return n
}

// lookup asks named for name's records of type t, unsigned, as a client
// would.
func (n *named) lookup(t testing.TB, name string, qtype uint16) []mdns.RR {
	t.Helper()
	m := new(mdns.Msg)
	m.SetQuestion(name, qtype)
	r, _, err := (&mdns.Client{Net: "tcp", Timeout: 5 * time.Second}).Exchange(m, n.addr)
	if err != nil {
		t.Fatalf("query %s: %v", name, err)
	}
	var out []mdns.RR
	for _, rr := range r.Answer {
		if rr.Header().Rrtype == qtype {
			out = append(out, rr)
		}
	}
	return out
}

// update sends a signed update, as another tool (nsupdate) would.
func (n *named) update(t testing.TB, m *mdns.Msg) {
	t.Helper()
	m.SetTsig(n.key, mdns.HmacSHA256, 300, time.Now().Unix())
	c := &mdns.Client{Net: "tcp", Timeout: 5 * time.Second, TsigSecret: map[string]string{n.key: n.secret}}
	r, _, err := c.ExchangeContext(context.Background(), m, n.addr)
	if err != nil || r.Rcode != mdns.RcodeSuccess {
		t.Fatalf("update: %v %v", r, err)
	}
}
