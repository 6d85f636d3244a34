// Package db is the built-in `db` role: a private PostgreSQL cluster from
// Debian's packages, under the server's work directory, optionally a
// streaming replica of another db server.
//
// Provision makes sure the packages are there, fetches the optional schema
// and dump with sdk/artifact (checked against their sha256 before anything
// else happens), creates the cluster with initdb (or copies the primary's
// with pg_basebackup -R for a replica), writes the role's settings into
// roster.conf (included last by postgresql.conf) and its own pg_hba.conf,
// starts postgres in the foreground under sdk/process, waits until SELECT 1
// answers, creates the replicator role, the user and the database, runs the
// schema and restores the dump, and returns the endpoint `postgres`.
//
// When the plugin runs as root, which initdb and postgres refuse, the
// cluster runs as the postgres user: the data and socket directories belong
// to it (0700), and the work directory gets the search bit for others so
// that it can reach them (see docs/roles/db.md). The role talks to its own
// cluster over the Unix socket as the postgres superuser, trusted there
// because only root and the postgres user can open that directory; every
// TCP login needs a SCRAM password, and replication from loopback is
// trusted only while replication_password is empty.
//
// Everything a relaunched plugin process needs is in <work dir>/db: the
// supervisor's state files (pid and start time of the postmaster),
// state.json (port, binaries, what was applied) and the previous
// statistics sample. See docs/roles/db.md for the schema and the metrics.
package db

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rosterhq/roster/sdk"
	"github.com/rosterhq/roster/sdk/artifact"
	"github.com/rosterhq/roster/sdk/fsutil"
	"github.com/rosterhq/roster/sdk/netutil"
	"github.com/rosterhq/roster/sdk/packages"
	"github.com/rosterhq/roster/sdk/process"
	"github.com/rosterhq/roster/sdk/rolekit"
)

// Name is the role plugin's name.
const Name = "db"

// Version is the plugin's own version.
const Version = "0.1.0"

const subdir = "db"

// postgresName is the daemon's name within the server's supervisor.
const postgresName = "postgres"

// How long postgres gets to start and to stop, and how often the role looks
// again while it waits.
const (
	startTimeout = 60 * time.Second
	// A fast stop ends the sessions and writes a shutdown checkpoint,
	// which takes a while with large shared_buffers.
	stopTimeout  = 30 * time.Second
	pollInterval = 10 * time.Millisecond
	// startAttempts bounds the retries when a port picked as free was
	// taken before postgres bound it.
	startAttempts = 3
)

// New returns the db role.
func New() sdk.Role {
	return &Role{
		Meta: rolekit.Meta{About: sdk.Info{
			Name:        Name,
			Version:     Version,
			Description: "PostgreSQL from Debian as a private cluster, a primary or a streaming replica",
			// A new server starts from the dump artifact, not from the
			// rows written since: never replaced behind the operator's
			// back when the role file changes.
			Stateful: true,
		}, Schema: Schema},
		servers: rolekit.Servers[entry]{Role: "db"},
	}
}

// Role implements sdk.Role. One plugin process may serve several servers;
// they are told apart by work directory, and calls that change a server are
// serialised.
type Role struct {
	rolekit.Meta
	servers   rolekit.Servers[entry]
	installer packages.Installer
}

type entry struct {
	// statsMu guards the statistics sample file, which health checks
	// (not serialised by the server's lock) read and write.
	statsMu sync.Mutex
}

// state is what a relaunched plugin process needs about a server.
type state struct {
	Server   string `json:"server"`
	Postgres string `json:"postgres"` // the endpoint
	Port     int    `json:"port"`
	Bin      string `json:"bin"`
	// Initialized: initdb or pg_basebackup finished, so that a second
	// Provision keeps the data.
	Initialized bool   `json:"initialized"`
	Replica     bool   `json:"replica"`
	Primary     string `json:"primary,omitempty"`
	// The schema and dump run once; these record that they did.
	SchemaApplied bool   `json:"schema_applied,omitempty"`
	SchemaSHA256  string `json:"schema_sha256,omitempty"`
	DumpApplied   bool   `json:"dump_applied,omitempty"`
	DumpSHA256    string `json:"dump_sha256,omitempty"`
	Draining      bool   `json:"draining,omitempty"`
}

