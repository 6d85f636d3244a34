package dns

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	mdns "github.com/miekg/dns"

	"github.com/rosterhq/roster/core/balancer"
	"github.com/rosterhq/roster/core/config"
)

func parseBody(t testing.TB, dir, src string) hcl.Body {
	t.Helper()
	f, diags := hclparse.NewParser().ParseHCL([]byte(src), filepath.Join(dir, "roster.hcl"))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	return f.Body
}

// open opens the dns balancer "names" declared in dir/roster.hcl with the
// block body src, through balancer.Open; its data directory is dir/data.
func open(t testing.TB, dir, src string) *Balancer {
	t.Helper()
	b, err := balancer.Open(context.Background(),
		config.Balancer{Type: Type, Name: "names", Body: parseBody(t, dir, src), Range: hcl.Range{Filename: filepath.Join(dir, "roster.hcl")}},
		balancer.Options{DataDir: filepath.Join(dir, "data"), Logger: hclog.NewNullLogger()})
	if err != nil {
		t.Fatal(err)
	}
	return b.(*Balancer)
}

// block is a dns block for n; the secret goes through a key file as
// tsig-keygen writes it.
func (n *named) block(t testing.TB, dir, extra string) string {
	t.Helper()
	keyFile := filepath.Join(dir, "roster.key")
	key := fmt.Sprintf("key \"roster\" {\n\talgorithm hmac-sha256;\n\tsecret \"%s\";\n};\n", n.secret)
	if err := os.WriteFile(keyFile, []byte(key), 0o600); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf(`
server           = %q
zone             = "example.test"
tsig_key_name    = "roster"
tsig_secret_file = "roster.key"
%s
`, n.addr, extra)
}

func addrs(rrs []mdns.RR) []string {
	var out []string
	for _, rr := range rrs {
		switch r := rr.(type) {
		case *mdns.A:
			out = append(out, r.A.String())
		case *mdns.AAAA:
			out = append(out, r.AAAA.String())
		case *mdns.SRV:
			out = append(out, fmt.Sprintf("%s:%d", r.Target, r.Port))
		}
	}
	sort.Strings(out)
	return out
}

func servers(t *testing.T, b *Balancer, role string) []string {
	t.Helper()
	list, err := b.List(context.Background(), role)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, be := range list {
		s := be.Server + "=" + be.Endpoint
		if be.Draining {
			s += " draining"
		}
		out = append(out, s)
	}
	return out
}

func check[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s = %v, want %v", what, got, want)
	}
}

func TestAddressRecords(t *testing.T) {
	n := startNamed(t)
	ctx := context.Background()
	dir := t.TempDir()
	b := open(t, dir, n.block(t, dir, `ttl = 60`))

	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(b.Register(ctx, "web", "web-1", "127.0.0.11:8080"))
	must(b.Register(ctx, "web", "web-2", "127.0.0.12:8080"))
	// Registering again is not an error and changes nothing.
	must(b.Register(ctx, "web", "web-2", "127.0.0.12:8080"))
	check(t, "web A", addrs(n.lookup(t, "web.example.test.", mdns.TypeA)), []string{"127.0.0.11", "127.0.0.12"})
	if rrs := n.lookup(t, "web.example.test.", mdns.TypeA); rrs[0].Header().Ttl != 60 {
		t.Fatalf("ttl = %d, want 60", rrs[0].Header().Ttl)
	}
	// Another role gets its own name; IPv6 endpoints get AAAA.
	must(b.Register(ctx, "api", "api-1", "[::1]:9000"))
	check(t, "api AAAA", addrs(n.lookup(t, "api.example.test.", mdns.TypeAAAA)), []string{"::1"})
	check(t, "list", servers(t, b, "web"), []string{"web-1=127.0.0.11:8080", "web-2=127.0.0.12:8080"})

	must(b.Deregister(ctx, "web", "web-1"))
	check(t, "web A after deregister", addrs(n.lookup(t, "web.example.test.", mdns.TypeA)), []string{"127.0.0.12"})
	check(t, "list after deregister", servers(t, b, "web"), []string{"web-2=127.0.0.12:8080"})
	must(b.Deregister(ctx, "web", "web-1")) // unknown now: not an error

	// Two servers on one host share its address record: removing one
	// leaves the other reachable.
	must(b.Register(ctx, "web", "web-3", "127.0.0.12:8081"))
	must(b.Deregister(ctx, "web", "web-3"))
	check(t, "shared address", addrs(n.lookup(t, "web.example.test.", mdns.TypeA)), []string{"127.0.0.12"})

	// A server that moved loses its old address in the same update.
	must(b.Register(ctx, "web", "web-2", "127.0.0.13:8080"))
	check(t, "moved", addrs(n.lookup(t, "web.example.test.", mdns.TypeA)), []string{"127.0.0.13"})

	// Host names are refused: the balancer publishes addresses.
	if err := b.Register(ctx, "web", "web-4", "localhost:8080"); err == nil || !strings.Contains(err.Error(), "not an IP address") {
		t.Fatalf("host name endpoint: %v", err)
	}
}

