// Package dns is the `dns` balancer, for sites that find their servers by
// name: it adds and removes each ready server's records in an authoritative
// zone with RFC 2136 dynamic updates signed with TSIG, so that clients
// resolving the role's name (or its SRV record) reach the pool.
//
// DNS has no sessions to watch and clients cache answers, so Drain removes
// the server's records at once and then waits the records' TTL: a client
// that resolved the name just before may use the old answer that long. The
// TTL therefore bounds how long a leaving server keeps being drained before
// it is halted.
//
// Import it for its side effect, which registers the type with
// core/balancer:
//
//	import _ "github.com/rosterhq/roster/core/balancer/dns"
package dns

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	mdns "github.com/miekg/dns"

	"github.com/rosterhq/roster/core/balancer"
	"github.com/rosterhq/roster/core/config"
)

// Type is the balancer type this package implements.
const Type = "dns"

// ErrRefused is wrapped by the error of an update or query the server
// answered with an error code (NOTAUTH, REFUSED…), or whose TSIG it refused
// (BADSIG, BADKEY…).
var ErrRefused = errors.New("refused by the DNS server")

// tsigFudge is the clock skew, in seconds, the server accepts on a signed
// message; 300 is what RFC 8945 recommends.
const tsigFudge = 300

func init() {
	balancer.RegisterType(Type, func(ctx context.Context, cfg config.Balancer, opts balancer.Options) (balancer.Balancer, error) {
		c, diags := DecodeConfig(cfg.Body)
		if diags.HasErrors() {
			return nil, fmt.Errorf("balancer %q: %w", cfg.Name, diags)
		}
		// A relative secret file is relative to the file that declares
		// the block.
		if c.SecretFile != "" && !filepath.IsAbs(c.SecretFile) && cfg.Range.Filename != "" {
			c.SecretFile = filepath.Join(filepath.Dir(cfg.Range.Filename), c.SecretFile)
		}
		return New(ctx, cfg.Name, c, opts)
	})
}

// entry is one registered server as the state file keeps it.
type entry struct {
	Endpoint string `json:"endpoint"`
	// Records are the RRs added for the server, in zone-file form; they
	// are what Deregister removes, whatever the config says now.
	Records []string `json:"records"`
	// TTL is the records' TTL when they were added: how long clients may
	// keep them after they are removed.
	TTL      uint32 `json:"ttl"`
	Draining bool   `json:"draining,omitempty"`
	// DrainedAt is when the records were removed for a drain, so that a
	// drain repeated after a restart waits only what is left of the TTL.
	DrainedAt time.Time `json:"drained_at,omitzero"`
}

// Balancer is a dns balancer.
type Balancer struct {
	name   string
	cfg    Config
	secret string // base64, resolved from the block or its file
	client *mdns.Client
	state  string // the JSON file that keeps the servers across restarts
	log    hclog.Logger
	// wait sleeps d or until ctx is done; tests replace it to see when
	// Drain waits.
	wait func(ctx context.Context, d time.Duration) error

	mu sync.Mutex
	// pools maps role -> server -> entry.
	pools map[string]map[string]entry
}

var _ balancer.Balancer = (*Balancer)(nil)