func loadState(l layout) (*state, error) {
	st, err := rolekit.LoadState[state](l.State)
	if err != nil {
		return nil, fmt.Errorf("db: %w", err)
	}
	return st, nil
}

func saveState(l layout, st *state) error {
	if err := rolekit.SaveState(l.State, st); err != nil {
		return fmt.Errorf("db: %w", err)
	}
	return nil
}

func supervisor(ctx context.Context, l layout) (*process.Supervisor, error) {
	return rolekit.Supervisor(ctx, l.Run, pollInterval)
}

// Provision makes the cluster and starts it. Called again for a server, it
// stops postgres and starts it with the new config, keeping the data (a
// replica whose primary changed is copied afresh). On failure it stops
// whatever it started; the logs stay for Teardown to return.
func (r *Role) Provision(ctx context.Context, req sdk.ProvisionRequest) (_ sdk.ProvisionResponse, err error) {
	cfg, err := decode(req.Config)
	if err != nil {
		return sdk.ProvisionResponse{}, err
	}
	_, unlock, err := r.servers.Lock(req.Server)
	if err != nil {
		return sdk.ProvisionResponse{}, err
	}
	defer unlock()
	log := sdk.Logger(ctx).Named("db")
	l := layoutOf(req.Server.WorkDir)

	// The primary first: a replica with nowhere to copy from fails before
	// anything is installed or fetched.
	primary := ""
	if cfg.ReplicaOf != "" {
		if primary, err = resolvePrimary(cfg.ReplicaOf, req.Server.Name, req.Peers); err != nil {
			return sdk.ProvisionResponse{}, err
		}
	}

	// 1. Packages.
	if err := rolekit.EnsurePackages(ctx, req, r.installer, cfg.packages(), cfg.InstallMissing); err != nil {
		return sdk.ProvisionResponse{}, fmt.Errorf("db: %w", err)
	}
	bin, err := binaries(cfg.Version)
	if err != nil {
		return sdk.ProvisionResponse{}, err
	}
	acct, err := clusterAccount()
	if err != nil {
		return sdk.ProvisionResponse{}, err
	}

	// A second Provision starts afresh (with the same data).
	if err := l.prepare(acct, req.Server.WorkDir); err != nil {
		return sdk.ProvisionResponse{}, err
	}
	sup, err := supervisor(ctx, l)
	if err != nil {
		return sdk.ProvisionResponse{}, err
	}
	if err := stopPostgres(ctx, sup); err != nil {
		return sdk.ProvisionResponse{}, fmt.Errorf("db: stopping the running postgres: %w", err)
	}
	defer func() {
		if err != nil {
			_ = stopPostgres(context.WithoutCancel(ctx), sup)
		}
	}()

	// 2. The schema and the dump, checked before the cluster is touched.
	schema, dump, err := fetchArtifacts(ctx, req, cfg, l, acct)
	if err != nil {
		return sdk.ProvisionResponse{}, err
	}

	// 3. The cluster: kept, created, or copied from the primary.
	st, err := loadState(l)
	if err != nil {
		return sdk.ProvisionResponse{}, err
	}
	reuse := st != nil && st.Initialized && st.Replica == (primary != "") && st.Primary == primary &&
		majorOf(l.Data) == majorOfBin(bin)
	if !reuse {
		st = &state{}
		if err := l.freshData(acct); err != nil {
			return sdk.ProvisionResponse{}, err
		}
		if primary == "" {
			req.Report("init", "creating the cluster with initdb", 0.25)
			if err := acct.initdb(ctx, l, bin); err != nil {
				return sdk.ProvisionResponse{}, err
			}
		} else {
			req.Report("basebackup", "copying the primary "+primary+" with pg_basebackup", 0.25)
			if err := acct.basebackup(ctx, l, bin, primary, req.Server.Name, cfg.ReplicationPassword, func(f float64, line string) {
				req.Report("basebackup", line, 0.25+0.45*f)
			}); err != nil {
				return sdk.ProvisionResponse{}, err
			}
		}
		st.Initialized, st.Replica, st.Primary = true, primary != "", primary
	} else {
		req.Report("init", "keeping the existing cluster", 0.25)
	}
	st.Server, st.Bin, st.Draining = req.Server.Name, bin, false
	if err := saveState(l, st); err != nil {
		return sdk.ProvisionResponse{}, err
	}

	// 4. Start, on the configured port or a free one.
	req.Report("start", "starting postgres", 0.75)
	port, err := r.start(ctx, sup, l, acct, cfg, st, req.Server.Name)
	if err != nil {
		return sdk.ProvisionResponse{}, err
	}
	addr := listenAddr(cfg.endpointHost(), port)
	st.Port, st.Postgres = port, addr
	if err := saveState(l, st); err != nil {
		return sdk.ProvisionResponse{}, err
	}

	// 5. Roles, database, schema and dump: on a primary only, since a
	// replica is read-only and copies them.
	if primary == "" {
		if err := setup(ctx, req, cfg, l, acct, st, schema, dump); err != nil {
			return sdk.ProvisionResponse{}, err
		}
	}

	kind := "primary"
	if primary != "" {
		kind = "replica of " + primary
	}
	req.Report("ready", "postgres ("+kind+") on "+addr, 1)
	log.Info("db server ready", "postgres", addr, "replica_of", primary, "version", majorOfBin(bin))
	return sdk.ProvisionResponse{Endpoints: sdk.Endpoints{"postgres": addr}}, nil
}