func TestSRVRecords(t *testing.T) {
	n := startNamed(t)
	ctx := context.Background()
	dir := t.TempDir()
	b := open(t, dir, n.block(t, dir, `
type = "SRV"
name = "www"
`))
	for i, s := range []string{"web-1", "web-2"} {
		if err := b.Register(ctx, "web", s, fmt.Sprintf("127.0.0.1:%d", 8001+i)); err != nil {
			t.Fatal(err)
		}
	}
	check(t, "SRV", addrs(n.lookup(t, "_www._tcp.example.test.", mdns.TypeSRV)), []string{"web-1.example.test.:8001", "web-2.example.test.:8002"})
	check(t, "target A", addrs(n.lookup(t, "web-1.example.test.", mdns.TypeA)), []string{"127.0.0.1"})
	check(t, "list", servers(t, b, "web"), []string{"web-1=127.0.0.1:8001", "web-2=127.0.0.1:8002"})

	if err := b.Deregister(ctx, "web", "web-1"); err != nil {
		t.Fatal(err)
	}
	check(t, "SRV after deregister", addrs(n.lookup(t, "_www._tcp.example.test.", mdns.TypeSRV)), []string{"web-2.example.test.:8002"})
	check(t, "web-1 A after deregister", addrs(n.lookup(t, "web-1.example.test.", mdns.TypeA)), []string(nil))
	check(t, "web-2 A after deregister", addrs(n.lookup(t, "web-2.example.test.", mdns.TypeA)), []string{"127.0.0.1"})
}

func TestWrongSecretIsRefused(t *testing.T) {
	n := startNamed(t)
	dir := t.TempDir()
	wrong := newSecret(t)
	b := open(t, dir, fmt.Sprintf(`
server        = %q
zone          = "example.test."
tsig_key_name = "roster"
tsig_secret   = %q
`, n.addr, wrong))
	err := b.Register(context.Background(), "web", "web-1", "127.0.0.11:80")
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("register with a wrong secret: %v, want ErrRefused", err)
	}
	t.Logf("wrong secret: %v", err)
	if msg := err.Error(); !strings.Contains(msg, "NOTAUTH") && !strings.Contains(msg, "BADSIG") {
		t.Fatalf("error does not say NOTAUTH or BADSIG: %v", err)
	}
	if strings.Contains(err.Error(), wrong) {
		t.Fatalf("error quotes the secret: %v", err)
	}
	check(t, "web A", addrs(n.lookup(t, "web.example.test.", mdns.TypeA)), []string(nil))
	// A key the server does not know is refused too.
	b2 := open(t, t.TempDir(), fmt.Sprintf(`
server        = %q
zone          = "example.test."
tsig_key_name = "stranger"
tsig_secret   = %q
`, n.addr, n.secret))
	err = b2.Register(context.Background(), "web", "web-1", "127.0.0.11:80")
	t.Logf("unknown key: %v", err)
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "BADKEY") {
		t.Fatalf("register with an unknown key: %v, want ErrRefused", err)
	}
}