// New opens a dns balancer: it reads the TSIG secret (from the block or its
// file) and the servers kept in the data directory. It asks the server
// nothing: the first update or List does.
func New(_ context.Context, name string, cfg Config, opts balancer.Options) (*Balancer, error) {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.DataDir == "" {
		return nil, fmt.Errorf("balancer %q: the dns balancer needs the orchestrator's data_dir to keep its list", name)
	}
	secret := string(cfg.Secret)
	if cfg.SecretFile != "" {
		s, err := readSecretFile(cfg.SecretFile)
		if err != nil {
			return nil, fmt.Errorf("balancer %q: tsig_secret_file %s: %w", name, cfg.SecretFile, err)
		}
		secret = s
	}
	if secret == "" {
		return nil, fmt.Errorf("balancer %q: no TSIG secret: set tsig_secret_file or tsig_secret", name)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	b := &Balancer{
		name:   name,
		cfg:    cfg,
		secret: secret,
		// TCP: an update or an answer never gets truncated, and a lost
		// datagram never looks like a timeout of the server.
		client: &mdns.Client{Net: "tcp", Timeout: cfg.Timeout, TsigSecret: map[string]string{cfg.KeyName: secret}},
		state:  filepath.Join(opts.DataDir, "balancers", name, "state.json"),
		log:    opts.Logger.Named("balancer_dns").With("balancer", name, "zone", cfg.Zone, "dns_server", cfg.Server),
		wait:   sleep,
		pools:  map[string]map[string]entry{},
	}
	if err := os.MkdirAll(filepath.Dir(b.state), 0o700); err != nil {
		return nil, fmt.Errorf("balancer %q: %w", name, err)
	}
	data, err := os.ReadFile(b.state)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("balancer %q: %w", name, err)
	default:
		if err := json.Unmarshal(data, &b.pools); err != nil {
			return nil, fmt.Errorf("balancer %q: %s: %w", name, b.state, err)
		}
	}
	return b, nil
}

// secretInKeyFile finds the secret in a BIND key file as tsig-keygen writes
// it: key "name" { algorithm hmac-sha256; secret "…"; };
var secretInKeyFile = regexp.MustCompile(`secret\s+"([^"]+)"`)

