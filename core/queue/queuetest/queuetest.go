// Package queuetest is the conformance suite that every queue backend must
// pass: the semantics of Amazon SQS standard queues as the queue package
// states them.
//
//	func TestConformance(t *testing.T) {
//		queuetest.Run(t, func(t *testing.T) queue.Queue { return open(t) })
//	}
//
// Subtests run in parallel on distinct queue names, so the backend is shared
// and the suite finishes in a few seconds. Visibility timeouts are 1–2 s, the
// smallest SQS can express.
package queuetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rosterhq/roster/core/queue"
)

// RequestCounter is implemented by backends that call a service; the suite
// uses it to prove that refused arguments cost no request.
type RequestCounter interface {
	Requests() int64
}

// Factory returns a client of the backend under test. All the clients that
// one Run obtains must reach the same store: the suite checks, for one, that
// a message sent through one client wakes a receiver waiting on another. The
// factory closes what it opens (t.Cleanup).
type Factory func(t *testing.T) queue.Queue

// Run runs the conformance suite against the backend that newQueue opens.
func Run(t *testing.T, newQueue Factory) {
	run := randomHex(4)
	cases := []struct {
		name string
		fn   func(t *testing.T, s *suite)
	}{
		{"CreateIsIdempotent", testCreateIdempotent},
		{"SendReceiveDelete", testSendReceiveDelete},
		{"Attributes", testAttributes},
		{"SendBatchPartialFailure", testSendBatchPartialFailure},
		{"DeleteBatchPartialFailure", testDeleteBatchPartialFailure},
		{"BatchLimits", testBatchLimits},
		{"RedeliveryAfterVisibilityTimeout", testRedelivery},
		{"ExtendAndReleaseVisibility", testChangeVisibility},
		{"ReceiveMany", testReceiveMany},
		{"LongPollWakesOnSend", testLongPollWakes},
		{"LongPollReturnsEmptyAfterWait", testLongPollEmpty},
		{"LongPollHonoursCancel", testLongPollCancel},
		{"DeleteQueue", testDeleteQueue},
		{"MissingQueue", testMissingQueue},
		{"OversizeRefusedBeforeAnyCall", testOversize},
		{"InvalidArguments", testInvalidArguments},
		{"ListByPrefix", testListByPrefix},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := &suite{new: newQueue, prefix: "qt-" + run + "-" + string(rune('a'+i%26)) + randomHex(2) + "-"}
			c.fn(t, s)
		})
	}
}

type suite struct {
	new    Factory
	prefix string
}

// name returns a queue name unique to this run and case.
func (s *suite) name(suffix string) string { return s.prefix + suffix }

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func create(t *testing.T, q queue.Queue, name string, vis time.Duration) {
	t.Helper()
	if err := q.CreateQueue(ctxT(t), name, queue.QueueOptions{VisibilityTimeout: vis}); err != nil {
		t.Fatalf("CreateQueue(%s): %v", name, err)
	}
}

func send(t *testing.T, q queue.Queue, name, body string) string {
	t.Helper()
	id, err := q.Send(ctxT(t), name, body)
	if err != nil {
		t.Fatalf("Send(%s): %v", name, err)
	}
	if id == "" {
		t.Fatalf("Send(%s) returned an empty message id", name)
	}
	return id
}

// receiveN receives until it has n messages or the wait is over; SQS may
// return fewer messages than are available, so one call is not enough.
func receiveN(t *testing.T, q queue.Queue, name string, n int, wait time.Duration) []queue.Message {
	t.Helper()
	deadline := time.Now().Add(wait)
	var got []queue.Message
	for len(got) < n {
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		msgs, err := q.Receive(ctxT(t), name, queue.ReceiveOptions{
			MaxMessages: min(n-len(got), queue.MaxBatch),
			WaitTime:    min(left.Round(time.Second)+time.Second, queue.MaxWait),
		})
		if err != nil {
			t.Fatalf("Receive(%s): %v", name, err)
		}
		got = append(got, msgs...)
	}
	return got
}