// fetched is an artifact put in place.
type fetched struct {
	artifact.Result
	url string
}

// fetchArtifacts fetches the schema and the dump into l.Artifacts and gives
// them to the cluster's user, so that psql and pg_restore, which run as
// that user, can read them.
func fetchArtifacts(ctx context.Context, req sdk.ProvisionRequest, cfg settings, l layout, acct account) (schema, dump *fetched, err error) {
	if cfg.Schema == "" && cfg.Dump == "" {
		return nil, nil, nil
	}
	log := sdk.Logger(ctx).Named("db")
	if err := acct.mkdirOwned(l.Artifacts, 0o700); err != nil {
		return nil, nil, fmt.Errorf("db: %w", err)
	}
	if cfg.Schema != "" {
		req.Report("fetch", "fetching schema "+artifact.Redact(cfg.Schema), 0.1)
		res, err := artifact.Fetch(ctx, cfg.Schema, filepath.Join(l.Artifacts, "schema.sql"), artifact.Options{
			SHA256: cfg.SchemaSHA256, Archive: artifact.ArchiveNone, Logger: log,
		})
		if err != nil {
			return nil, nil, fmt.Errorf("db: schema: %w", err)
		}
		if res.Kind != artifact.KindFile {
			return nil, nil, sdk.Errorf(sdk.ErrInvalidConfig, "db: schema %s is a directory: want one .sql file", artifact.Redact(cfg.Schema))
		}
		schema = &fetched{Result: res, url: cfg.Schema}
	}
	if cfg.Dump != "" {
		req.Report("fetch", "fetching dump "+artifact.Redact(cfg.Dump), 0.15)
		res, err := artifact.Fetch(ctx, cfg.Dump, filepath.Join(l.Artifacts, "dump"), artifact.Options{
			SHA256: cfg.DumpSHA256, Logger: log,
			Progress: rolekit.FetchProgress(req, "dump", 0.15, 0.1),
		})
		if err != nil {
			return nil, nil, fmt.Errorf("db: dump: %w", err)
		}
		dump = &fetched{Result: res, url: cfg.Dump}
	}
	if err := acct.chownTree(l.Artifacts); err != nil {
		return nil, nil, fmt.Errorf("db: %w", err)
	}
	return schema, dump, nil
}