// readSecretFile reads a base64 secret, alone in the file or in a BIND key
// block. Errors never quote the file's content.
func readSecretFile(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := strings.TrimSpace(string(data))
	if m := secretInKeyFile.FindStringSubmatch(s); m != nil {
		s = m[1]
	}
	if _, err := base64.StdEncoding.DecodeString(s); err != nil || s == "" {
		return "", errors.New("the file holds neither a base64 secret nor a key block with one")
	}
	return s, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Name is the balancer's name.
func (b *Balancer) Name() string { return b.name }

// Type is "dns".
func (b *Balancer) Type() string { return Type }

// Register adds server's records and keeps them in the state file. It is
// sent even when the server is registered already: adding an identical RR
// changes nothing, and it puts back records someone removed. A server that
// moved loses its old records in the same update; one that drained is made
// ready again.
func (b *Balancer) Register(ctx context.Context, role, server, endpoint string) error {
	if role == "" || server == "" || endpoint == "" {
		return fmt.Errorf("balancer %q: registering %q of role %q at %q: role, server and endpoint are required", b.name, server, role, endpoint)
	}
	rrs, err := b.records(role, server, endpoint)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	want := entry{Endpoint: endpoint, TTL: b.cfg.TTL}
	keep := map[string]bool{}
	for _, rr := range rrs {
		want.Records = append(want.Records, rr.String())
		keep[key(rr)] = true
	}
	var remove []mdns.RR
	if old, ok := b.pools[role][server]; ok {
		shared := b.shared(role, server)
		for _, rr := range parse(old.Records) {
			if k := key(rr); !keep[k] && !shared[k] {
				remove = append(remove, rr)
			}
		}
	}
	if err := b.update(ctx, rrs, remove); err != nil {
		return fmt.Errorf("balancer %q: registering %q of role %q: %w", b.name, server, role, err)
	}
	p := b.pools[role]
	if p == nil {
		p = map[string]entry{}
		b.pools[role] = p
	}
	p[server] = want
	if err := b.save(); err != nil {
		return err
	}
	b.log.Info("server registered", "role", role, "server", server, "endpoint", endpoint, "records", len(rrs))
	return nil
}

// Drain removes server's records at once, then waits their TTL (or until
// ctx is done): clients may hold the old answer that long. A drain repeated
// (after a restart, say) waits only what is left of the TTL. An unknown
// server has nothing to drain.
func (b *Balancer) Drain(ctx context.Context, role, server string) error {
	b.mu.Lock()
	e, ok := b.pools[role][server]
	if !ok {
		b.mu.Unlock()
		return nil
	}
	if !e.Draining {
		if err := b.update(ctx, nil, b.removable(role, server, e)); err != nil {
			b.mu.Unlock()
			return fmt.Errorf("balancer %q: draining %q of role %q: %w", b.name, server, role, err)
		}
		e.Draining, e.DrainedAt = true, time.Now().UTC()
		b.pools[role][server] = e
		if err := b.save(); err != nil {
			b.mu.Unlock()
			return err
		}
		b.log.Info("server draining: records removed, waiting for cached answers to expire", "role", role, "server", server, "ttl", e.TTL)
	}
	b.mu.Unlock()
	left := time.Until(e.DrainedAt.Add(time.Duration(e.TTL) * time.Second))
	if left <= 0 {
		return ctx.Err()
	}
	return b.wait(ctx, left)
}

// Deregister removes server's records and forgets it.
func (b *Balancer) Deregister(ctx context.Context, role, server string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.pools[role][server]
	if !ok {
		return nil
	}
	// A drained server's records are gone already; removing them again
	// costs one update and cleans up after a drain that failed halfway.
	if err := b.update(ctx, nil, b.removable(role, server, e)); err != nil {
		return fmt.Errorf("balancer %q: deregistering %q of role %q: %w", b.name, server, role, err)
	}
	delete(b.pools[role], server)
	if len(b.pools[role]) == 0 {
		delete(b.pools, role)
	}
	if err := b.save(); err != nil {
		return err
	}
	b.log.Info("server removed", "role", role, "server", server)
	return nil
}

// List returns role's servers: the ones the state file keeps whose records
// the server still answers, and the draining ones. A ready server whose
// records are missing is left out (and logged), so that the orchestrator's
// reconcile registers it again. Records of the role's name that no known
// server holds are logged and left alone: someone else may manage them.
// Sessions is -1: DNS cannot tell.
func (b *Balancer) List(ctx context.Context, role string) ([]balancer.Backend, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	present := map[string]bool{}
	asked := map[string]bool{}
	ask := func(name string, t uint16) error {
		q := strings.ToLower(name) + "/" + mdns.TypeToString[t]
		if asked[q] {
			return nil
		}
		asked[q] = true
		rrs, err := b.query(ctx, name, t)
		if err != nil {
			return fmt.Errorf("balancer %q: listing role %q: %w", b.name, role, err)
		}
		for _, rr := range rrs {
			present[key(rr)] = true
		}
		return nil
	}
	owner := b.owner(role)
	types := []uint16{mdns.TypeA, mdns.TypeAAAA}
	if b.cfg.Type == TypeSRV {
		owner, types = srvOwner(owner), []uint16{mdns.TypeSRV}
	}
	for _, t := range types {
		if err := ask(owner, t); err != nil {
			return nil, err
		}
	}
	held := map[string]bool{}
	out := make([]balancer.Backend, 0, len(b.pools[role]))
	for server, e := range b.pools[role] {
		rrs := parse(e.Records)
		all := true
		for _, rr := range rrs {
			h := rr.Header()
			if err := ask(h.Name, h.Rrtype); err != nil {
				return nil, err
			}
			held[key(rr)] = true
			all = all && present[key(rr)]
		}
		be := balancer.Backend{Role: role, Server: server, Endpoint: e.Endpoint, Draining: e.Draining, Sessions: -1}
		switch {
		case e.Draining:
			out = append(out, be)
		case all && len(rrs) > 0:
			out = append(out, be)
		default:
			b.log.Warn("server's records are missing from the zone; leaving it out of the list so that it is registered again", "role", role, "server", server)
		}
	}
	var foreign []string
	for k := range present {
		if !held[k] {
			foreign = append(foreign, k)
		}
	}
	if len(foreign) > 0 {
		sort.Strings(foreign)
		b.log.Debug("records in the zone that no known server holds; left alone", "role", role, "records", foreign)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Server < out[j].Server })
	return out, nil
}

// Close does nothing: the records stay, so that clients keep finding the
// pool while the orchestrator restarts.
func (b *Balancer) Close() error { return nil }

// owner is the record name of role's servers, fully qualified.
func (b *Balancer) owner(role string) string {
	name := b.cfg.Name
	if name == "" {
		name = role
	}
	if !mdns.IsFqdn(name) {
		name = name + "." + b.cfg.Zone
	}
	return mdns.CanonicalName(name)
}