func TestDrainRemovesThenWaitsTTL(t *testing.T) {
	n := startNamed(t)
	ctx := context.Background()
	dir := t.TempDir()
	b := open(t, dir, n.block(t, dir, `ttl = 1`))
	if err := b.Register(ctx, "web", "web-1", "127.0.0.11:80"); err != nil {
		t.Fatal(err)
	}
	if err := b.Register(ctx, "web", "web-2", "127.0.0.12:80"); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var events []string
	event := func(e string) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, e)
	}
	real := b.wait
	b.wait = func(ctx context.Context, d time.Duration) error {
		// By the time Drain waits, clients asking get the other server only.
		event("wait: records " + strings.Join(addrs(n.lookup(t, "web.example.test.", mdns.TypeA)), ","))
		if d <= 0 || d > time.Second {
			t.Errorf("drain waits %s, want at most the 1s TTL", d)
		}
		err := real(ctx, d)
		event("waited")
		return err
	}
	if err := b.Drain(ctx, "web", "web-1"); err != nil {
		t.Fatal(err)
	}
	event("drain returned")
	check(t, "events", events, []string{"wait: records 127.0.0.12", "waited", "drain returned"})
	check(t, "list while draining", servers(t, b, "web"), []string{"web-1=127.0.0.11:80 draining", "web-2=127.0.0.12:80"})

	// A drain cut short returns ctx's error and leaves the server draining.
	if err := b.Register(ctx, "web", "web-1", "127.0.0.11:80"); err != nil {
		t.Fatal(err)
	}
	check(t, "back", addrs(n.lookup(t, "web.example.test.", mdns.TypeA)), []string{"127.0.0.11", "127.0.0.12"})
	cctx, cancel := context.WithCancel(ctx)
	b.wait = func(ctx context.Context, d time.Duration) error {
		cancel()
		return real(ctx, d)
	}
	if err := b.Drain(cctx, "web", "web-1"); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled drain: %v", err)
	}
	check(t, "list after canceled drain", servers(t, b, "web"), []string{"web-1=127.0.0.11:80 draining", "web-2=127.0.0.12:80"})
	if err := b.Deregister(ctx, "web", "web-1"); err != nil {
		t.Fatal(err)
	}
	check(t, "after deregister", addrs(n.lookup(t, "web.example.test.", mdns.TypeA)), []string{"127.0.0.12"})
	// Draining an unknown server has nothing to do and does not wait.
	b.wait = func(context.Context, time.Duration) error {
		t.Error("drain of an unknown server waited")
		return nil
	}
	if err := b.Drain(ctx, "web", "web-9"); err != nil {
		t.Fatal(err)
	}
}

