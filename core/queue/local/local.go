// Package local is the embedded, durable queue backend: no server to run,
// messages kept in a SQLite database (modernc.org/sqlite, free of cgo) in a
// directory that the processes of one host share (the orchestrator and the
// local machines' agents).
//
// Durability: the database runs in WAL mode and every operation is one
// transaction; a process killed at any moment (SIGKILL included) loses no
// message whose Send returned and that was not deleted. With the default
// synchronous=NORMAL a power failure may lose the last few commits; set
// Options.FullSync to fsync every commit instead.
//
// Wake-up: a sender, after its commit, touches the queue's "bell" file in
// <dir>/bells; every process with a Queue open watches that directory with
// inotify and wakes its long-polling receivers for that queue at once. A slow
// re-check (Options.Recheck, 1 s) covers a lost notification.
package local

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/rosterhq/roster/core/queue"

	// The database/sql driver "sqlite".
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// DBFile is the database's file name inside the queue directory.
const DBFile = "queues.db"

// Options tune a local backend. The zero value is the recommended setting.
type Options struct {
	// Logger receives debug logs; nil means none.
	Logger hclog.Logger
	// BusyTimeout is how long a write waits for another process holding the
	// database's write lock; zero means 10 s.
	BusyTimeout time.Duration
	// FullSync makes every commit fsync the write-ahead log, so that even a
	// power failure loses nothing; it costs a disk flush per operation.
	FullSync bool
	// Recheck is how often a long-polling receiver looks at its queue when
	// no notification arrives, in case one was missed; zero means 1 s.
	Recheck time.Duration
	// ReuseDelay is how long the name of a deleted queue is refused, as SQS
	// does for 60 s; zero means 60 s, negative means not at all.
	ReuseDelay time.Duration
}

// Queue is the local backend; it implements queue.Queue. It is safe for
// concurrent use, and several Queues (in one or several processes) may open
// the same directory.
type Queue struct {
	dir     string
	db      *sql.DB
	log     hclog.Logger
	recheck time.Duration
	reuse   time.Duration

	// wmu serialises this process's writes: SQLite allows one writer at a
	// time, and waiting on a mutex is far quicker than SQLite's sleeping
	// busy handler. Other processes still meet the busy handler.
	wmu sync.Mutex

	stmts    statements
	waiters  waiters
	bells    *bells
	done     chan struct{}
	closeErr error
	once     sync.Once
}

var _ queue.Queue = (*Queue)(nil)

const schema = `
CREATE TABLE IF NOT EXISTS queues (
	id            INTEGER PRIMARY KEY AUTOINCREMENT,
	name          TEXT    NOT NULL UNIQUE,
	visibility_ms INTEGER NOT NULL,
	tags          TEXT    NOT NULL DEFAULT '{}',
	created_ms    INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS deleted_queues (
	name       TEXT    PRIMARY KEY,
	deleted_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
	seq           INTEGER PRIMARY KEY,
	queue_id      INTEGER NOT NULL,
	id            TEXT    NOT NULL,
	body          TEXT    NOT NULL,
	sent_ms       INTEGER NOT NULL,
	visible_ms    INTEGER NOT NULL,
	receive_count INTEGER NOT NULL DEFAULT 0,
	receipt       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS messages_ready ON messages (queue_id, visible_ms, seq);
PRAGMA user_version = 1;
`

// Open opens (creating when needed) the queue directory dir.
func Open(dir string, opts Options) (*Queue, error) {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.BusyTimeout <= 0 {
		opts.BusyTimeout = 10 * time.Second
	}
	if opts.Recheck <= 0 {
		opts.Recheck = time.Second
	}
	switch {
	case opts.ReuseDelay == 0:
		opts.ReuseDelay = 60 * time.Second
	case opts.ReuseDelay < 0:
		opts.ReuseDelay = 0
	}
	// Absolute, for the database's file: URI (a relative path would be
	// read as its authority) and for bells that outlive a chdir.
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("local queue: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "bells"), 0o700); err != nil {
		return nil, fmt.Errorf("local queue: create directory %s: %w", dir, err)
	}
	syncMode := "NORMAL"
	if opts.FullSync {
		syncMode = "FULL"
	}
	dsn := (&url.URL{Scheme: "file", Path: filepath.Join(dir, DBFile)}).String() +
		fmt.Sprintf("?_busy_timeout=%d&_journal_mode=WAL&_synchronous=%s&_txlock=immediate",
			opts.BusyTimeout.Milliseconds(), syncMode)
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("local queue: open %s: %w", filepath.Join(dir, DBFile), err)
	}
	// A few connections let reads run beside a write; writes are
	// serialised by wmu anyway.
	db.SetMaxOpenConns(4)
	db.SetMaxIdleConns(4)
	db.SetConnMaxLifetime(0)

	q := &Queue{
		dir:     dir,
		db:      db,
		log:     opts.Logger.Named("queue_local"),
		recheck: opts.Recheck,
		reuse:   opts.ReuseDelay,
		done:    make(chan struct{}),
	}
	q.waiters.init()
	if err := q.initRetrying(opts.BusyTimeout); err != nil {
		db.Close()
		return nil, err
	}
	b, err := watchBells(filepath.Join(dir, "bells"), q.waiters.wake, q.waiters.wakeAll, q.log)
	if err != nil {
		q.stmts.close()
		db.Close()
		return nil, fmt.Errorf("local queue: watch %s: %w", filepath.Join(dir, "bells"), err)
	}
	q.bells = b
	return q, nil
}

