package db

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/rosterhq/roster/sdk"
)

func TestSocketDirFallsBackWhenTooDeep(t *testing.T) {
	short := layoutOf("/srv/roster/db-1")
	if short.Socket != "/srv/roster/db-1/db/socket" || short.socketOutside() {
		t.Errorf("short work dir: socket %s", short.Socket)
	}
	deep := "/srv/" + strings.Repeat("x", 100)
	l := layoutOf(deep)
	if !l.socketOutside() || len(l.Socket)+len("/.s.PGSQL.65535.lock") > maxSocketPath {
		t.Errorf("deep work dir: socket %s", l.Socket)
	}
	if layoutOf(deep).Socket != l.Socket || layoutOf(deep+"y").Socket == l.Socket {
		t.Error("the fallback socket directory must be the same for one work dir and differ between two")
	}
}

func TestHBA(t *testing.T) {
	c := conf{settings: settings{ClientCIDRs: loopbackCIDRs, ReplicationCIDRs: []string{"127.0.0.1/32"}}, Server: "db-1", Replication: true}
	normal := string(renderHBA(c))
	for _, want := range []string{
		"local   all          all                                 trust",
		"host    replication  replicator  127.0.0.1/32            trust",
		"host    all          all         127.0.0.1/32            scram-sha-256",
		"host    all          all         ::1/128                 scram-sha-256",
	} {
		if !strings.Contains(normal, want) {
			t.Errorf("pg_hba.conf lacks %q:\n%s", want, normal)
		}
	}
	if strings.Contains(normal, "reject") {
		t.Errorf("a serving pg_hba.conf rejects:\n%s", normal)
	}
	c.ReplicationPassword = "x"
	c.Draining = true
	draining := string(renderHBA(c))
	repl := strings.Index(draining, "host    replication  replicator  127.0.0.1/32            scram-sha-256")
	reject := strings.Index(draining, "host    all          all         all                     reject")
	if repl < 0 || reject < repl || strings.Contains(draining, "all         127.0.0.1/32") {
		t.Errorf("draining pg_hba.conf: want replication with a password, then every other TCP login rejected:\n%s", draining)
	}
}

func TestConfSettings(t *testing.T) {
	c := conf{settings: settings{Listen: "127.0.0.1", MaxConnections: 7, SharedBuffers: "16MB",
		Settings: map[string]string{"work_mem": "it's", "wal_level": "logical"}}, Server: "db-1", Port: 5433, Socket: "/x/socket"}
	out := string(renderConf(c))
	for _, want := range []string{"work_mem = 'it''s'\n", "port = 5433\n", "unix_socket_directories = '/x/socket'\n",
		"max_connections = 7\n", "cluster_name = 'db-1'\n", "wal_level = 'logical'\n", "max_wal_senders = 10\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("roster.conf lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "wal_level = replica") {
		t.Errorf("the operator's wal_level was overridden:\n%s", out)
	}
}

func TestSCRAMVerifier(t *testing.T) {
	v, err := scramVerifier("pencil")
	if err != nil {
		t.Fatal(err)
	}
	// SCRAM-SHA-256$4096:<salt>$<StoredKey>:<ServerKey>, checked by
	// recomputing the keys from the salt.
	head, keys, ok := strings.Cut(strings.TrimPrefix(v, "SCRAM-SHA-256$"), "$")
	iter, saltB64, ok2 := strings.Cut(head, ":")
	storedB64, serverB64, ok3 := strings.Cut(keys, ":")
	if !strings.HasPrefix(v, "SCRAM-SHA-256$") || !ok || !ok2 || !ok3 || iter != "4096" {
		t.Fatalf("verifier %q", v)
	}
	salt, _ := base64.StdEncoding.DecodeString(saltB64)
	salted, _ := pbkdf2.Key(sha256.New, "pencil", salt, 4096, 32)
	h := hmac.New(sha256.New, salted)
	h.Write([]byte("Client Key"))
	stored := sha256.Sum256(h.Sum(nil))
	h = hmac.New(sha256.New, salted)
	h.Write([]byte("Server Key"))
	if base64.StdEncoding.EncodeToString(stored[:]) != storedB64 || base64.StdEncoding.EncodeToString(h.Sum(nil)) != serverB64 {
		t.Errorf("verifier %q does not match the password", v)
	}
	if v2, _ := scramVerifier("pencil"); v2 == v {
		t.Error("two verifiers share a salt")
	}
	// Beyond printable ASCII the server hashes, after SASLprep.
	if c, _ := passwordClause("pässword"); c != "PASSWORD 'pässword'" {
		t.Errorf("non-ASCII password clause %q", c)
	}
	if c, _ := passwordClause("it's"); !strings.HasPrefix(c, "PASSWORD 'SCRAM-SHA-256$") {
		t.Errorf("password clause %q", c)
	}
}

