package db

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/rosterhq/roster/sdk"
)

// The role talks to its own cluster with pgx, over the Unix socket, as the
// postgres superuser (trusted on the socket, which only root and the
// cluster's user can open). A Go driver rather than psql: a health check
// every few seconds then costs one connection, not a fork and exec of psql
// and its libpq start-up; results come back typed; and a cancelled context
// cancels the query.

// connectTimeout bounds a connection when ctx has no deadline.
const connectTimeout = 10 * time.Second

// connect opens a connection to the cluster through its socket.
func connect(ctx context.Context, socketDir string, port int, database string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig("sslmode=disable")
	if err != nil {
		return nil, err
	}
	cfg.Host, cfg.Port = socketDir, uint16(port)
	cfg.User, cfg.Database, cfg.Password = superuser, database, ""
	cfg.TLSConfig, cfg.Fallbacks = nil, nil
	cfg.ConnectTimeout = connectTimeout
	cfg.RuntimeParams = map[string]string{"application_name": "roster-db"}
	// The simple protocol: one round trip per statement, no prepared
	// statements to cache on a connection that lives for one check.
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	return pgx.ConnectConfig(ctx, cfg)
}

// ping runs SELECT 1.
func ping(ctx context.Context, conn *pgx.Conn) error {
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		return err
	}
	if one != 1 {
		return fmt.Errorf("SELECT 1 answered %d", one)
	}
	return nil
}

// probe connects and runs SELECT 1: the readiness probe.
func probe(ctx context.Context, socketDir string, port int) error {
	conn, err := connect(ctx, socketDir, port, "postgres")
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return ping(ctx, conn)
}

func ident(name string) string { return pgx.Identifier{name}.Sanitize() }

// literal quotes a string as an SQL literal (standard_conforming_strings is
// on, PostgreSQL's default since 9.1: backslashes are plain characters).
func literal(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// passwordClause returns the PASSWORD clause for a role: a SCRAM-SHA-256
// verifier computed here, so that the password itself never reaches the
// server, where a failed statement would log it. PostgreSQL normalises
// passwords with SASLprep before hashing; for a password that is not plain
// printable ASCII, where that may change it, the server is left to hash it.
func passwordClause(password string) (string, error) {
	if password == "" {
		return "PASSWORD NULL", nil
	}
	for _, r := range password {
		if r < 0x20 || r > 0x7e {
			return "PASSWORD " + literal(password), nil
		}
	}
	v, err := scramVerifier(password)
	if err != nil {
		return "", err
	}
	return "PASSWORD " + literal(v), nil
}

// scramVerifier computes what PostgreSQL stores for a SCRAM-SHA-256
// password (RFC 5802, RFC 7677): SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>.
func scramVerifier(password string) (string, error) {
	const iterations = 4096 // PostgreSQL's scram_iterations default
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	salted, err := pbkdf2.Key(sha256.New, password, salt, iterations, sha256.Size)
	if err != nil {
		return "", err
	}
	mac := func(key []byte, msg string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	stored := sha256.Sum256(mac(salted, "Client Key"))
	server := mac(salted, "Server Key")
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", iterations, b64(salt), b64(stored[:]), b64(server)), nil
}

// ensureRole creates a login role, or updates the password and attributes
// of an existing one.
func ensureRole(ctx context.Context, conn *pgx.Conn, name, password, attrs string) error {
	pw, err := passwordClause(password)
	if err != nil {
		return err
	}
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = "+literal(name)+")").Scan(&exists); err != nil {
		return err
	}
	verb := "CREATE"
	if exists {
		verb = "ALTER"
	}
	if _, err := conn.Exec(ctx, verb+" ROLE "+ident(name)+" WITH LOGIN "+attrs+" "+pw); err != nil {
		return fmt.Errorf("%s role %s: %w", strings.ToLower(verb), name, redactErr(err, password))
	}
	return nil
}

// ensureDatabase creates a database owned by owner, unless it exists.
func ensureDatabase(ctx context.Context, conn *pgx.Conn, name, owner string) error {
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = "+literal(name)+")").Scan(&exists); err != nil {
		return err
	}
	if exists {
		if owner != superuser {
			_, err := conn.Exec(ctx, "ALTER DATABASE "+ident(name)+" OWNER TO "+ident(owner))
			return err
		}
		return nil
	}
	_, err := conn.Exec(ctx, "CREATE DATABASE "+ident(name)+" OWNER "+ident(owner))
	return err
}

// redactErr drops a secret from an error's text.
func redactErr(err error, secret string) error {
	if err == nil || secret == "" || !strings.Contains(err.Error(), secret) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), secret, "(sensitive)"))
}