// srvOwner turns web.example.test. into _web._tcp.example.test.
func srvOwner(owner string) string {
	first, rest, _ := strings.Cut(owner, ".")
	return "_" + first + "._tcp." + rest
}

// records are the RRs that route to server at endpoint.
func (b *Balancer) records(role, server, endpoint string) ([]mdns.RR, error) {
	host, port, err := net.SplitHostPort(endpoint)
	if err != nil {
		return nil, fmt.Errorf("balancer %q: endpoint %q of server %q: %w", b.name, endpoint, server, err)
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return nil, fmt.Errorf("balancer %q: endpoint %q of server %q: the dns balancer publishes addresses, and %q is not an IP address", b.name, endpoint, server, host)
	}
	owner := b.owner(role)
	if _, ok := mdns.IsDomainName(owner); !ok {
		return nil, fmt.Errorf("balancer %q: role %q: %q is not a valid record name; set name in the block", b.name, role, owner)
	}
	if b.cfg.Type != TypeSRV {
		return []mdns.RR{b.address(owner, ip)}, nil
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return nil, fmt.Errorf("balancer %q: endpoint %q of server %q: %q is not a port", b.name, endpoint, server, port)
	}
	target := mdns.CanonicalName(server + "." + b.cfg.Zone)
	if _, ok := mdns.IsDomainName(target); !ok || strings.Contains(server, ".") {
		return nil, fmt.Errorf("balancer %q: server %q: an SRV target is <server>.<zone>, and %q is not a DNS label", b.name, server, server)
	}
	srv := &mdns.SRV{
		Hdr: mdns.RR_Header{Name: srvOwner(owner), Rrtype: mdns.TypeSRV, Class: mdns.ClassINET, Ttl: b.cfg.TTL},
		// Equal priority and weight: clients spread over the pool.
		Priority: 10, Weight: 10, Port: uint16(p), Target: target,
	}
	return []mdns.RR{srv, b.address(target, ip)}, nil
}

func (b *Balancer) address(name string, ip net.IP) mdns.RR {
	if v4 := ip.To4(); v4 != nil {
		return &mdns.A{Hdr: mdns.RR_Header{Name: name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: b.cfg.TTL}, A: v4}
	}
	return &mdns.AAAA{Hdr: mdns.RR_Header{Name: name, Rrtype: mdns.TypeAAAA, Class: mdns.ClassINET, Ttl: b.cfg.TTL}, AAAA: ip}
}

// key identifies an RR by name, type and data, whatever its TTL and class:
// what RFC 2136 compares when it removes one.
func key(rr mdns.RR) string {
	c := mdns.Copy(rr)
	h := c.Header()
	h.Ttl, h.Class, h.Name = 0, mdns.ClassINET, strings.ToLower(h.Name)
	return c.String()
}

// parse reads back the records the state file keeps; it wrote them, so a
// line it cannot read is skipped rather than fatal.
func parse(lines []string) []mdns.RR {
	out := make([]mdns.RR, 0, len(lines))
	for _, l := range lines {
		if rr, err := mdns.NewRR(l); err == nil && rr != nil {
			out = append(out, rr)
		}
	}
	return out
}

// shared are the records other ready servers hold too (servers of one host
// share its address record in A mode); removing one of them would take the
// others out. b.mu is held.
func (b *Balancer) shared(role, server string) map[string]bool {
	out := map[string]bool{}
	for r, p := range b.pools {
		for s, e := range p {
			if (r == role && s == server) || e.Draining {
				continue
			}
			for _, rr := range parse(e.Records) {
				out[key(rr)] = true
			}
		}
	}
	return out
}

// removable are server's records no other ready server holds. b.mu is held.
func (b *Balancer) removable(role, server string, e entry) []mdns.RR {
	shared := b.shared(role, server)
	var out []mdns.RR
	for _, rr := range parse(e.Records) {
		if !shared[key(rr)] {
			out = append(out, rr)
		}
	}
	return out
}