func receiveOne(t *testing.T, q queue.Queue, name string, wait time.Duration) queue.Message {
	t.Helper()
	msgs := receiveN(t, q, name, 1, wait)
	if len(msgs) != 1 {
		t.Fatalf("Receive(%s): got %d messages within %s, want 1", name, len(msgs), wait)
	}
	return msgs[0]
}

func expectEmpty(t *testing.T, q queue.Queue, name string, wait time.Duration) {
	t.Helper()
	msgs, err := q.Receive(ctxT(t), name, queue.ReceiveOptions{MaxMessages: queue.MaxBatch, WaitTime: wait})
	if err != nil {
		t.Fatalf("Receive(%s): %v", name, err)
	}
	if len(msgs) != 0 {
		t.Fatalf("Receive(%s): got %d messages (first %q, receive count %d), want none", name, len(msgs), msgs[0].Body, msgs[0].ReceiveCount)
	}
}

func expectErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want %v", what, err, want)
	}
}

func testCreateIdempotent(t *testing.T, s *suite) {
	q := s.new(t)
	ctx := ctxT(t)
	name := s.name("idem")
	opts := queue.QueueOptions{VisibilityTimeout: 7 * time.Second, Tags: map[string]string{"cluster": "test"}}
	for i := 0; i < 2; i++ {
		if err := q.CreateQueue(ctx, name, opts); err != nil {
			t.Fatalf("CreateQueue #%d: %v", i+1, err)
		}
	}
	err := q.CreateQueue(ctx, name, queue.QueueOptions{VisibilityTimeout: 9 * time.Second})
	expectErr(t, "CreateQueue with another visibility timeout", err, queue.ErrQueueExists)
	attrs, err := q.QueueAttributes(ctx, name)
	if err != nil {
		t.Fatalf("QueueAttributes: %v", err)
	}
	if attrs.VisibilityTimeout != 7*time.Second {
		t.Fatalf("visibility timeout %s, want 7s", attrs.VisibilityTimeout)
	}
	names, err := q.ListQueues(ctx, name)
	if err != nil {
		t.Fatalf("ListQueues: %v", err)
	}
	if !slices.Equal(names, []string{name}) {
		t.Fatalf("ListQueues(%q) = %v, want the one queue", name, names)
	}
	// The default applies when no timeout is given.
	def := s.name("default")
	create(t, q, def, 0)
	if attrs, err := q.QueueAttributes(ctx, def); err != nil || attrs.VisibilityTimeout != queue.DefaultVisibilityTimeout {
		t.Fatalf("QueueAttributes(default) = %+v, %v; want visibility %s", attrs, err, queue.DefaultVisibilityTimeout)
	}
}

func testSendReceiveDelete(t *testing.T, s *suite) {
	q := s.new(t)
	ctx := ctxT(t)
	name := s.name("srd")
	create(t, q, name, 30*time.Second)
	body := "hello, wörld é\t\n" + strings.Repeat("x", 100)
	before := time.Now().Add(-2 * time.Second)
	id := send(t, q, name, body)
	m := receiveOne(t, q, name, 5*time.Second)
	if m.ID != id || m.Body != body {
		t.Fatalf("received (%q, %q), want (%q, %q)", m.ID, m.Body, id, body)
	}
	if m.ReceiveCount != 1 {
		t.Fatalf("receive count %d, want 1", m.ReceiveCount)
	}
	if m.Receipt == "" {
		t.Fatal("empty receipt")
	}
	if m.SentAt.Before(before) || m.SentAt.After(time.Now().Add(2*time.Second)) {
		t.Fatalf("sent at %s, want about now", m.SentAt)
	}
	// In flight: nobody else gets it.
	expectEmpty(t, q, name, 0)
	if err := q.DeleteMessage(ctx, name, m.Receipt); err != nil {
		t.Fatalf("DeleteMessage: %v", err)
	}
	expectEmpty(t, q, name, time.Second)
	attrs, err := q.QueueAttributes(ctx, name)
	if err != nil {
		t.Fatalf("QueueAttributes: %v", err)
	}
	if attrs.ApproximateMessages != 0 || attrs.ApproximateInFlight != 0 {
		t.Fatalf("after delete: %d visible, %d in flight; want none", attrs.ApproximateMessages, attrs.ApproximateInFlight)
	}
}