func TestListSurvivesReopenAndReconciles(t *testing.T) {
	n := startNamed(t)
	ctx := context.Background()
	dir := t.TempDir()
	src := n.block(t, dir, "")
	b := open(t, dir, src)
	for i, s := range []string{"web-1", "web-2"} {
		if err := b.Register(ctx, "web", s, fmt.Sprintf("127.0.0.%d:80", 11+i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = open(t, dir, src)
	check(t, "list after reopen", servers(t, b, "web"), []string{"web-1=127.0.0.11:80", "web-2=127.0.0.12:80"})
	list, err := b.List(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if list[0].Sessions != -1 || list[0].Role != "web" {
		t.Fatalf("backend = %+v", list[0])
	}

	// Someone removes web-1's record behind the balancer's back: List
	// leaves it out, so that reconcile registers it again.
	m := new(mdns.Msg)
	m.SetUpdate("example.test.")
	rr, err := mdns.NewRR("web.example.test. 0 IN A 127.0.0.11")
	if err != nil {
		t.Fatal(err)
	}
	m.Remove([]mdns.RR{rr})
	n.update(t, m)
	check(t, "list after outside removal", servers(t, b, "web"), []string{"web-2=127.0.0.12:80"})
	if err := b.Register(ctx, "web", "web-1", "127.0.0.11:80"); err != nil {
		t.Fatal(err)
	}
	check(t, "list after re-register", servers(t, b, "web"), []string{"web-1=127.0.0.11:80", "web-2=127.0.0.12:80"})
	check(t, "unknown role", servers(t, b, "db"), []string(nil))
}

func TestDecodeConfig(t *testing.T) {
	dir := t.TempDir()
	const secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3I="
	cfg, diags := DecodeConfig(parseBody(t, dir, `
server        = "127.0.0.1:53"
zone          = "Example.Test"
tsig_key_name = "roster"
tsig_secret   = "`+secret+`"
`))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	check(t, "zone", cfg.Zone, "example.test.")
	check(t, "type", cfg.Type, TypeAddress)
	check(t, "ttl", cfg.TTL, uint32(DefaultTTL))
	check(t, "algorithm", cfg.Algorithm, mdns.HmacSHA256)
	check(t, "key", cfg.KeyName, "roster.")
	for _, f := range []string{"%v", "%+v", "%#v", "%s"} {
		if strings.Contains(fmt.Sprintf(f, cfg), secret) {
			t.Fatalf("%s of the config shows the secret", f)
		}
	}

	base := "server = \"127.0.0.1:53\"\nzone = \"example.test.\"\ntsig_key_name = \"roster\"\n"
	for _, tc := range []struct {
		src, summary, at string
	}{
		{base + `tsig_secret = "` + secret + `"` + "\nserver2 = 1\n", "Unsupported argument", "server2"},
		{`zone = "example.test." ` + "\ntsig_key_name = \"k\"\ntsig_secret = \"" + secret + "\"\n", "Missing required argument", ""},
		{base + `tsig_secret = "` + secret + `"` + "\ntype = \"MX\"\n", "Invalid record type", `"MX"`},
		{base + `tsig_secret = "` + secret + `"` + "\nttl = 0\n", "Invalid ttl", "0"},
		{base + `tsig_secret = "` + secret + `"` + "\ntsig_algorithm = \"hmac-md5\"\n", "Invalid TSIG algorithm", `"hmac-md5"`},
		{base + `tsig_secret = "not base64!"`, "Invalid TSIG secret", `"not base64!"`},
		{base, "Missing TSIG secret", ""},
		{base + `tsig_secret = "` + secret + `"` + "\ntsig_secret_file = \"k\"\n", "Two TSIG secrets", `tsig_secret_file = "k"`},
		{`server = "127.0.0.1"` + "\nzone = \"example.test.\"\ntsig_key_name = \"roster\"\ntsig_secret = \"" + secret + "\"\n", "Invalid server", `"127.0.0.1"`},
		{base + `tsig_secret = "` + secret + `"` + "\nname = \"web.other.test.\"\n", "Name outside the zone", `"web.other.test."`},
		{base + `tsig_secret = "` + secret + `"` + "\ntimeout = \"soon\"\n", "Invalid duration", `"soon"`},
	} {
		body := parseBody(t, dir, tc.src)
		_, diags := DecodeConfig(body)
		var found *hcl.Diagnostic
		for _, d := range diags {
			if d.Summary == tc.summary {
				found = d
			}
			if strings.Contains(d.Detail, secret) || strings.Contains(d.Detail, "not base64!") {
				t.Errorf("diagnostic quotes the secret: %s", d.Detail)
			}
		}
		if found == nil {
			t.Errorf("%q: no %q diagnostic in %v", tc.src, tc.summary, diags)
			continue
		}
		if found.Subject == nil || found.Subject.Filename == "" {
			t.Errorf("%q: diagnostic without a range", tc.summary)
			continue
		}
		if tc.at != "" {
			got := string(found.Subject.SliceBytes([]byte(tc.src)))
			if got != tc.at {
				t.Errorf("%q: range covers %q, want %q", tc.summary, got, tc.at)
			}
		}
	}
}
