package db

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/rosterhq/roster/sdk"
	"github.com/rosterhq/roster/sdk/roletest"
)

// exampleSchema is the lamp example's schema, which the tests load.
const exampleSchema = "../../examples/lamp/sql/schema.sql"

// requirePostgres skips the test when the PostgreSQL server is missing,
// except in CI, where it fails.
func requirePostgres(t testing.TB) {
	t.Helper()
	_, err := binaries(0)
	if err == nil && os.Geteuid() == 0 {
		_, err = clusterAccount()
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v: CI installs postgresql (.ci/apt-packages)", err)
		}
		t.Skipf("%v: apt-get install -y postgresql", err)
	}
}

func mustAbs(t testing.TB, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// cfgMap is a small, quick cluster: little memory, no fsync.
func cfgMap(extra map[string]any) map[string]any {
	m := map[string]any{
		"shared_buffers":  "16MB",
		"max_connections": 20,
		"settings":        map[string]any{"fsync": "off", "synchronous_commit": "off"},
	}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

// appCfg adds the lamp example's database, user and schema.
func appCfg(t testing.TB, extra map[string]any) map[string]any {
	m := cfgMap(map[string]any{
		"database": "lamp",
		"user":     "lamp",
		"password": "s3cret'pass",
		"schema":   "file://" + mustAbs(t, exampleSchema),
	})
	for k, v := range extra {
		m[k] = v
	}
	return m
}

func mustConfig(t testing.TB, m map[string]any) sdk.Config {
	t.Helper()
	c, diags := roletest.DecodeMap(Schema(), m)
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	return c
}

// dial logs in over TCP as the lamp user.
func dial(ctx context.Context, addr string) (*pgx.Conn, error) {
	host, port, err := splitHostPort(addr)
	if err != nil {
		return nil, err
	}
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%d user=lamp dbname=lamp sslmode=disable connect_timeout=5", host, port))
	if err != nil {
		return nil, err
	}
	cfg.Password = "s3cret'pass"
	return pgx.ConnectConfig(ctx, cfg)
}

func mustDial(t testing.TB, addr string) *pgx.Conn {
	t.Helper()
	c, err := dial(context.Background(), addr)
	if err != nil {
		t.Fatalf("log in to %s as lamp: %v", addr, err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// daemonPids returns the pids of the server's postgres processes: the
// postmaster and its children.
func daemonPids(t testing.TB, workDir string) []int {
	t.Helper()
	return roletest.DaemonPids(t, layoutOf(workDir).Run, postgresName)
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not so after 30s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// provision provisions a server directly and tears it down at cleanup.
func provision(t testing.TB, role sdk.Role, srv sdk.Server, cfg sdk.Config, peers map[string][]sdk.Peer) sdk.Endpoints {
	t.Helper()
	t.Cleanup(func() {
		if _, err := role.Teardown(context.Background(), sdk.TeardownRequest{Server: srv, Config: cfg}); err != nil {
			t.Errorf("Teardown of %s at cleanup: %v", srv.Name, err)
		}
	})
	resp, err := role.Provision(context.Background(), sdk.ProvisionRequest{Server: srv, Config: cfg, Peers: peers})
	if err != nil {
		t.Fatalf("Provision of %s: %v", srv.Name, err)
	}
	return resp.Endpoints
}

func greeting(t testing.TB, c *pgx.Conn) string {
	t.Helper()
	var msg string
	if err := c.QueryRow(context.Background(), "SELECT message FROM greeting ORDER BY id LIMIT 1").Scan(&msg); err != nil {
		t.Fatalf("reading the greeting: %v", err)
	}
	return msg
}

func TestLifecycleWithRoletest(t *testing.T) {
	requirePostgres(t)
	t.Parallel()
	var pids []int
	res := roletest.Run(t, New(), roletest.Case{
		Config:        appCfg(t, nil),
		Server:        sdk.Server{WorkDir: roletest.WorkDir(t)},
		WantEndpoints: []string{"postgres"},
		Check: func(t testing.TB, r *roletest.Result) {
			pids = daemonPids(t, r.Server.WorkDir)
			if len(pids) < 3 { // the postmaster and its background processes
				t.Errorf("postgres processes %v: want the postmaster and its children", pids)
			}
			// The site's view: the user logs in over TCP with its password
			// and reads the seed row of the schema, in its own database.
			c := mustDial(t, r.Endpoints["postgres"])
			if got := greeting(t, c); got != "Hello from the db role" {
				t.Errorf("greeting %q", got)
			}
			var owner string
			if err := c.QueryRow(context.Background(), "SELECT tableowner FROM pg_tables WHERE tablename = 'greeting'").Scan(&owner); err != nil || owner != "lamp" {
				t.Errorf("greeting's owner %q (%v): the schema runs as the user", owner, err)
			}
			var super bool
			c.QueryRow(context.Background(), "SELECT rolsuper FROM pg_roles WHERE rolname = current_user").Scan(&super)
			if super {
				t.Error("the user is a superuser")
			}
			for _, m := range []string{"active_connections", "busy_connections", "connection_ratio", "transactions_per_second", "is_replica", "replicas"} {
				if _, ok := r.Health.Metrics[m]; !ok {
					t.Errorf("metric %s missing from %v", m, r.Health.Metrics)
				}
			}
			if _, ok := r.Health.Metrics["replication_lag_seconds"]; ok {
				t.Errorf("a primary reports replication_lag_seconds: %v", r.Health.Metrics)
			}
			// With the user's session open: one connection, and a rate.
			h, err := r.Role.HealthCheck(context.Background(), sdk.HealthCheckRequest{Server: r.Server, Config: r.Config, Endpoints: r.Endpoints})
			if err != nil || !h.Healthy {
				t.Fatalf("HealthCheck: %+v %v", h, err)
			}
			if h.Metrics["active_connections"] != 1 || h.Metrics["connection_ratio"] != 1.0/20 || h.Metrics["is_replica"] != 0 {
				t.Errorf("metrics with one client: %v", h.Metrics)
			}
			if h.Metrics["transactions_per_second"] < 0 {
				t.Errorf("transactions_per_second %v", h.Metrics["transactions_per_second"])
			}
			// Work shows in transactions_per_second (PostgreSQL flushes a
			// session's counts when it ends, or within a second).
			for i := range 50 {
				if _, err := c.Exec(context.Background(), "INSERT INTO greeting (message) VALUES ($1)", fmt.Sprint(i)); err != nil {
					t.Fatal(err)
				}
			}
			c.Close(context.Background())
			waitFor(t, "transactions_per_second above zero", func() bool {
				h, err := r.Role.HealthCheck(context.Background(), sdk.HealthCheckRequest{Server: r.Server, Config: r.Config, Endpoints: r.Endpoints})
				return err == nil && h.Metrics["transactions_per_second"] > 0
			})
			// A wrong password is refused.
			host, port, _ := splitHostPort(r.Endpoints["postgres"])
			if c2, err := pgx.Connect(context.Background(), fmt.Sprintf("postgres://lamp:wrong@%s:%d/lamp?sslmode=disable", host, port)); err == nil {
				c2.Close(context.Background())
				t.Error("a wrong password was accepted")
			}
			// Nothing of the password in clear: neither in the logs nor
			// in the catalogue.
			for _, f := range []string{"postgres.log", "schema.log"} {
				b, _ := os.ReadFile(filepath.Join(r.Server.WorkDir, "db", "logs", f))
				if strings.Contains(string(b), "s3cret") {
					t.Errorf("%s holds the password", f)
				}
			}
		},
	})
	if res.Drain.OpenConnections != 0 {
		t.Errorf("Drain left %d connections", res.Drain.OpenConnections)
	}
	names := map[string]bool{}
	for _, l := range res.Teardown.Logs {
		names[l.Name] = true
	}
	for _, n := range []string{"postgres/postgres.log", "postgres/initdb.log", "postgres/schema.log"} {
		if !names[n] {
			t.Errorf("Teardown logs %v lack %s", res.Teardown.Logs, n)
		}
	}
	if len(res.Progress) < 5 || res.Progress[len(res.Progress)-1].Fraction != 1 {
		t.Errorf("progress %+v: want several steps ending at 1", res.Progress)
	}
	roletest.AssertExited(t, pids)
	if p := roletest.ProcessesMentioning(res.Server.WorkDir); len(p) > 0 {
		t.Errorf("processes left: %v", p)
	}
}

func TestLifecycleAsBinary(t *testing.T) {
	requirePostgres(t)
	t.Parallel()
	bin := roletest.Build(t, "./internal/testmain")
	res := roletest.RunBinary(t, bin, roletest.Case{
		Config:        cfgMap(map[string]any{"database": "app"}),
		Server:        sdk.Server{WorkDir: roletest.WorkDir(t)},
		WantEndpoints: []string{"postgres"},
		Check: func(t testing.TB, r *roletest.Result) {
			if r.Info.Name != Name {
				t.Errorf("Info.Name %q", r.Info.Name)
			}
			if r.Health.Metrics["is_replica"] != 0 {
				t.Errorf("metrics %v", r.Health.Metrics)
			}
		},
	})
	if p := roletest.ProcessesMentioning(res.Server.WorkDir); len(p) > 0 {
		t.Errorf("processes left after Teardown: %v", p)
	}
}

func TestConfigErrorsCaughtBySchema(t *testing.T) {
	cases := []struct{ name, hcl, want string }{
		{"wrong type", `port = "fivefourthreetwo"`, "number"},
		{"unknown attribute", `databse = "app"`, "databse"},
		{"list of strings", `client_cidrs = "10.0.0.0/8"`, "list"},
		{"map of strings", `settings = ["work_mem"]`, "map"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			roletest.Run(t, New(), roletest.Case{ConfigHCL: c.hcl, WantConfigError: c.want})
		})
	}
}

func TestConfigErrorsCaughtByProvision(t *testing.T) {
	cases := map[string]map[string]any{
		"port out of range":        {"port": 70000},
		"bad listen":               {"listen": "localhost"},
		"bad database":             {"database": "Drop Table"},
		"template database":        {"database": "template1"},
		"reserved user":            {"user": "postgres", "password": "x"},
		"user without password":    {"user": "app"},
		"password without user":    {"password": "x"},
		"bad schema sha256":        {"schema": "file:///x.sql", "schema_sha256": "abc"},
		"sha256 without schema":    {"schema_sha256": strings.Repeat("a", 64)},
		"bad shared_buffers":       {"shared_buffers": "lots"},
		"no connections":           {"max_connections": 0},
		"managed setting":          {"settings": map[string]any{"port": "5432"}},
		"bad setting name":         {"settings": map[string]any{"work mem": "1MB"}},
		"setting with line break":  {"settings": map[string]any{"work_mem": "1MB\nport = 1"}},
		"bad cidr":                 {"client_cidrs": []any{"10.0.0.0"}},
		"open replication":         {"replication_cidrs": []any{"10.0.0.0/8"}},
		"schema on a replica":      {"replica_of": "127.0.0.1:5432", "schema": "file:///x.sql"},
		"user on a replica":        {"replica_of": "127.0.0.1:5432", "user": "app", "password": "x"},
		"bad package name":         {"packages": []any{"-o=evil"}},
		"version too old":          {"version": 9},
		"replica of unknown":       {"replica_of": "db"},
		"replica of role, no peer": {"replica_of": "db", "_peers": true},
	}
	for name, extra := range cases {
		t.Run(name, func(t *testing.T) {
			want := sdk.ErrInvalidConfig
			var peers map[string][]sdk.Peer
			if strings.HasPrefix(name, "replica of") {
				want = sdk.ErrUnavailable
			}
			if extra["_peers"] != nil {
				delete(extra, "_peers")
				peers = map[string][]sdk.Peer{"db": {{Name: "db-1"}}}
			}
			wd := roletest.WorkDir(t)
			roletest.Run(t, New(), roletest.Case{
				Config:             cfgMap(extra),
				Server:             sdk.Server{WorkDir: wd},
				Peers:              peers,
				WantProvisionError: want,
			})
			if _, err := os.Stat(layoutOf(wd).Data); !errors.Is(err, os.ErrNotExist) {
				t.Error("a cluster was created for a config that cannot work")
			}
		})
	}
}

func TestWrongSHA256Refused(t *testing.T) {
	requirePostgres(t)
	t.Parallel()
	wd := roletest.WorkDir(t)
	roletest.Run(t, New(), roletest.Case{
		Config:             appCfg(t, map[string]any{"schema_sha256": strings.Repeat("0", 64)}),
		Server:             sdk.Server{WorkDir: wd},
		WantProvisionError: sdk.ErrChecksumMismatch,
	})
	l := layoutOf(wd)
	if _, err := os.Stat(l.Data); !errors.Is(err, os.ErrNotExist) {
		t.Error("a cluster was created although the schema was refused")
	}
	if _, err := os.Stat(filepath.Join(l.Artifacts, "schema.sql")); !errors.Is(err, os.ErrNotExist) {
		t.Error("a schema with the wrong digest was put in place")
	}
	if p := roletest.ProcessesMentioning(wd); len(p) > 0 {
		t.Errorf("processes left after a refused artifact: %v", p)
	}
}

func TestRightSHA256AndDump(t *testing.T) {
	requirePostgres(t)
	t.Parallel()
	b, err := os.ReadFile(exampleSchema)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	wd := roletest.WorkDir(t)
	dump := filepath.Join(wd, "seed.sql")
	os.WriteFile(dump, []byte("INSERT INTO greeting (message) VALUES ('from the dump');\n"), 0o600)
	role := New()
	srv := sdk.Server{Name: "db-1", WorkDir: wd}
	cfg := mustConfig(t, appCfg(t, map[string]any{"schema_sha256": hex.EncodeToString(sum[:]), "dump": "file://" + dump}))
	eps := provision(t, role, srv, cfg, nil)
	c := mustDial(t, eps["postgres"])
	var n int
	if err := c.QueryRow(context.Background(), "SELECT count(*) FROM greeting WHERE message = 'from the dump'").Scan(&n); err != nil || n != 1 {
		t.Fatalf("rows from the dump: %d, %v", n, err)
	}
	c.Close(context.Background())

	// Provision again: the same data, on the same port, and the schema
	// and dump are not run a second time.
	eps2 := provision(t, role, srv, cfg, nil)
	if eps2["postgres"] != eps["postgres"] {
		t.Errorf("endpoint moved from %s to %s", eps["postgres"], eps2["postgres"])
	}
	c = mustDial(t, eps2["postgres"])
	if err := c.QueryRow(context.Background(), "SELECT count(*) FROM greeting").Scan(&n); err != nil || n != 2 {
		t.Fatalf("rows after a second Provision: %d, %v (want the schema's and the dump's, once each)", n, err)
	}
}

func TestFailedProvisionLeavesNothing(t *testing.T) {
	requirePostgres(t)
	t.Parallel()
	wd := roletest.WorkDir(t)
	role := New()
	srv := sdk.Server{Name: "db-1", WorkDir: wd}
	// PostgreSQL refuses the value at start-up.
	cfg := mustConfig(t, cfgMap(map[string]any{"settings": map[string]any{"work_mem": "lots"}}))
	_, err := role.Provision(context.Background(), sdk.ProvisionRequest{Server: srv, Config: cfg})
	if err == nil || !strings.Contains(err.Error(), "work_mem") {
		t.Fatalf("Provision = %v, want postgres' complaint about work_mem", err)
	}
	if p := roletest.ProcessesMentioning(wd); len(p) > 0 {
		t.Fatalf("processes left after a failed Provision: %v", p)
	}
	for range 2 {
		resp, err := role.Teardown(context.Background(), sdk.TeardownRequest{Server: srv, Config: cfg})
		if err != nil {
			t.Fatalf("Teardown after a failed Provision: %v", err)
		}
		if len(resp.Logs) < 2 {
			t.Errorf("Teardown after a failed Provision returned logs %v, want postgres.log and initdb.log", resp.Logs)
		}
	}
	// A bad schema fails Provision as a config error, and rolls back.
	bad := filepath.Join(wd, "bad.sql")
	os.WriteFile(bad, []byte("CREATE TABLE t (id int);\nTHIS IS NOT SQL;\n"), 0o644)
	cfg = mustConfig(t, appCfg(t, map[string]any{"schema": "file://" + bad}))
	_, err = role.Provision(context.Background(), sdk.ProvisionRequest{Server: srv, Config: cfg})
	if !errors.Is(err, sdk.ErrInvalidConfig) || !strings.Contains(err.Error(), "syntax error") {
		t.Fatalf("Provision with a bad schema = %v, want ErrInvalidConfig quoting psql", err)
	}
	if p := roletest.ProcessesMentioning(wd); len(p) > 0 {
		t.Fatalf("processes left after a failed schema: %v", p)
	}
	if _, err := role.Teardown(context.Background(), sdk.TeardownRequest{Server: srv, Config: cfg}); err != nil {
		t.Fatal(err)
	}
}

func TestDrainWaitsForTransaction(t *testing.T) {
	requirePostgres(t)
	t.Parallel()
	role := New()
	srv := sdk.Server{Name: "db-1", WorkDir: roletest.WorkDir(t)}
	cfg := mustConfig(t, appCfg(t, nil))
	eps := provision(t, role, srv, cfg, nil)
	ctx := context.Background()

	idle := mustDial(t, eps["postgres"]) // connected, doing nothing
	busy := mustDial(t, eps["postgres"])
	tx, err := busy.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO greeting (message) VALUES ('during the drain')"); err != nil {
		t.Fatal(err)
	}

	// Past its deadline, Drain reports the session in a transaction; the
	// idle one it has ended.
	d, err := role.Drain(ctx, sdk.DrainRequest{Server: srv, Config: cfg, Endpoints: eps, Deadline: time.Now().Add(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if d.OpenConnections != 1 {
		t.Fatalf("Drain past its deadline: %d open, want the one in a transaction", d.OpenConnections)
	}
	if err := idle.Ping(ctx); err == nil {
		t.Error("the idle session survived Drain")
	}
	// New logins over TCP are refused; the socket still serves the role.
	if c, err := dial(ctx, eps["postgres"]); err == nil {
		c.Close(ctx)
		t.Fatal("a new connection was accepted while draining")
	} else if !strings.Contains(err.Error(), "rejects connection") {
		t.Fatalf("a new connection while draining: %v, want pg_hba.conf's rejection", err)
	}
	// The refused login's backend may take a moment to exit.
	var h sdk.HealthCheckResponse
	waitFor(t, "one session left, in its transaction", func() bool {
		h, err = role.HealthCheck(ctx, sdk.HealthCheckRequest{Server: srv, Config: cfg, Endpoints: eps})
		return err == nil && h.Metrics["active_connections"] == 1
	})
	if !h.Healthy || h.Metrics["busy_connections"] != 0 || !strings.Contains(h.Reason, "draining") {
		t.Fatalf("HealthCheck while draining: %+v %v", h, err)
	}

	// Drain again, with time: it waits for the transaction to end.
	type result struct {
		resp sdk.DrainResponse
		err  error
	}
	done := make(chan result, 1)
	go func() {
		r, err := role.Drain(ctx, sdk.DrainRequest{Server: srv, Config: cfg, Endpoints: eps, Deadline: time.Now().Add(60 * time.Second)})
		done <- result{r, err}
	}()
	// The transaction is still open and still works; Drain cannot have
	// returned.
	if _, err := tx.Exec(ctx, "INSERT INTO greeting (message) VALUES ('still during the drain')"); err != nil {
		t.Fatalf("the open transaction broke during Drain: %v", err)
	}
	select {
	case r := <-done:
		t.Fatalf("Drain returned %+v, %v while a transaction was open", r.resp, r.err)
	default:
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("commit during Drain: %v", err)
	}
	busy.Close(ctx)
	r := <-done
	if r.err != nil || r.resp.OpenConnections != 0 {
		t.Fatalf("Drain after the client left: %+v, %v", r.resp, r.err)
	}
	// What the transaction wrote was kept.
	conn, err := connect(ctx, layoutOf(srv.WorkDir).Socket, portOf(t, eps), "lamp")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM greeting WHERE message LIKE '%during the drain'").Scan(&n); err != nil || n != 2 {
		t.Fatalf("rows committed during the drain: %d, %v", n, err)
	}
	pids := daemonPids(t, srv.WorkDir)
	if _, err := role.Teardown(ctx, sdk.TeardownRequest{Server: srv, Config: cfg, Endpoints: eps}); err != nil {
		t.Fatal(err)
	}
	roletest.AssertExited(t, pids)
}

func portOf(t testing.TB, eps sdk.Endpoints) int {
	t.Helper()
	_, port, err := splitHostPort(eps["postgres"])
	if err != nil {
		t.Fatal(err)
	}
	return port
}

func TestTwoServersOneHostAndRelaunch(t *testing.T) {
	requirePostgres(t)
	t.Parallel()
	role := New()
	cfg := mustConfig(t, appCfg(t, nil))
	ctx := context.Background()
	// The second one's work directory is too deep for a Unix socket path:
	// its socket goes under the system's temporary directory.
	deep := filepath.Join(roletest.WorkDir(t), strings.Repeat("d", 60), strings.Repeat("e", 60))
	srvs := []sdk.Server{{Name: "db-1", WorkDir: roletest.WorkDir(t)}, {Name: "db-2", WorkDir: deep}}
	if !layoutOf(deep).socketOutside() || layoutOf(srvs[0].WorkDir).socketOutside() {
		t.Fatalf("socket directories %s and %s", layoutOf(srvs[0].WorkDir).Socket, layoutOf(deep).Socket)
	}
	eps := make([]sdk.Endpoints, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range srvs {
		t.Cleanup(func() { role.Teardown(context.Background(), sdk.TeardownRequest{Server: srvs[i], Config: cfg}) })
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := role.Provision(ctx, sdk.ProvisionRequest{Server: srvs[i], Config: cfg})
			eps[i], errs[i] = resp.Endpoints, err
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if eps[0]["postgres"] == eps[1]["postgres"] {
		t.Fatalf("two servers share an endpoint: %v %v", eps[0], eps[1])
	}
	// Each its own cluster: a row written to one is not in the other.
	c0 := mustDial(t, eps[0]["postgres"])
	if _, err := c0.Exec(ctx, "INSERT INTO greeting (message) VALUES ('only on db-1')"); err != nil {
		t.Fatal(err)
	}
	c1 := mustDial(t, eps[1]["postgres"])
	var n int
	if err := c1.QueryRow(ctx, "SELECT count(*) FROM greeting").Scan(&n); err != nil || n != 1 {
		t.Fatalf("db-2 has %d rows (%v), want its own seed row only", n, err)
	}
	c0.Close(ctx)
	c1.Close(ctx)

	// A relaunched plugin process has only the work directories.
	relaunched := New()
	var pids []int
	for i := range srvs {
		h, err := relaunched.HealthCheck(ctx, sdk.HealthCheckRequest{Server: srvs[i], Config: cfg})
		if err != nil || !h.Healthy {
			t.Fatalf("HealthCheck after relaunch of %s: %+v %v", srvs[i].Name, h, err)
		}
		pids = append(pids, daemonPids(t, srvs[i].WorkDir)...)
	}
	for i := range srvs {
		if _, err := relaunched.Teardown(ctx, sdk.TeardownRequest{Server: srvs[i], Config: cfg}); err != nil {
			t.Fatal(err)
		}
	}
	roletest.AssertExited(t, pids)
	if _, err := os.Stat(layoutOf(deep).Socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Teardown left the socket directory %s", layoutOf(deep).Socket)
	}
	// HealthCheck of a stopped server: unhealthy, not an error.
	h, err := relaunched.HealthCheck(ctx, sdk.HealthCheckRequest{Server: srvs[0], Config: cfg})
	if err != nil || h.Healthy || h.Reason == "" {
		t.Fatalf("HealthCheck after Teardown: %+v %v, want unhealthy with a reason", h, err)
	}
}

func TestReplicaStreamsFromPrimary(t *testing.T) {
	requirePostgres(t)
	t.Parallel()
	// With a replication password (scram-sha-256), and without (trusted
	// from loopback).
	for name, pw := range map[string]string{"scram": "repl-secret", "trust": ""} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testReplica(t, pw)
		})
	}
}

func testReplica(t *testing.T, replPassword string) {
	ctx := context.Background()
	role := New()
	primary := sdk.Server{Role: "db", Name: "db-1", WorkDir: roletest.WorkDir(t)}
	pcfg := mustConfig(t, appCfg(t, map[string]any{"replication_password": replPassword}))
	peps := provision(t, role, primary, pcfg, nil)

	replica := sdk.Server{Role: "db-replica", Name: "db-replica-1", WorkDir: roletest.WorkDir(t)}
	rcfg := mustConfig(t, cfgMap(map[string]any{"replica_of": "db", "replication_password": replPassword}))
	peers := map[string][]sdk.Peer{"db": {{Name: "db-1", Endpoints: peps}}}
	var progress []sdk.Progress
	var mu sync.Mutex
	t.Cleanup(func() { role.Teardown(context.Background(), sdk.TeardownRequest{Server: replica, Config: rcfg}) })
	resp, err := role.Provision(ctx, sdk.ProvisionRequest{Server: replica, Config: rcfg, Peers: peers, Progress: func(p sdk.Progress) {
		mu.Lock()
		progress = append(progress, p)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatalf("Provision of the replica: %v", err)
	}
	reps := resp.Endpoints
	sawCopy := false
	for _, p := range progress {
		sawCopy = sawCopy || (p.Step == "basebackup" && p.Fraction > 0.25)
	}
	if !sawCopy {
		t.Errorf("no pg_basebackup progress among %+v", progress)
	}

	// Write on the primary, read on the replica.
	pc := mustDial(t, peps["postgres"])
	if _, err := pc.Exec(ctx, "INSERT INTO greeting (message) VALUES ('replicated')"); err != nil {
		t.Fatal(err)
	}
	rc := mustDial(t, reps["postgres"]) // the user and its password came along
	waitFor(t, "the row written on the primary shows on the replica", func() bool {
		var n int
		err := rc.QueryRow(ctx, "SELECT count(*) FROM greeting WHERE message = 'replicated'").Scan(&n)
		return err == nil && n == 1
	})
	var h sdk.HealthCheckResponse
	waitFor(t, "the replica reports no lag", func() bool {
		h, err = role.HealthCheck(ctx, sdk.HealthCheckRequest{Server: replica, Config: rcfg, Endpoints: reps})
		return err == nil && h.Healthy && h.Metrics["replication_lag_seconds"] == 0 && h.Metrics["replication_streaming"] == 1
	})
	if h.Metrics["is_replica"] != 1 {
		t.Errorf("replica metrics %v", h.Metrics)
	}
	// The replica is read-only.
	_, err = rc.Exec(ctx, "INSERT INTO greeting (message) VALUES ('nope')")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "25006" {
		t.Errorf("a write on the replica: %v, want read_only_sql_transaction", err)
	}
	// The primary counts it, and names it.
	ph, err := role.HealthCheck(ctx, sdk.HealthCheckRequest{Server: primary, Config: pcfg, Endpoints: peps})
	if err != nil || ph.Metrics["replicas"] != 1 || ph.Metrics["is_replica"] != 0 {
		t.Errorf("primary metrics %v, %v: want one replica", ph.Metrics, err)
	}
	su, err := connect(ctx, layoutOf(primary.WorkDir).Socket, portOf(t, peps), "postgres")
	if err != nil {
		t.Fatal(err)
	}
	var app, state string
	if err := su.QueryRow(ctx, "SELECT application_name, state FROM pg_stat_replication").Scan(&app, &state); err != nil || app != replica.Name || state != "streaming" {
		t.Errorf("pg_stat_replication: %q %q %v, want the replica's name, streaming", app, state, err)
	}
	su.Close(ctx)
	// Draining the primary leaves the replica streaming.
	pc.Close(ctx)
	rc.Close(ctx)
	if d, err := role.Drain(ctx, sdk.DrainRequest{Server: primary, Config: pcfg, Endpoints: peps, Deadline: time.Now().Add(10 * time.Second)}); err != nil || d.OpenConnections != 0 {
		t.Fatalf("Drain of the primary: %+v %v", d, err)
	}
	h, err = role.HealthCheck(ctx, sdk.HealthCheckRequest{Server: replica, Config: rcfg, Endpoints: reps})
	if err != nil || h.Metrics["replication_streaming"] != 1 {
		t.Errorf("replica after the primary drained: %+v %v", h, err)
	}
	pids := append(daemonPids(t, replica.WorkDir), daemonPids(t, primary.WorkDir)...)
	for _, s := range []sdk.Server{replica, primary} {
		resp, err := role.Teardown(ctx, sdk.TeardownRequest{Server: s})
		if err != nil {
			t.Fatal(err)
		}
		if s == replica && len(resp.Logs) < 2 {
			t.Errorf("replica logs %v: want postgres.log and basebackup.log", resp.Logs)
		}
	}
	roletest.AssertExited(t, pids)
	// The replication password is nowhere in the logs.
	for _, s := range []sdk.Server{replica, primary} {
		ents, _ := os.ReadDir(filepath.Join(s.WorkDir, "db", "logs"))
		for _, e := range ents {
			b, _ := os.ReadFile(filepath.Join(s.WorkDir, "db", "logs", e.Name()))
			if replPassword != "" && strings.Contains(string(b), replPassword) {
				t.Errorf("%s of %s holds the replication password", e.Name(), s.Name)
			}
		}
	}
}

func TestUnreachableWorkDirNamed(t *testing.T) {
	requirePostgres(t)
	if os.Geteuid() != 0 {
		t.Skip("the cluster runs as the plugin's own user when it is not root")
	}
	t.Parallel()
	private := filepath.Join(t.TempDir(), "private") // t.TempDir's parent is 0700
	wd := filepath.Join(private, "server")
	os.MkdirAll(wd, 0o700)
	_, err := New().Provision(context.Background(), sdk.ProvisionRequest{
		Server: sdk.Server{Name: "db-1", WorkDir: wd}, Config: mustConfig(t, cfgMap(nil)),
	})
	if !errors.Is(err, sdk.ErrInvalidConfig) || !strings.Contains(err.Error(), "cannot pass through "+private) {
		t.Fatalf("Provision under a private directory = %v, want ErrInvalidConfig naming it", err)
	}
}