func testAttributes(t *testing.T, s *suite) {
	q := s.new(t)
	ctx := ctxT(t)
	name := s.name("attrs")
	start := time.Now().Add(-5 * time.Second)
	create(t, q, name, 20*time.Second)
	for _, b := range []string{"a", "b", "c"} {
		send(t, q, name, b)
	}
	receiveOne(t, q, name, 5*time.Second)
	attrs, err := q.QueueAttributes(ctx, name)
	if err != nil {
		t.Fatalf("QueueAttributes: %v", err)
	}
	if attrs.VisibilityTimeout != 20*time.Second {
		t.Fatalf("visibility timeout %s, want 20s", attrs.VisibilityTimeout)
	}
	if attrs.ApproximateMessages != 2 || attrs.ApproximateInFlight != 1 {
		t.Fatalf("%d visible and %d in flight, want 2 and 1", attrs.ApproximateMessages, attrs.ApproximateInFlight)
	}
	if attrs.CreatedAt.Before(start) || attrs.CreatedAt.After(time.Now().Add(5*time.Second)) {
		t.Fatalf("created at %s, want about now", attrs.CreatedAt)
	}
}

func testSendBatchPartialFailure(t *testing.T, s *suite) {
	q := s.new(t)
	ctx := ctxT(t)
	name := s.name("sbatch")
	create(t, q, name, 30*time.Second)
	entries := []queue.SendEntry{
		{ID: "ok-1", Body: "first"},
		{ID: "too_big", Body: strings.Repeat("x", queue.MaxMessageSize+1)},
		{ID: "bad-char", Body: "nul \x00 is refused"},
		{ID: "ok-2", Body: "second"},
	}
	res, err := q.SendBatch(ctx, name, entries)
	if err != nil {
		t.Fatalf("SendBatch: %v", err)
	}
	if len(res) != len(entries) {
		t.Fatalf("SendBatch returned %d results for %d entries", len(res), len(entries))
	}
	for i, r := range res {
		if r.ID != entries[i].ID {
			t.Fatalf("result %d has id %q, want %q (results keep the entries' order)", i, r.ID, entries[i].ID)
		}
	}
	for _, i := range []int{0, 3} {
		if res[i].Err != nil || res[i].MessageID == "" {
			t.Fatalf("entry %s: err %v, message id %q; want success", res[i].ID, res[i].Err, res[i].MessageID)
		}
	}
	expectErr(t, "oversize entry", res[1].Err, queue.ErrMessageTooLarge)
	expectErr(t, "entry with a NUL", res[2].Err, queue.ErrInvalidArgument)
	got := receiveN(t, q, name, 2, 10*time.Second)
	bodies := []string{}
	ids := map[string]bool{}
	for _, m := range got {
		bodies = append(bodies, m.Body)
		ids[m.ID] = true
	}
	slices.Sort(bodies)
	if !slices.Equal(bodies, []string{"first", "second"}) || !ids[res[0].MessageID] || !ids[res[3].MessageID] {
		t.Fatalf("received %v (ids %v), want first and second with ids %s, %s", bodies, ids, res[0].MessageID, res[3].MessageID)
	}
	expectEmpty(t, q, name, time.Second)
}