func TestResolvePrimary(t *testing.T) {
	peers := map[string][]sdk.Peer{
		"db": {
			{Name: "db-2", Endpoints: sdk.Endpoints{"postgres": "127.0.0.1:6002"}},
			{Name: "db-1", Endpoints: sdk.Endpoints{"postgres": "127.0.0.1:6001"}},
		},
		"web": {{Name: "web-1", Endpoints: sdk.Endpoints{"http": "127.0.0.1:80"}}},
	}
	cases := []struct {
		replicaOf, self, want string
		err                   error
	}{
		{"10.0.0.5:5432", "db-3", "10.0.0.5:5432", nil},
		{"[::1]:5432", "db-3", "[::1]:5432", nil},
		{"db", "db-3", "127.0.0.1:6001", nil},
		{"db", "db-1", "127.0.0.1:6002", nil}, // never itself
		{"db-2", "x", "127.0.0.1:6002", nil},
		{"web-1", "x", "", sdk.ErrUnavailable},
		{"cache", "x", "", sdk.ErrUnavailable},
	}
	for _, c := range cases {
		got, err := resolvePrimary(c.replicaOf, c.self, peers)
		if got != c.want || (c.err == nil) != (err == nil) || (c.err != nil && !errors.Is(err, c.err)) {
			t.Errorf("resolvePrimary(%q, %q) = %q, %v; want %q, %v", c.replicaOf, c.self, got, err, c.want, c.err)
		}
	}
}

func TestIsLoopback(t *testing.T) {
	for cidr, want := range map[string]bool{"127.0.0.1/32": true, "127.0.0.0/8": true, "::1/128": true,
		"0.0.0.0/0": false, "10.0.0.0/8": false, "::/0": false, "126.0.0.0/7": false} {
		_, n, err := net.ParseCIDR(cidr)
		if err != nil {
			t.Fatal(err)
		}
		if isLoopback(n) != want {
			t.Errorf("isLoopback(%s) = %v", cidr, !want)
		}
	}
}

func TestDefaults(t *testing.T) {
	s, err := decode(sdk.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Listen != "127.0.0.1" || s.MaxConnections != 100 || s.SharedBuffers != "128MB" || !s.DrainCloseIdle ||
		strings.Join(s.ClientCIDRs, ",") != "127.0.0.1/32,::1/128" || strings.Join(s.packages(), " ") != "postgresql" {
		t.Fatalf("defaults of an empty config: %+v", s)
	}
	s, err = decode(mustConfig(t, map[string]any{"version": 15, "listen": "0.0.0.0"}))
	if err != nil || s.packages()[0] != "postgresql-15" || s.endpointHost() != "127.0.0.1" || listenAddr("::1", 5) != "[::1]:5" {
		t.Fatalf("version 15 on 0.0.0.0: %+v %v", s, err)
	}
	if d, u := (settings{}).target(); d != "postgres" || u != superuser {
		t.Errorf("target without database and user: %s as %s", d, u)
	}
}