// start writes the configuration and starts postgres, retrying on another
// free port when the one it picked was taken meanwhile.
func (r *Role) start(ctx context.Context, sup *process.Supervisor, l layout, acct account, cfg settings, st *state, server string) (int, error) {
	startCtx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	for attempt := 1; ; attempt++ {
		port := cfg.Port
		if port == 0 {
			// Keep the endpoint of a server provisioned again, if free.
			if attempt == 1 && st.Port > 0 {
				port = st.Port
			} else {
				p, err := netutil.FreePort()
				if err != nil {
					return 0, sdk.Errorf(sdk.ErrUnavailable, "db: %v", err)
				}
				port = p
			}
		}
		c := conf{settings: cfg, Server: server, Port: port, Socket: l.Socket, Replication: true}
		if err := acct.writeConf(l, c); err != nil {
			return 0, err
		}
		logStart := fileSize(l.PGLog)
		p, err := sup.Start(startCtx, process.Spec{
			Name: postgresName, Path: filepath.Join(st.Bin, "postgres"),
			// In the foreground (not pg_ctl start), so that the
			// supervisor's child is the postmaster and every backend is in
			// its process group.
			Args:   []string{"-D", l.Data},
			Dir:    l.Dir,
			Stdout: l.PGLog, Stderr: l.PGLog,
			// SIGINT is PostgreSQL's fast shutdown, what pg_ctl stop -m
			// fast sends; pg_ctl itself refuses to run as root.
			StopSignal: syscall.SIGINT,
			User:       acct.Name,
			// Every child of the postmaster (backends, checkpointer,
			// walsenders…) calls setsid() as it starts, leaving the
			// postmaster's process group. After a fast shutdown the
			// postmaster exits last; after a SIGKILL the children would
			// live on until they noticed.
			Descendants: true,
		})
		if err != nil {
			return 0, fmt.Errorf("db: %w", err)
		}
		err = p.WaitReady(startCtx, func(ctx context.Context) error { return probe(ctx, l.Socket, port) })
		if err == nil {
			return port, nil
		}
		_ = stopPostgres(context.WithoutCancel(ctx), sup)
		out := tailFrom(l.PGLog, logStart, 2048)
		if cfg.Port == 0 && attempt < startAttempts && portTaken(out) {
			sdk.Logger(ctx).Named("db").Warn("port taken before postgres bound it, trying another", "port", port)
			continue
		}
		if errors.Is(err, sdk.ErrTimeout) {
			return 0, fmt.Errorf("db: postgres: %w; postgres.log: %s", err, out)
		}
		return 0, fmt.Errorf("db: postgres: %w", err)
	}
}