func testDeleteBatchPartialFailure(t *testing.T, s *suite) {
	q := s.new(t)
	ctx := ctxT(t)
	name := s.name("dbatch")
	create(t, q, name, 30*time.Second)
	var entries []queue.SendEntry
	for i := 0; i < queue.MaxBatch; i++ {
		entries = append(entries, queue.SendEntry{ID: "m" + string(rune('0'+i)), Body: "body " + string(rune('0'+i))})
	}
	res, err := q.SendBatch(ctx, name, entries)
	if err != nil {
		t.Fatalf("SendBatch: %v", err)
	}
	for _, r := range res {
		if r.Err != nil {
			t.Fatalf("SendBatch entry %s: %v", r.ID, r.Err)
		}
	}
	got := receiveN(t, q, name, queue.MaxBatch, 10*time.Second)
	if len(got) != queue.MaxBatch {
		t.Fatalf("received %d of %d messages", len(got), queue.MaxBatch)
	}
	del := []queue.DeleteEntry{{ID: "bogus", Receipt: "not-a-receipt"}}
	for i, m := range got[:queue.MaxBatch-1] {
		del = append(del, queue.DeleteEntry{ID: "d" + string(rune('0'+i)), Receipt: m.Receipt})
	}
	dres, err := q.DeleteMessageBatch(ctx, name, del)
	if err != nil {
		t.Fatalf("DeleteMessageBatch: %v", err)
	}
	if len(dres) != len(del) {
		t.Fatalf("DeleteMessageBatch returned %d results for %d entries", len(dres), len(del))
	}
	// SQS itself accepts an unknown receipt on delete and deletes nothing;
	// the local backend refuses it. Either way it must not fail the rest.
	if dres[0].ID != "bogus" || (dres[0].Err != nil && !errors.Is(dres[0].Err, queue.ErrInvalidReceipt)) {
		t.Fatalf("bogus entry: %+v; want success or ErrInvalidReceipt", dres[0])
	}
	for i, r := range dres[1:] {
		if r.ID != del[i+1].ID || r.Err != nil {
			t.Fatalf("entry %s: %+v; want success", del[i+1].ID, r)
		}
	}
	attrs, err := q.QueueAttributes(ctx, name)
	if err != nil {
		t.Fatalf("QueueAttributes: %v", err)
	}
	if attrs.ApproximateMessages != 0 || attrs.ApproximateInFlight != 1 {
		t.Fatalf("%d visible and %d in flight, want 0 and the 1 not deleted", attrs.ApproximateMessages, attrs.ApproximateInFlight)
	}
}

func testBatchLimits(t *testing.T, s *suite) {
	q := s.new(t)
	ctx := ctxT(t)
	name := s.name("limits")
	create(t, q, name, 30*time.Second)
	var eleven []queue.SendEntry
	for i := 0; i < 11; i++ {
		eleven = append(eleven, queue.SendEntry{ID: "e" + randomHex(2) + string(rune('a'+i)), Body: "x"})
	}
	_, err := q.SendBatch(ctx, name, eleven)
	expectErr(t, "SendBatch of 11", err, queue.ErrTooManyEntries)
	_, err = q.SendBatch(ctx, name, nil)
	expectErr(t, "SendBatch of none", err, queue.ErrTooManyEntries)
	_, err = q.SendBatch(ctx, name, []queue.SendEntry{{ID: "same", Body: "a"}, {ID: "same", Body: "b"}})
	expectErr(t, "SendBatch with duplicate ids", err, queue.ErrInvalidArgument)
	_, err = q.SendBatch(ctx, name, []queue.SendEntry{{ID: "bad id!", Body: "a"}})
	expectErr(t, "SendBatch with a bad id", err, queue.ErrInvalidArgument)
	_, err = q.DeleteMessageBatch(ctx, name, nil)
	expectErr(t, "DeleteMessageBatch of none", err, queue.ErrTooManyEntries)
	_, err = q.Receive(ctx, name, queue.ReceiveOptions{MaxMessages: 11})
	expectErr(t, "Receive of 11", err, queue.ErrTooManyEntries)
	// Nothing of the refused batches went in.
	expectEmpty(t, q, name, 0)
}

