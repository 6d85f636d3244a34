package local

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/rosterhq/roster/core/queue"
)

func nowMs() int64 { return time.Now().UnixMilli() }

// CreateQueue creates the named queue; it does nothing when the queue exists
// with the same visibility timeout, and returns queue.ErrQueueExists when it
// exists with another.
func (q *Queue) CreateQueue(ctx context.Context, name string, opts queue.QueueOptions) error {
	if err := queue.ValidateName(name); err != nil {
		return err
	}
	if err := queue.ValidateQueueOptions(opts); err != nil {
		return fmt.Errorf("queue %q: %w", name, err)
	}
	if q.closed() {
		return queue.ErrClosed
	}
	vis := opts.VisibilityTimeout
	if vis == 0 {
		vis = queue.DefaultVisibilityTimeout
	}
	tags, err := json.Marshal(opts.Tags)
	if err != nil {
		return fmt.Errorf("local queue: create %q: encode tags: %w", name, err)
	}
	q.wmu.Lock()
	defer q.wmu.Unlock()
	tx, err := q.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("local queue: create %q: %w", name, err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	var have int64
	switch err := tx.QueryRowContext(ctx, `SELECT visibility_ms FROM queues WHERE name = ?`, name).Scan(&have); {
	case err == nil:
		if have != vis.Milliseconds() {
			return fmt.Errorf("local queue: create %q with visibility timeout %s: %w (it has %s)",
				name, vis, queue.ErrQueueExists, time.Duration(have)*time.Millisecond)
		}
		return nil
	case !errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("local queue: create %q: %w", name, err)
	}
	now := nowMs()
	if q.reuse > 0 {
		var deleted int64
		err := tx.QueryRowContext(ctx, `SELECT deleted_ms FROM deleted_queues WHERE name = ?`, name).Scan(&deleted)
		switch {
		case err == nil && now-deleted < q.reuse.Milliseconds():
			return fmt.Errorf("local queue: create %q: %w", name, queue.ErrQueueDeletedRecently)
		case err != nil && !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("local queue: create %q: %w", name, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO queues (name, visibility_ms, tags, created_ms) VALUES (?, ?, ?, ?)`,
		name, vis.Milliseconds(), string(tags), now); err != nil {
		return fmt.Errorf("local queue: create %q: %w", name, err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM deleted_queues WHERE name = ?`, name); err != nil {
		return fmt.Errorf("local queue: create %q: %w", name, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("local queue: create %q: %w", name, err)
	}
	q.log.Debug("queue created", "queue", name, "visibility_timeout", vis)
	return nil
}

// DeleteQueue deletes the queue and its messages; receivers waiting on it
// wake and get queue.ErrQueueNotFound.
func (q *Queue) DeleteQueue(ctx context.Context, name string) error {
	if err := queue.ValidateName(name); err != nil {
		return err
	}
	if q.closed() {
		return queue.ErrClosed
	}
	err := q.inQueueTx(ctx, name, func(tx *sql.Tx, id int64) error {
		for _, stmt := range []string{
			`DELETE FROM messages WHERE queue_id = ?1`,
			`DELETE FROM queues WHERE id = ?1`,
		} {
			if _, err := tx.ExecContext(ctx, stmt, id); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO deleted_queues (name, deleted_ms) VALUES (?, ?)`, name, nowMs()); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("local queue: delete queue %q: %w", name, err)
	}
	q.waiters.wake(name)
	q.bells.forget(name)
	q.log.Debug("queue deleted", "queue", name)
	return nil
}

// ListQueues returns the names that begin with prefix, sorted.
func (q *Queue) ListQueues(ctx context.Context, prefix string) ([]string, error) {
	if q.closed() {
		return nil, queue.ErrClosed
	}
	// substr rather than LIKE: LIKE ignores case, SQS prefixes do not.
	rows, err := q.db.QueryContext(ctx, `SELECT name FROM queues WHERE substr(name, 1, ?) = ? ORDER BY name`, len(prefix), prefix)
	if err != nil {
		return nil, fmt.Errorf("local queue: list queues with prefix %q: %w", prefix, err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, fmt.Errorf("local queue: list queues with prefix %q: %w", prefix, err)
		}
		names = append(names, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("local queue: list queues with prefix %q: %w", prefix, err)
	}
	return names, nil
}

// QueueAttributes returns the queue's visibility timeout, creation time and
// exact message counts.
func (q *Queue) QueueAttributes(ctx context.Context, name string) (queue.Attributes, error) {
	if err := queue.ValidateName(name); err != nil {
		return queue.Attributes{}, err
	}
	if q.closed() {
		return queue.Attributes{}, queue.ErrClosed
	}
	var id, vis, created int64
	err := q.db.QueryRowContext(ctx, `SELECT id, visibility_ms, created_ms FROM queues WHERE name = ?`, name).Scan(&id, &vis, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return queue.Attributes{}, fmt.Errorf("local queue: attributes of %q: %w", name, queue.ErrQueueNotFound)
	}
	if err != nil {
		return queue.Attributes{}, fmt.Errorf("local queue: attributes of %q: %w", name, err)
	}
	now := nowMs()
	var visible, inflight sql.NullInt64
	err = q.db.QueryRowContext(ctx, `SELECT SUM(visible_ms <= ?1), SUM(visible_ms > ?1) FROM messages WHERE queue_id = ?2`, now, id).Scan(&visible, &inflight)
	if err != nil {
		return queue.Attributes{}, fmt.Errorf("local queue: attributes of %q: %w", name, err)
	}
	return queue.Attributes{
		VisibilityTimeout:   time.Duration(vis) * time.Millisecond,
		ApproximateMessages: int(visible.Int64),
		ApproximateInFlight: int(inflight.Int64),
		CreatedAt:           time.UnixMilli(created),
	}, nil
}

// Send puts one message on the queue; when it returns, the message is
// committed to the database.
func (q *Queue) Send(ctx context.Context, name, body string) (string, error) {
	if err := queue.ValidateName(name); err != nil {
		return "", err
	}
	if err := queue.ValidateBody(body); err != nil {
		return "", fmt.Errorf("local queue: send to %q: %w", name, err)
	}
	if q.closed() {
		return "", queue.ErrClosed
	}
	id := uuid.NewString()
	now := nowMs()
	q.wmu.Lock()
	res, err := q.stmts.send.ExecContext(ctx, id, body, now, now, name)
	q.wmu.Unlock()
	if err != nil {
		return "", fmt.Errorf("local queue: send to %q: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return "", fmt.Errorf("local queue: send to %q: %w", name, queue.ErrQueueNotFound)
	}
	q.ring(name)
	return id, nil
}

// SendBatch puts up to ten messages on the queue in one transaction; an
// entry whose body is refused fails alone.
func (q *Queue) SendBatch(ctx context.Context, name string, entries []queue.SendEntry) ([]queue.BatchResult, error) {
	if err := queue.ValidateName(name); err != nil {
		return nil, err
	}
	if err := queue.ValidateBatch(len(entries), func(i int) string { return entries[i].ID }); err != nil {
		return nil, fmt.Errorf("local queue: send batch to %q: %w", name, err)
	}
	if q.closed() {
		return nil, queue.ErrClosed
	}
	results := make([]queue.BatchResult, len(entries))
	valid := 0
	for i, e := range entries {
		results[i].ID = e.ID
		if err := queue.ValidateBody(e.Body); err != nil {
			results[i].Err = err
			continue
		}
		results[i].MessageID = uuid.NewString()
		valid++
	}
	if valid == 0 {
		return results, nil
	}
	err := q.inQueueTx(ctx, name, func(tx *sql.Tx, qid int64) error {
		now := nowMs()
		for i, e := range entries {
			if results[i].Err != nil {
				continue
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO messages (queue_id, id, body, sent_ms, visible_ms) VALUES (?, ?, ?, ?, ?)`,
				qid, results[i].MessageID, e.Body, now, now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("local queue: send batch to %q: %w", name, err)
	}
	q.ring(name)
	return results, nil
}

// Receive returns up to opts.MaxMessages messages, long-polling up to
// opts.WaitTime for the first one.
func (q *Queue) Receive(ctx context.Context, name string, opts queue.ReceiveOptions) ([]queue.Message, error) {
	if err := queue.ValidateName(name); err != nil {
		return nil, err
	}
	opts, err := queue.ValidateReceiveOptions(opts)
	if err != nil {
		return nil, fmt.Errorf("local queue: receive from %q: %w", name, err)
	}
	if q.closed() {
		return nil, queue.ErrClosed
	}
	var wake chan struct{}
	if opts.WaitTime > 0 {
		wake = q.waiters.add(name)
		defer q.waiters.remove(name, wake)
	}
	deadline := time.Now().Add(opts.WaitTime)
	var timer *time.Timer
	for {
		msgs, next, err := q.tryReceive(ctx, name, opts)
		if err != nil || len(msgs) > 0 {
			return msgs, err
		}
		now := time.Now()
		wait := deadline.Sub(now)
		if wait <= 0 {
			return nil, nil
		}
		wait = min(wait, q.recheck)
		if next != 0 {
			// A message in flight becomes visible again then: be there.
			wait = max(min(wait, time.UnixMilli(next).Sub(now)), time.Millisecond)
		}
		if timer == nil {
			timer = time.NewTimer(wait)
			defer timer.Stop()
		} else {
			timer.Reset(wait)
		}
		select {
		case <-wake:
		case <-timer.C:
		case <-ctx.Done():
			return nil, fmt.Errorf("local queue: receive from %q: %w", name, ctx.Err())
		case <-q.done:
			return nil, queue.ErrClosed
		}
	}
}

// tryReceive takes the visible messages, if any; otherwise it returns when
// the next one becomes visible (unix ms, zero for none).
func (q *Queue) tryReceive(ctx context.Context, name string, opts queue.ReceiveOptions) ([]queue.Message, int64, error) {
	var qid, vis int64
	var first sql.NullInt64
	// A read first, without the write lock, so that idle receivers never
	// stand in the writers' way.
	err := q.stmts.lookup.QueryRowContext(ctx, name).Scan(&qid, &vis, &first)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, 0, fmt.Errorf("local queue: receive from %q: %w", name, queue.ErrQueueNotFound)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("local queue: receive from %q: %w", name, err)
	}
	if !first.Valid {
		return nil, 0, nil
	}
	if first.Int64 > nowMs() {
		return nil, first.Int64, nil
	}
	if opts.VisibilityTimeout > 0 {
		vis = opts.VisibilityTimeout.Milliseconds()
	}
	token := newToken()
	msgs, err := func() ([]queue.Message, error) {
		q.wmu.Lock()
		defer q.wmu.Unlock()
		now := nowMs()
		rows, err := q.stmts.receive.QueryContext(ctx, now+vis, token, qid, now, opts.MaxMessages)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		var msgs []queue.Message
		var seqs []int64
		for rows.Next() {
			var (
				seq, sent int64
				m         queue.Message
			)
			if err := rows.Scan(&seq, &m.ID, &m.Body, &sent, &m.ReceiveCount); err != nil {
				return nil, err
			}
			m.Receipt = formatReceipt(seq, token)
			m.SentAt = time.UnixMilli(sent)
			msgs = append(msgs, m)
			seqs = append(seqs, seq)
		}
		// RETURNING gives no order; keep the queue's.
		sort.Sort(bySeq{msgs, seqs})
		return msgs, rows.Err()
	}()
	if err != nil {
		return nil, 0, fmt.Errorf("local queue: receive from %q: %w", name, err)
	}
	if len(msgs) == 0 {
		// Another receiver was quicker; the waiter still needs to know
		// when the next message in flight comes back.
		var next sql.NullInt64
		err := q.db.QueryRowContext(ctx, `SELECT MIN(visible_ms) FROM messages WHERE queue_id = ?`, qid).Scan(&next)
		if err != nil {
			return nil, 0, fmt.Errorf("local queue: receive from %q: %w", name, err)
		}
		if next.Valid {
			return nil, max(next.Int64, nowMs()+1), nil
		}
	}
	return msgs, 0, nil
}

type bySeq struct {
	msgs []queue.Message
	seqs []int64
}

func (b bySeq) Len() int           { return len(b.msgs) }
func (b bySeq) Less(i, j int) bool { return b.seqs[i] < b.seqs[j] }
func (b bySeq) Swap(i, j int) {
	b.msgs[i], b.msgs[j] = b.msgs[j], b.msgs[i]
	b.seqs[i], b.seqs[j] = b.seqs[j], b.seqs[i]
}

// DeleteMessage deletes a received message. The receipt of the latest
// delivery is needed: one from an earlier delivery returns
// queue.ErrInvalidReceipt and deletes nothing.
func (q *Queue) DeleteMessage(ctx context.Context, name, receipt string) error {
	if err := queue.ValidateName(name); err != nil {
		return err
	}
	if q.closed() {
		return queue.ErrClosed
	}
	seq, token, ok := parseReceipt(receipt)
	if !ok {
		return fmt.Errorf("local queue: delete from %q: %w", name, queue.ErrInvalidReceipt)
	}
	q.wmu.Lock()
	res, err := q.stmts.del.ExecContext(ctx, seq, token, name)
	q.wmu.Unlock()
	if err != nil {
		return fmt.Errorf("local queue: delete from %q: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("local queue: delete from %q: %w", name, q.missing(ctx, name))
	}
	return nil
}

// DeleteMessageBatch deletes up to ten messages in one transaction.
func (q *Queue) DeleteMessageBatch(ctx context.Context, name string, entries []queue.DeleteEntry) ([]queue.BatchResult, error) {
	if err := queue.ValidateName(name); err != nil {
		return nil, err
	}
	if err := queue.ValidateBatch(len(entries), func(i int) string { return entries[i].ID }); err != nil {
		return nil, fmt.Errorf("local queue: delete batch from %q: %w", name, err)
	}
	if q.closed() {
		return nil, queue.ErrClosed
	}
	results := make([]queue.BatchResult, len(entries))
	err := q.inQueueTx(ctx, name, func(tx *sql.Tx, qid int64) error {
		for i, e := range entries {
			results[i].ID = e.ID
			seq, token, ok := parseReceipt(e.Receipt)
			if !ok {
				results[i].Err = queue.ErrInvalidReceipt
				continue
			}
			res, err := tx.ExecContext(ctx, `DELETE FROM messages WHERE seq = ? AND receipt = ? AND receive_count > 0 AND queue_id = ?`, seq, token, qid)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n == 0 {
				results[i].Err = queue.ErrInvalidReceipt
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("local queue: delete batch from %q: %w", name, err)
	}
	return results, nil
}

// ChangeVisibility sets how long from now a message in flight stays
// invisible; zero releases it at once. The message must still be in flight
// under this receipt, else queue.ErrInvalidReceipt.
func (q *Queue) ChangeVisibility(ctx context.Context, name, receipt string, timeout time.Duration) error {
	if err := queue.ValidateName(name); err != nil {
		return err
	}
	if err := queue.ValidateVisibility(timeout); err != nil {
		return fmt.Errorf("local queue: change visibility on %q: %w", name, err)
	}
	if q.closed() {
		return queue.ErrClosed
	}
	seq, token, ok := parseReceipt(receipt)
	if !ok {
		return fmt.Errorf("local queue: change visibility on %q: %w", name, queue.ErrInvalidReceipt)
	}
	q.wmu.Lock()
	now := nowMs()
	res, err := q.stmts.change.ExecContext(ctx, now+timeout.Milliseconds(), seq, token, now, name)
	q.wmu.Unlock()
	if err != nil {
		return fmt.Errorf("local queue: change visibility on %q: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("local queue: change visibility on %q: %w", name, q.missing(ctx, name))
	}
	if timeout == 0 {
		q.ring(name)
	}
	return nil
}

// missing tells why a receipt matched nothing: the queue is gone, or the
// receipt is.
func (q *Queue) missing(ctx context.Context, name string) error {
	var id int64
	err := q.db.QueryRowContext(ctx, `SELECT id FROM queues WHERE name = ?`, name).Scan(&id)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return queue.ErrQueueNotFound
	case err != nil:
		return err
	}
	return queue.ErrInvalidReceipt
}

// ring wakes the queue's receivers: this process's directly, the other
// processes' through the bell file.
func (q *Queue) ring(name string) {
	q.waiters.wake(name)
	q.bells.ring(name)
}

// newToken returns a random, non-zero receipt token; zero marks a message
// never received.
func newToken() int64 {
	var b [8]byte
	for {
		_, _ = rand.Read(b[:])
		if t := int64(binary.LittleEndian.Uint64(b[:]) >> 1); t != 0 {
			return t
		}
	}
}

func formatReceipt(seq, token int64) string {
	return strconv.FormatInt(seq, 36) + "." + strconv.FormatInt(token, 36)
}

func parseReceipt(r string) (seq, token int64, ok bool) {
	s, t, found := strings.Cut(r, ".")
	if !found {
		return 0, 0, false
	}
	seq, err1 := strconv.ParseInt(s, 36, 64)
	token, err2 := strconv.ParseInt(t, 36, 64)
	if err1 != nil || err2 != nil || seq <= 0 || token <= 0 {
		return 0, 0, false
	}
	return seq, token, true
}

// inQueueTx runs fn in a write transaction on the named queue, whose id it
// looks up inside the transaction, and commits when fn returns nil. Writes
// are serialised by wmu; SQLite's own lock serialises them across processes.
func (q *Queue) inQueueTx(ctx context.Context, name string, fn func(tx *sql.Tx, qid int64) error) error {
	q.wmu.Lock()
	defer q.wmu.Unlock()
	tx, err := q.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	var qid int64
	if err := tx.QueryRowContext(ctx, `SELECT id FROM queues WHERE name = ?`, name).Scan(&qid); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return queue.ErrQueueNotFound
		}
		return err
	}
	if err := fn(tx, qid); err != nil {
		return err
	}
	return tx.Commit()
}