func portTaken(log string) bool {
	return strings.Contains(log, "Address already in use") || strings.Contains(log, "could not create any TCP/IP sockets")
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

func listenAddr(host string, port int) string {
	if strings.Contains(host, ":") {
		return fmt.Sprintf("[%s]:%d", host, port)
	}
	return fmt.Sprintf("%s:%d", host, port)
}

// setup creates the replicator role, the user and the database, and runs
// the schema and the dump the first time.
func setup(ctx context.Context, req sdk.ProvisionRequest, cfg settings, l layout, acct account, st *state, schema, dump *fetched) error {
	log := sdk.Logger(ctx).Named("db")
	req.Report("setup", "creating roles and database", 0.85)
	conn, err := connect(ctx, l.Socket, st.Port, "postgres")
	if err != nil {
		return asUnavailable("connecting through the socket", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := ensureRole(ctx, conn, replicationUser, cfg.ReplicationPassword, "REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE"); err != nil {
		return fmt.Errorf("db: %s", redactErr(err, cfg.ReplicationPassword))
	}
	if cfg.User != "" {
		if err := ensureRole(ctx, conn, cfg.User, cfg.Password, "NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION"); err != nil {
			return fmt.Errorf("db: %s", redactErr(err, cfg.Password))
		}
	}
	if cfg.Database != "" {
		owner := cfg.User
		if owner == "" {
			owner = superuser
		}
		if err := ensureDatabase(ctx, conn, cfg.Database, owner); err != nil {
			return fmt.Errorf("db: database %s: %s", cfg.Database, errText(err))
		}
	}
	database, user := cfg.target()
	psql := filepath.Join(st.Bin, "psql")
	conn0 := []string{"-h", l.Socket, "-p", fmt.Sprint(st.Port), "-U", user, "-d", database}
	if schema != nil {
		switch {
		case st.SchemaApplied && st.SchemaSHA256 != schema.SHA256:
			req.Report("schema", "the schema ran when the cluster was created; a changed schema is not run again", 0.9)
			log.Warn("schema changed since it was applied; not run again", "applied_sha256", st.SchemaSHA256, "sha256", schema.SHA256)
		case st.SchemaApplied:
		default:
			req.Report("schema", "running the schema as "+user+" in "+database, 0.9)
			args := append([]string{"-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "-f", schema.Path}, conn0...)
			if err := acct.run(ctx, l, filepath.Join(l.Logs, "schema.log"), nil, nil, psql, args...); err != nil {
				return toolError(err, "schema "+artifact.Redact(schema.url))
			}
			st.SchemaApplied, st.SchemaSHA256 = true, schema.SHA256
			if err := saveState(l, st); err != nil {
				return err
			}
		}
	}
	if dump != nil && !st.DumpApplied {
		req.Report("dump", "restoring the dump as "+user+" in "+database, 0.95)
		if err := restore(ctx, l, acct, st.Bin, dump, conn0); err != nil {
			return err
		}
		st.DumpApplied, st.DumpSHA256 = true, dump.SHA256
		if err := saveState(l, st); err != nil {
			return err
		}
	}
	return nil
}

// restore loads a dump: plain SQL through psql, pg_dump's custom format (a
// file beginning PGDMP) or directory format (toc.dat) through pg_restore,
// in one transaction either way, with the objects owned by the user.
func restore(ctx context.Context, l layout, acct account, bin string, dump *fetched, conn []string) error {
	logFile := filepath.Join(l.Logs, "dump.log")
	custom := false
	if dump.Kind == artifact.KindDir {
		if _, err := os.Stat(filepath.Join(dump.Path, "toc.dat")); err != nil {
			return sdk.Errorf(sdk.ErrInvalidConfig, "db: dump %s is a directory without toc.dat: want a plain SQL file or a pg_dump custom or directory format dump", artifact.Redact(dump.url))
		}
		custom = true
	} else if f, err := os.Open(dump.Path); err == nil {
		magic := make([]byte, 5)
		n, _ := f.Read(magic)
		f.Close()
		custom = string(magic[:n]) == "PGDMP"
	}
	var err error
	if custom {
		args := append([]string{"--no-owner", "--no-privileges", "--single-transaction", "--exit-on-error"}, conn...)
		err = acct.run(ctx, l, logFile, nil, nil, filepath.Join(bin, "pg_restore"), append(args, dump.Path)...)
	} else {
		args := append([]string{"-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "-f", dump.Path}, conn...)
		err = acct.run(ctx, l, logFile, nil, nil, filepath.Join(bin, "psql"), args...)
	}
	if err != nil {
		return toolError(err, "dump "+artifact.Redact(dump.url))
	}
	return nil
}

// toolError says that psql or pg_restore failed on what: the operator's
// SQL is wrong (ErrInvalidConfig), unless time ran out.
func toolError(err error, what string) error {
	if errors.Is(err, sdk.ErrTimeout) {
		return fmt.Errorf("db: %s: %w", what, err)
	}
	return sdk.Errorf(sdk.ErrInvalidConfig, "%s: %v", what, err)
}

// HealthCheck connects through the socket and runs SELECT 1, then reads the
// metrics. A cluster that does not answer is unhealthy, not an error.
func (r *Role) HealthCheck(ctx context.Context, req sdk.HealthCheckRequest) (sdk.HealthCheckResponse, error) {
	e, err := r.servers.Get(req.Server)
	if err != nil {
		return sdk.HealthCheckResponse{}, err
	}
	l := layoutOf(req.Server.WorkDir)
	st, err := loadState(l)
	if err != nil {
		return sdk.HealthCheckResponse{}, err
	}
	if st == nil || st.Port == 0 {
		return sdk.HealthCheckResponse{}, sdk.Errorf(sdk.ErrFailedPrecondition, "db: server %s is not provisioned", req.Server.Name)
	}
	conn, err := connect(ctx, l.Socket, st.Port, "postgres")
	if err != nil {
		return sdk.HealthCheckResponse{Reason: "connect: " + errText(err)}, nil
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := ping(ctx, conn); err != nil {
		return sdk.HealthCheckResponse{Reason: "SELECT 1: " + errText(err)}, nil
	}
	s, err := readSample(ctx, conn)
	if err != nil {
		return sdk.HealthCheckResponse{Healthy: true, Reason: "metrics: " + errText(err)}, nil
	}
	resp := sdk.HealthCheckResponse{Healthy: true, Metrics: map[string]float64{
		"active_connections":      float64(s.Connections),
		"busy_connections":        float64(s.Active),
		"connection_ratio":        float64(s.Connections) / float64(max(s.MaxConns, 1)),
		"transactions_per_second": e.rate(l, s.Transactions, time.Now()),
		"is_replica":              b2f(s.Replica),
		"replicas":                float64(s.Replicas),
	}}
	if s.Replica {
		resp.Metrics["replication_lag_seconds"] = max(s.LagSeconds, 0)
		resp.Metrics["replication_streaming"] = b2f(s.Streaming)
		if !s.Streaming {
			// It still serves reads, so it stays healthy; say why its
			// data may be old.
			resp.Reason = "replica is not streaming from its primary"
		}
	}
	if st.Draining {
		resp.Reason = strings.TrimPrefix(resp.Reason+"; draining: new TCP connections are refused", "; ")
	}
	return resp, nil
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// statsSample is the previous pg_stat_database reading, kept in the work
// directory so that a relaunched plugin computes its first rate too.
type statsSample struct {
	At           time.Time `json:"at"`
	Transactions float64   `json:"transactions"`
}

// healthTransactions are the transactions each health check adds itself:
// the session's start-up (which reads the catalogue in a transaction),
// SELECT 1 and the metrics query. Measured, not guessed: an idle cluster
// checked in a loop shows three per check.
const healthTransactions = 3

// rate returns the transactions per second since the previous sample, less
// the health checks' own; 0 on the first sample and after a statistics
// reset. PostgreSQL flushes a session's counts at most once a second, so
// the rate is an average that lags by up to a second.
func (e *entry) rate(l layout, total float64, now time.Time) float64 {
	e.statsMu.Lock()
	defer e.statsMu.Unlock()
	var prev statsSample
	if p, err := rolekit.LoadState[statsSample](l.Stats); err == nil && p != nil {
		prev = *p
	}
	// Not fsynced: a sample lost in a crash costs one rate.
	_ = rolekit.SaveState(l.Stats, statsSample{At: now, Transactions: total}, fsutil.NoSync())
	r, _ := rolekit.PerSecond(rolekit.Sample{At: prev.At, Count: prev.Transactions}, rolekit.Sample{At: now, Count: total}, healthTransactions)
	return r
}

// Drain makes pg_hba.conf reject every new TCP connection but replication
// (the socket stays open to root and the postgres user, so that the role
// and an operator's tools keep working), reloads it, and waits until no
// client session is left or the deadline passes. With drain_close_idle,
// sessions idle outside a transaction are ended as it waits: they hold no
// work, and a pooler would keep them open for ever. A session in a
// transaction or running a statement is waited for. Streaming replicas are
// not clients: they keep streaming until Teardown.
func (r *Role) Drain(ctx context.Context, req sdk.DrainRequest) (sdk.DrainResponse, error) {
	cfg, err := decode(req.Config)
	if err != nil {
		return sdk.DrainResponse{}, err
	}
	_, unlock, err := r.servers.Lock(req.Server)
	if err != nil {
		return sdk.DrainResponse{}, err
	}
	defer unlock()
	log := sdk.Logger(ctx).Named("db")
	l := layoutOf(req.Server.WorkDir)
	st, err := loadState(l)
	if err != nil {
		return sdk.DrainResponse{}, err
	}
	if st == nil || st.Port == 0 {
		return sdk.DrainResponse{}, nil // never provisioned: nothing to drain
	}
	sup, err := supervisor(ctx, l)
	if err != nil {
		return sdk.DrainResponse{}, err
	}
	if p, err := sup.Find(postgresName); err != nil || !p.Alive() {
		return sdk.DrainResponse{}, nil // not running: no client left
	}
	acct, err := clusterAccount()
	if err != nil {
		return sdk.DrainResponse{}, err
	}
	ctx, cancel := rolekit.WithDeadline(ctx, req.Deadline)
	defer cancel()
	conn, err := connect(ctx, l.Socket, st.Port, "postgres")
	if err != nil {
		return sdk.DrainResponse{}, asUnavailable("draining: connecting through the socket", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	c := conf{settings: cfg, Server: req.Server.Name, Port: st.Port, Socket: l.Socket, Replication: true, Draining: true}
	if err := acct.writeFile(filepath.Join(l.Data, "pg_hba.conf"), renderHBA(c), 0o600); err != nil {
		return sdk.DrainResponse{}, err
	}
	if _, err := conn.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
		return sdk.DrainResponse{}, asUnavailable("draining: reloading pg_hba.conf", err)
	}
	st.Draining = true
	if err := saveState(l, st); err != nil {
		return sdk.DrainResponse{}, err
	}
	// The postmaster reloads on SIGHUP, asynchronously: wait until a new
	// connection is seen to be refused, briefly.
	confirm, cancel := context.WithTimeout(ctx, 2*time.Second)
	for !hbaRejects(confirm, st.Postgres) && sleep(confirm, pollInterval) {
	}
	confirmed := confirm.Err() == nil
	cancel()
	log.Info("draining: new client connections refused", "postgres", st.Postgres, "confirmed", confirmed)

	open := -1
	for {
		if cfg.DrainCloseIdle {
			if n, err := closeIdle(ctx, conn); err == nil && n > 0 {
				log.Info("draining: ended idle sessions", "sessions", n)
			}
		}
		n, err := countClients(ctx, conn)
		if err != nil {
			break // the deadline passed during the query
		}
		open = n
		if n == 0 || !sleep(ctx, pollInterval*5) {
			break
		}
	}
	if ctx.Err() != nil || open < 0 {
		// Count once more, past the deadline, so the answer is current.
		// pgx closes a connection whose query the deadline cut short.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if conn.IsClosed() {
			if conn, err = connect(cctx, l.Socket, st.Port, "postgres"); err != nil {
				return sdk.DrainResponse{}, asUnavailable("draining: counting sessions", err)
			}
			defer conn.Close(cctx)
		}
		n, err := countClients(cctx, conn)
		if err != nil {
			return sdk.DrainResponse{}, asUnavailable("draining: counting sessions", err)
		}
		open = n
	}
	if open > 0 {
		log.Warn("drain deadline passed with client sessions open", "sessions", open)
	} else {
		log.Info("drained")
	}
	return sdk.DrainResponse{OpenConnections: open}, nil
}

// stopPostgres stops the cluster: a fast shutdown (SIGINT), then SIGKILL
// of the postmaster and of every child of it past stopTimeout.
func stopPostgres(ctx context.Context, sup *process.Supervisor) error {
	return sup.Stop(ctx, postgresName, stopTimeout)
}

// sleep waits d, or less when ctx ends; it says whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Teardown stops postgres with a fast shutdown (SIGINT: sessions end, a
// checkpoint is written), then by SIGKILL of its process group past the
// deadline, and returns the logs. It is safe after a failed Provision and
// twice. The data directory stays for the agent to remove with the work
// directory.
func (r *Role) Teardown(ctx context.Context, req sdk.TeardownRequest) (sdk.TeardownResponse, error) {
	_, unlock, err := r.servers.Lock(req.Server)
	if err != nil {
		return sdk.TeardownResponse{}, err
	}
	defer unlock()
	l := layoutOf(req.Server.WorkDir)
	return rolekit.Teardown(ctx, "db", l.Run, pollInterval, func(ctx context.Context, sup *process.Supervisor) error {
		if err := stopPostgres(ctx, sup); err != nil || !l.socketOutside() {
			return err
		}
		return os.RemoveAll(l.Socket)
	},
		sdk.LogFile{Name: "postgres/postgres.log", Path: l.PGLog},
		sdk.LogFile{Name: "postgres/initdb.log", Path: filepath.Join(l.Logs, "initdb.log")},
		sdk.LogFile{Name: "postgres/basebackup.log", Path: filepath.Join(l.Logs, "basebackup.log")},
		sdk.LogFile{Name: "postgres/schema.log", Path: filepath.Join(l.Logs, "schema.log")},
		sdk.LogFile{Name: "postgres/dump.log", Path: filepath.Join(l.Logs, "dump.log")},
	)
}