func testRedelivery(t *testing.T, s *suite) {
	q := s.new(t)
	ctx := ctxT(t)
	name := s.name("redeliver")
	create(t, q, name, time.Second)
	id := send(t, q, name, "again")
	first := receiveOne(t, q, name, 5*time.Second)
	if first.ReceiveCount != 1 {
		t.Fatalf("first receive count %d, want 1", first.ReceiveCount)
	}
	// Not deleted: it comes back once the 1 s timeout is over.
	second := receiveOne(t, q, name, 10*time.Second)
	if second.ID != id || second.ReceiveCount != 2 {
		t.Fatalf("second delivery: id %q count %d; want %q and 2", second.ID, second.ReceiveCount, id)
	}
	if second.Receipt == first.Receipt {
		t.Fatal("the second delivery has the first one's receipt")
	}
	// The first receipt expired with the redelivery: it can no longer
	// change the message's visibility, and deleting with it (which SQS
	// accepts without effect) does not delete the message.
	err := q.ChangeVisibility(ctx, name, first.Receipt, 0)
	expectErr(t, "ChangeVisibility with an expired receipt", err, queue.ErrInvalidReceipt)
	if err := q.DeleteMessage(ctx, name, first.Receipt); err != nil && !errors.Is(err, queue.ErrInvalidReceipt) {
		t.Fatalf("DeleteMessage with an expired receipt: %v", err)
	}
	if err := q.ChangeVisibility(ctx, name, second.Receipt, 0); err != nil {
		t.Fatalf("ChangeVisibility with the current receipt (the message must still exist): %v", err)
	}
	third := receiveOne(t, q, name, 5*time.Second)
	if third.ID != id || third.ReceiveCount != 3 {
		t.Fatalf("third delivery: id %q count %d; want %q and 3", third.ID, third.ReceiveCount, id)
	}
	if err := q.DeleteMessage(ctx, name, third.Receipt); err != nil {
		t.Fatalf("DeleteMessage: %v", err)
	}
	expectEmpty(t, q, name, 2*time.Second)
}

func testChangeVisibility(t *testing.T, s *suite) {
	q := s.new(t)
	ctx := ctxT(t)
	name := s.name("visibility")
	create(t, q, name, time.Second)
	send(t, q, name, "lease")
	m := receiveOne(t, q, name, 5*time.Second)
	// Extend the 1 s lease to 5 s: it must stay hidden past the 1 s.
	if err := q.ChangeVisibility(ctx, name, m.Receipt, 5*time.Second); err != nil {
		t.Fatalf("ChangeVisibility(5s): %v", err)
	}
	expectEmpty(t, q, name, 2*time.Second)
	// Release it: it is visible at once.
	if err := q.ChangeVisibility(ctx, name, m.Receipt, 0); err != nil {
		t.Fatalf("ChangeVisibility(0): %v", err)
	}
	again := receiveOne(t, q, name, 2*time.Second)
	if again.ID != m.ID || again.ReceiveCount != 2 {
		t.Fatalf("after release: id %q count %d; want %q and 2", again.ID, again.ReceiveCount, m.ID)
	}
	// A per-receive visibility timeout overrides the queue's.
	if err := q.ChangeVisibility(ctx, name, again.Receipt, 0); err != nil {
		t.Fatalf("ChangeVisibility(0): %v", err)
	}
	msgs, err := q.Receive(ctx, name, queue.ReceiveOptions{WaitTime: 2 * time.Second, VisibilityTimeout: 10 * time.Second})
	if err != nil || len(msgs) != 1 {
		t.Fatalf("Receive with a 10s visibility: %d messages, %v", len(msgs), err)
	}
	expectEmpty(t, q, name, 2*time.Second)
	err = q.ChangeVisibility(ctx, name, "not-a-receipt", time.Second)
	expectErr(t, "ChangeVisibility with a bogus receipt", err, queue.ErrInvalidReceipt)
}

func testReceiveMany(t *testing.T, s *suite) {
	q := s.new(t)
	name := s.name("many")
	create(t, q, name, 30*time.Second)
	const n = 25
	want := map[string]bool{}
	for i := 0; i < n; i++ {
		want[send(t, q, name, "m"+randomHex(4))] = true
	}
	got := receiveN(t, q, name, n, 15*time.Second)
	if len(got) != n {
		t.Fatalf("received %d of %d messages", len(got), n)
	}
	for _, m := range got {
		if !want[m.ID] {
			t.Fatalf("message %s received twice or never sent", m.ID)
		}
		delete(want, m.ID)
	}
}