// initRetrying runs init until it succeeds or busy has passed. SQLite does
// not call the busy handler everywhere: a connection switching a new
// database to WAL while another process does the same gets SQLITE_BUSY at
// once, so several processes opening one fresh queue directory together
// (the orchestrator and its first agents) must retry.
func (q *Queue) initRetrying(busy time.Duration) error {
	deadline := time.Now().Add(busy)
	wait := 5 * time.Millisecond
	for {
		err := q.init()
		if err == nil || !isBusy(err) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(wait)
		wait = min(2*wait, 200*time.Millisecond)
	}
}

// isBusy says whether err is SQLITE_BUSY or SQLITE_LOCKED.
func isBusy(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		code := se.Code() & 0xff // the primary result code
		return code == sqlite3.SQLITE_BUSY || code == sqlite3.SQLITE_LOCKED
	}
	return false
}

func (q *Queue) init() error {
	ctx := context.Background()
	tx, err := q.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("local queue: open %s: %w", q.dbPath(), err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if _, err := tx.ExecContext(ctx, schema); err != nil {
		return fmt.Errorf("local queue: create schema in %s: %w", q.dbPath(), err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("local queue: create schema in %s: %w", q.dbPath(), err)
	}
	if err := q.stmts.prepare(ctx, q.db); err != nil {
		return fmt.Errorf("local queue: prepare statements on %s: %w", q.dbPath(), err)
	}
	return nil
}

func (q *Queue) dbPath() string { return filepath.Join(q.dir, DBFile) }

// Close stops the wake-up watcher, wakes every receiver still waiting (they
// return queue.ErrClosed) and closes the database.
func (q *Queue) Close() error {
	q.once.Do(func() {
		close(q.done)
		var errs []error
		if q.bells != nil {
			errs = append(errs, q.bells.close())
		}
		q.stmts.close()
		errs = append(errs, q.db.Close())
		q.closeErr = errors.Join(errs...)
	})
	return q.closeErr
}

func (q *Queue) closed() bool {
	select {
	case <-q.done:
		return true
	default:
		return false
	}
}

// statements are prepared once; database/sql re-prepares them on each
// connection as needed.
type statements struct {
	lookup, send, receive, del, change *sql.Stmt
	all                                []*sql.Stmt
}

func (s *statements) prepare(ctx context.Context, db *sql.DB) error {
	for _, p := range []struct {
		dst **sql.Stmt
		sql string
	}{
		{&s.lookup, `SELECT id, visibility_ms, (SELECT MIN(visible_ms) FROM messages WHERE queue_id = queues.id) FROM queues WHERE name = ?`},
		{&s.send, `INSERT INTO messages (queue_id, id, body, sent_ms, visible_ms) SELECT id, ?, ?, ?, ? FROM queues WHERE name = ?`},
		{&s.receive, `UPDATE messages SET visible_ms = ?, receive_count = receive_count + 1, receipt = ?
			WHERE seq IN (SELECT seq FROM messages WHERE queue_id = ? AND visible_ms <= ? ORDER BY visible_ms, seq LIMIT ?)
			RETURNING seq, id, body, sent_ms, receive_count`},
		{&s.del, `DELETE FROM messages WHERE seq = ? AND receipt = ? AND receive_count > 0 AND queue_id = (SELECT id FROM queues WHERE name = ?)`},
		{&s.change, `UPDATE messages SET visible_ms = ? WHERE seq = ? AND receipt = ? AND receive_count > 0 AND visible_ms > ? AND queue_id = (SELECT id FROM queues WHERE name = ?)`},
	} {
		st, err := db.PrepareContext(ctx, p.sql)
		if err != nil {
			return err
		}
		*p.dst = st
		s.all = append(s.all, st)
	}
	return nil
}

func (s *statements) close() {
	for _, st := range s.all {
		st.Close()
	}
	s.all = nil
}

// waiters are this process's long-polling receivers, by queue name.
type waiters struct {
	mu sync.Mutex
	m  map[string]map[chan struct{}]struct{}
}

func (w *waiters) init() { w.m = make(map[string]map[chan struct{}]struct{}) }

// add registers a receiver before it looks at the queue, so that a message
// arriving between its look and its wait still wakes it.
func (w *waiters) add(name string) chan struct{} {
	ch := make(chan struct{}, 1)
	w.mu.Lock()
	set := w.m[name]
	if set == nil {
		set = make(map[chan struct{}]struct{})
		w.m[name] = set
	}
	set[ch] = struct{}{}
	w.mu.Unlock()
	return ch
}

func (w *waiters) remove(name string, ch chan struct{}) {
	w.mu.Lock()
	if set := w.m[name]; set != nil {
		delete(set, ch)
		if len(set) == 0 {
			delete(w.m, name)
		}
	}
	w.mu.Unlock()
}

func (w *waiters) wake(name string) {
	w.mu.Lock()
	for ch := range w.m[name] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	w.mu.Unlock()
}

func (w *waiters) wakeAll() {
	w.mu.Lock()
	for _, set := range w.m {
		for ch := range set {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
	w.mu.Unlock()
}