// clientBackends is the condition for client sessions other than the one
// asking: walsenders (replicas streaming) and PostgreSQL's own background
// processes are not clients.
const clientBackends = "backend_type = 'client backend' AND pid <> pg_backend_pid()"

// sample is one reading of the cluster's numbers.
type sample struct {
	Replica      bool
	Connections  int64
	Active       int64
	Transactions float64 // xact_commit + xact_rollback over every database
	LagSeconds   float64
	Replicas     int64 // walsenders streaming to replicas
	Streaming    bool  // a replica's WAL receiver is streaming
	MaxConns     int64
}

// metricsQuery reads every number in one statement, so that a health check
// costs one connection and two statements (SELECT 1 and this).
const metricsQuery = `SELECT
  pg_is_in_recovery(),
  (SELECT count(*) FROM pg_stat_activity WHERE ` + clientBackends + `),
  (SELECT count(*) FROM pg_stat_activity WHERE ` + clientBackends + ` AND state = 'active'),
  (SELECT COALESCE(sum(xact_commit + xact_rollback), 0) FROM pg_stat_database)::float8,
  CASE
    WHEN NOT pg_is_in_recovery() THEN 0
    WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0
    ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0)
  END::float8,
  (SELECT count(*) FROM pg_stat_replication),
  EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming'),
  current_setting('max_connections')::bigint`

func readSample(ctx context.Context, conn *pgx.Conn) (sample, error) {
	var s sample
	err := conn.QueryRow(ctx, metricsQuery).Scan(&s.Replica, &s.Connections, &s.Active, &s.Transactions,
		&s.LagSeconds, &s.Replicas, &s.Streaming, &s.MaxConns)
	return s, err
}

// countClients counts the client sessions other than conn's.
func countClients(ctx context.Context, conn *pgx.Conn) (int, error) {
	var n int
	err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE "+clientBackends).Scan(&n)
	return n, err
}

// closeIdle ends the client sessions that sit idle outside a transaction.
// From PostgreSQL 14 on it waits (up to a second, and within ctx's
// deadline) until they are gone, so that the count that follows does not
// see them leaving.
func closeIdle(ctx context.Context, conn *pgx.Conn) (int, error) {
	terminate := "pg_terminate_backend(pid)"
	if serverMajor(conn) >= 14 {
		wait := time.Second
		if d, ok := ctx.Deadline(); ok {
			// Leave time for the query itself to answer.
			wait = min(wait, time.Until(d)/2)
		}
		if wait >= time.Millisecond {
			terminate = fmt.Sprintf("pg_terminate_backend(pid, %d)", wait.Milliseconds())
		}
	}
	var n int
	err := conn.QueryRow(ctx, "SELECT count(*) FILTER (WHERE "+terminate+") FROM pg_stat_activity WHERE "+
		clientBackends+" AND state = 'idle'").Scan(&n)
	return n, err
}

// serverMajor is the server's major version, from the server_version it
// reports at start-up ("15.18 (Debian 15.18-0+deb12u1)"); 0 when unknown.
func serverMajor(conn *pgx.Conn) int {
	v := conn.PgConn().ParameterStatus("server_version")
	if i := strings.IndexAny(v, ". "); i >= 0 {
		v = v[:i]
	}
	n, _ := strconv.Atoi(v)
	return n
}

// hbaRejects says whether a new TCP connection to addr is rejected by
// pg_hba.conf, which is how Drain knows that PostgreSQL has reloaded it.
func hbaRejects(ctx context.Context, addr string) bool {
	cfg, err := pgconn.ParseConfig("sslmode=disable")
	if err != nil {
		return false
	}
	host, port, err := splitHostPort(addr)
	if err != nil {
		return false
	}
	cfg.Host, cfg.Port = host, uint16(port)
	cfg.User, cfg.Database, cfg.Password = "roster_drain_probe", "postgres", ""
	cfg.TLSConfig, cfg.Fallbacks = nil, nil
	cfg.ConnectTimeout = 2 * time.Second
	c, err := pgconn.ConnectConfig(ctx, cfg)
	if err == nil {
		c.Close(ctx)
		return false
	}
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "28000" && strings.Contains(pgErr.Message, "rejects connection")
}

// errText is the message of an error for a health reason: PostgreSQL's own
// message and code where there is one.
func errText(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return fmt.Sprintf("%s (SQLSTATE %s)", pgErr.Message, pgErr.Code)
	}
	return err.Error()
}

// asUnavailable wraps a connection or query error for the caller.
func asUnavailable(what string, err error) error {
	return sdk.Errorf(sdk.ErrUnavailable, "db: %s: %s", what, errText(err))
}