// update sends one signed RFC 2136 update that removes and inserts the
// given records, atomically.
func (b *Balancer) update(ctx context.Context, insert, remove []mdns.RR) error {
	if len(insert) == 0 && len(remove) == 0 {
		return nil
	}
	m := new(mdns.Msg)
	m.SetUpdate(b.cfg.Zone)
	// Remove and Insert change the RRs they are given: hand them copies.
	if len(remove) > 0 {
		m.Remove(copies(remove))
	}
	if len(insert) > 0 {
		m.Insert(copies(insert))
	}
	_, err := b.exchange(ctx, m, "update of zone "+b.cfg.Zone)
	return err
}

// query asks the server for name's records of type t; a name that does not
// exist has none.
func (b *Balancer) query(ctx context.Context, name string, t uint16) ([]mdns.RR, error) {
	m := new(mdns.Msg)
	m.SetQuestion(mdns.CanonicalName(name), t)
	m.RecursionDesired = false
	r, err := b.exchange(ctx, m, fmt.Sprintf("query %s %s", name, mdns.TypeToString[t]))
	if err != nil {
		return nil, err
	}
	var out []mdns.RR
	for _, rr := range r.Answer {
		if rr.Header().Rrtype == t && strings.EqualFold(rr.Header().Name, name) {
			out = append(out, rr)
		}
	}
	return out, nil
}

// exchange signs m, sends it and checks the answer; NXDOMAIN is not an
// error here (a query for a name with no records).
func (b *Balancer) exchange(ctx context.Context, m *mdns.Msg, what string) (*mdns.Msg, error) {
	m.SetTsig(b.cfg.KeyName, b.cfg.Algorithm, tsigFudge, time.Now().Unix())
	ctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	r, _, err := b.client.ExchangeContext(ctx, m, b.cfg.Server)
	if r != nil && r.Rcode != mdns.RcodeSuccess && r.Rcode != mdns.RcodeNameError {
		return nil, fmt.Errorf("%s at %s: %w: %s", what, b.cfg.Server, ErrRefused, rcode(r))
	}
	if err != nil {
		if errors.Is(err, mdns.ErrSig) || errors.Is(err, mdns.ErrSecret) {
			return nil, fmt.Errorf("%s at %s: %w: the answer's TSIG does not verify with key %q (%v)", what, b.cfg.Server, ErrRefused, b.cfg.KeyName, err)
		}
		return nil, fmt.Errorf("%s at %s: %w", what, b.cfg.Server, err)
	}
	return r, nil
}

// rcode describes an error answer, with the TSIG error when there is one
// (NOTAUTH with BADSIG: the secret is wrong; with BADKEY: the server does
// not know the key).
func rcode(r *mdns.Msg) string {
	s := mdns.RcodeToString[r.Rcode]
	if s == "" {
		s = strconv.Itoa(r.Rcode)
	}
	if t := r.IsTsig(); t != nil && t.Error != 0 {
		te := mdns.RcodeToString[int(t.Error)]
		if te == "" {
			te = strconv.Itoa(int(t.Error))
		}
		s += " (TSIG " + te + ")"
	}
	switch r.Rcode {
	case mdns.RcodeNotAuth:
		s += ": the server refused the key or its signature, or is not authoritative for the zone"
	case mdns.RcodeRefused:
		s += ": the zone's update policy does not allow this key to make this change"
	}
	return s
}

func copies(rrs []mdns.RR) []mdns.RR {
	out := make([]mdns.RR, len(rrs))
	for i, rr := range rrs {
		out[i] = mdns.Copy(rr)
	}
	return out
}

// save writes the state file atomically. b.mu is held.
func (b *Balancer) save() error {
	data, err := json.MarshalIndent(b.pools, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(b.state)
	f, err := os.CreateTemp(dir, ".state.json.*")
	if err != nil {
		return fmt.Errorf("balancer %q: %w", b.name, err)
	}
	defer os.Remove(f.Name())
	_, err = f.Write(append(data, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), b.state)
	}
	if err != nil {
		return fmt.Errorf("balancer %q: writing %s: %w", b.name, b.state, err)
	}
	return nil
}