func testLongPollWakes(t *testing.T, s *suite) {
	receiver, sender := s.new(t), s.new(t)
	name := s.name("wake")
	create(t, receiver, name, 30*time.Second)
	type result struct {
		msgs    []queue.Message
		err     error
		elapsed time.Duration
	}
	done := make(chan result, 1)
	started := make(chan struct{})
	go func() {
		close(started)
		t0 := time.Now()
		msgs, err := receiver.Receive(ctxT(t), name, queue.ReceiveOptions{WaitTime: queue.MaxWait})
		done <- result{msgs, err, time.Since(t0)}
	}()
	<-started
	// Give the receiver time to be waiting; if it is not yet, it finds the
	// message at once, which proves nothing but is no failure either.
	time.Sleep(300 * time.Millisecond)
	id := send(t, sender, name, "wake up")
	r := <-done
	if r.err != nil {
		t.Fatalf("Receive: %v", r.err)
	}
	if len(r.msgs) != 1 || r.msgs[0].ID != id {
		t.Fatalf("Receive returned %d messages, want the one sent", len(r.msgs))
	}
	// A receiver that only looked at the end of its 20 s wait would get
	// here after 20 s.
	if r.elapsed > 10*time.Second {
		t.Fatalf("the long poll returned after %s: it did not wake on the send", r.elapsed)
	}
}

func testLongPollEmpty(t *testing.T, s *suite) {
	q := s.new(t)
	name := s.name("empty")
	create(t, q, name, 30*time.Second)
	t0 := time.Now()
	msgs, err := q.Receive(ctxT(t), name, queue.ReceiveOptions{WaitTime: time.Second, MaxMessages: 10})
	elapsed := time.Since(t0)
	if err != nil || len(msgs) != 0 {
		t.Fatalf("Receive on an empty queue: %d messages, %v; want none and no error", len(msgs), err)
	}
	if elapsed < 900*time.Millisecond {
		t.Fatalf("Receive with a 1s wait returned after %s: it did not wait", elapsed)
	}
}

func testLongPollCancel(t *testing.T, s *suite) {
	q := s.new(t)
	name := s.name("cancel")
	create(t, q, name, 30*time.Second)
	ctx, cancel := context.WithCancel(ctxT(t))
	time.AfterFunc(200*time.Millisecond, cancel)
	_, err := q.Receive(ctx, name, queue.ReceiveOptions{WaitTime: queue.MaxWait})
	expectErr(t, "Receive cancelled during its long poll", err, context.Canceled)
}

func testDeleteQueue(t *testing.T, s *suite) {
	q := s.new(t)
	ctx := ctxT(t)
	name := s.name("doomed")
	create(t, q, name, 30*time.Second)
	send(t, q, name, "lost with the queue")
	if err := q.DeleteQueue(ctx, name); err != nil {
		t.Fatalf("DeleteQueue: %v", err)
	}
	_, err := q.Send(ctx, name, "x")
	expectErr(t, "Send to a deleted queue", err, queue.ErrQueueNotFound)
	_, err = q.Receive(ctx, name, queue.ReceiveOptions{})
	expectErr(t, "Receive from a deleted queue", err, queue.ErrQueueNotFound)
	names, err := q.ListQueues(ctx, s.prefix)
	if err != nil {
		t.Fatalf("ListQueues: %v", err)
	}
	if slices.Contains(names, name) {
		t.Fatalf("ListQueues still lists the deleted queue: %v", names)
	}
	err = q.DeleteQueue(ctx, name)
	expectErr(t, "DeleteQueue twice", err, queue.ErrQueueNotFound)
	// Another client, with nothing cached, sees the same.
	other := s.new(t)
	_, err = other.Send(ctx, name, "x")
	expectErr(t, "Send to a deleted queue from another client", err, queue.ErrQueueNotFound)
}

func testMissingQueue(t *testing.T, s *suite) {
	q := s.new(t)
	ctx := ctxT(t)
	name := s.name("never-created")
	_, err := q.Send(ctx, name, "x")
	expectErr(t, "Send", err, queue.ErrQueueNotFound)
	_, err = q.SendBatch(ctx, name, []queue.SendEntry{{ID: "a", Body: "x"}})
	expectErr(t, "SendBatch", err, queue.ErrQueueNotFound)
	_, err = q.Receive(ctx, name, queue.ReceiveOptions{WaitTime: time.Second})
	expectErr(t, "Receive", err, queue.ErrQueueNotFound)
	err = q.DeleteMessage(ctx, name, "1.1")
	expectErr(t, "DeleteMessage", err, queue.ErrQueueNotFound)
	_, err = q.DeleteMessageBatch(ctx, name, []queue.DeleteEntry{{ID: "a", Receipt: "1.1"}})
	expectErr(t, "DeleteMessageBatch", err, queue.ErrQueueNotFound)
	err = q.ChangeVisibility(ctx, name, "1.1", time.Second)
	expectErr(t, "ChangeVisibility", err, queue.ErrQueueNotFound)
	_, err = q.QueueAttributes(ctx, name)
	expectErr(t, "QueueAttributes", err, queue.ErrQueueNotFound)
	err = q.DeleteQueue(ctx, name)
	expectErr(t, "DeleteQueue", err, queue.ErrQueueNotFound)
}

func testOversize(t *testing.T, s *suite) {
	q := s.new(t)
	ctx := ctxT(t)
	counter, counts := q.(RequestCounter)
	var before int64
	if counts {
		before = counter.Requests()
	}
	big := strings.Repeat("y", queue.MaxMessageSize+1)
	// The queue does not even exist: the size is checked first, locally.
	_, err := q.Send(ctx, s.name("missing"), big)
	expectErr(t, "Send of MaxMessageSize+1 bytes", err, queue.ErrMessageTooLarge)
	res, err := q.SendBatch(ctx, s.name("missing"), []queue.SendEntry{{ID: "big", Body: big}})
	if err != nil || len(res) != 1 {
		t.Fatalf("SendBatch of one oversize entry: %v, %d results", err, len(res))
	}
	expectErr(t, "SendBatch entry of MaxMessageSize+1 bytes", res[0].Err, queue.ErrMessageTooLarge)
	if counts {
		if n := counter.Requests() - before; n != 0 {
			t.Fatalf("refusing oversize messages cost %d requests, want 0", n)
		}
	}
	// Exactly the limit is fine, and arrives whole.
	name := s.name("limit")
	create(t, q, name, 30*time.Second)
	limit := strings.Repeat("z", queue.MaxMessageSize)
	send(t, q, name, limit)
	if m := receiveOne(t, q, name, 5*time.Second); m.Body != limit {
		t.Fatalf("received %d bytes, want %d", len(m.Body), len(limit))
	}
}

func testInvalidArguments(t *testing.T, s *suite) {
	q := s.new(t)
	ctx := ctxT(t)
	for _, bad := range []string{"", "has space", "slash/y", strings.Repeat("n", 81)} {
		err := q.CreateQueue(ctx, bad, queue.QueueOptions{})
		expectErr(t, "CreateQueue("+bad+")", err, queue.ErrInvalidArgument)
	}
	name := s.name("args")
	create(t, q, name, 30*time.Second)
	_, err := q.Send(ctx, name, "")
	expectErr(t, "Send of an empty body", err, queue.ErrInvalidArgument)
	_, err = q.Send(ctx, name, "bell \x07")
	expectErr(t, "Send of a control character", err, queue.ErrInvalidArgument)
	_, err = q.Receive(ctx, name, queue.ReceiveOptions{WaitTime: 21 * time.Second})
	expectErr(t, "Receive with a 21s wait", err, queue.ErrInvalidArgument)
	err = q.ChangeVisibility(ctx, name, "x", -time.Second)
	expectErr(t, "ChangeVisibility(-1s)", err, queue.ErrInvalidArgument)
}

func testListByPrefix(t *testing.T, s *suite) {
	q := s.new(t)
	ctx := ctxT(t)
	want := []string{s.name("web-1"), s.name("web-2"), s.name("web-10")}
	for _, n := range append(slices.Clone(want), s.name("db-1"), s.name("Web-3")) {
		create(t, q, n, 30*time.Second)
	}
	got, err := q.ListQueues(ctx, s.name("web-"))
	if err != nil {
		t.Fatalf("ListQueues: %v", err)
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("ListQueues(%q) = %v, want %v", s.name("web-"), got, want)
	}
	all, err := q.ListQueues(ctx, s.prefix)
	if err != nil {
		t.Fatalf("ListQueues: %v", err)
	}
	if len(all) != 5 {
		t.Fatalf("ListQueues(%q) = %v, want 5 queues", s.prefix, all)
	}
}
