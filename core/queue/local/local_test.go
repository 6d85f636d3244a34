package local_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rosterhq/roster/core/queue"
	"github.com/rosterhq/roster/core/queue/local"
	"github.com/rosterhq/roster/core/queue/queuetest"
)

func open(t testing.TB, dir string, opts local.Options) *local.Queue {
	t.Helper()
	q, err := local.Open(dir, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() {
		if err := q.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return q
}

func TestConformance(t *testing.T) {
	dir := t.TempDir()
	queuetest.Run(t, func(t *testing.T) queue.Queue { return open(t, dir, local.Options{}) })
}

func mustCreate(t *testing.T, q queue.Queue, name string, vis time.Duration) {
	t.Helper()
	if err := q.CreateQueue(context.Background(), name, queue.QueueOptions{VisibilityTimeout: vis}); err != nil {
		t.Fatalf("CreateQueue(%s): %v", name, err)
	}
}

// receiveAsync starts a long poll and returns where its outcome arrives.
func receiveAsync(q queue.Queue, name string, wait time.Duration) <-chan receiveResult {
	ch := make(chan receiveResult, 1)
	go func() {
		msgs, err := q.Receive(context.Background(), name, queue.ReceiveOptions{WaitTime: wait})
		ch <- receiveResult{msgs, err}
	}()
	return ch
}

type receiveResult struct {
	msgs []queue.Message
	err  error
}

// Every test below sets the fallback re-check to an hour: only the wake-up
// paths under test can end the waits in time.

func TestWakeAcrossInstances(t *testing.T) {
	dir := t.TempDir()
	a := open(t, dir, local.Options{Recheck: time.Hour})
	b := open(t, dir, local.Options{Recheck: time.Hour})
	mustCreate(t, a, "q", 0)
	ch := receiveAsync(a, "q", queue.MaxWait)
	time.Sleep(100 * time.Millisecond)
	if _, err := b.Send(context.Background(), "q", "hi"); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-ch:
		if r.err != nil || len(r.msgs) != 1 {
			t.Fatalf("Receive: %v, %v", r.msgs, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a send through another instance did not wake the receiver")
	}
}

func TestWaiterGetsRedeliveryOnTime(t *testing.T) {
	q := open(t, t.TempDir(), local.Options{Recheck: time.Hour})
	ctx := context.Background()
	mustCreate(t, q, "q", time.Second)
	if _, err := q.Send(ctx, "q", "x"); err != nil {
		t.Fatal(err)
	}
	if msgs, err := q.Receive(ctx, "q", queue.ReceiveOptions{}); err != nil || len(msgs) != 1 {
		t.Fatalf("Receive: %v, %v", msgs, err)
	}
	select {
	case r := <-receiveAsync(q, "q", queue.MaxWait):
		if r.err != nil || len(r.msgs) != 1 || r.msgs[0].ReceiveCount != 2 {
			t.Fatalf("Receive: %+v, %v", r.msgs, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting receiver did not get the message when its visibility timeout ended")
	}
}

func TestReleaseWakesWaiter(t *testing.T) {
	dir := t.TempDir()
	a := open(t, dir, local.Options{Recheck: time.Hour})
	b := open(t, dir, local.Options{Recheck: time.Hour})
	ctx := context.Background()
	mustCreate(t, a, "q", time.Hour)
	if _, err := a.Send(ctx, "q", "x"); err != nil {
		t.Fatal(err)
	}
	msgs, err := a.Receive(ctx, "q", queue.ReceiveOptions{})
	if err != nil || len(msgs) != 1 {
		t.Fatalf("Receive: %v, %v", msgs, err)
	}
	ch := receiveAsync(b, "q", queue.MaxWait)
	time.Sleep(100 * time.Millisecond)
	if err := a.ChangeVisibility(ctx, "q", msgs[0].Receipt, 0); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-ch:
		if r.err != nil || len(r.msgs) != 1 {
			t.Fatalf("Receive: %v, %v", r.msgs, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("releasing a message did not wake the receiver in the other instance")
	}
}

func TestDeleteQueueWakesWaiter(t *testing.T) {
	dir := t.TempDir()
	a := open(t, dir, local.Options{Recheck: time.Hour})
	b := open(t, dir, local.Options{Recheck: time.Hour})
	mustCreate(t, a, "q", 0)
	ch := receiveAsync(a, "q", queue.MaxWait)
	time.Sleep(100 * time.Millisecond)
	if err := b.DeleteQueue(context.Background(), "q"); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-ch:
		if !errors.Is(r.err, queue.ErrQueueNotFound) {
			t.Fatalf("Receive on a deleted queue: %v, %v; want ErrQueueNotFound", r.msgs, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("deleting the queue did not wake its receiver")
	}
}

func TestCloseWakesWaiter(t *testing.T) {
	q, err := local.Open(t.TempDir(), local.Options{Recheck: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, q, "q", 0)
	ch := receiveAsync(q, "q", queue.MaxWait)
	time.Sleep(100 * time.Millisecond)
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-ch:
		if !errors.Is(r.err, queue.ErrClosed) {
			t.Fatalf("Receive during Close: %v; want ErrClosed", r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end the long poll")
	}
	if _, err := q.Send(context.Background(), "q", "x"); !errors.Is(err, queue.ErrClosed) {
		t.Fatalf("Send after Close: %v; want ErrClosed", err)
	}
	if err := q.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestDeletedNameIsRefusedForAWhile(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	q := open(t, dir, local.Options{})
	mustCreate(t, q, "gone", 0)
	if err := q.DeleteQueue(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	if err := q.CreateQueue(ctx, "gone", queue.QueueOptions{}); !errors.Is(err, queue.ErrQueueDeletedRecently) {
		t.Fatalf("re-create right after delete: %v; want ErrQueueDeletedRecently", err)
	}
	// With the delay disabled the name is free at once, and the new queue
	// is empty.
	free := open(t, dir, local.Options{ReuseDelay: -1})
	mustCreate(t, free, "gone", 0)
	if msgs, err := free.Receive(ctx, "gone", queue.ReceiveOptions{}); err != nil || len(msgs) != 0 {
		t.Fatalf("Receive on the re-created queue: %v, %v; want nothing", msgs, err)
	}
}

func TestMessagesSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	q, err := local.Open(dir, local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, q, "keep", 0)
	id, err := q.Send(ctx, "keep", "still here")
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	again := open(t, dir, local.Options{})
	msgs, err := again.Receive(ctx, "keep", queue.ReceiveOptions{})
	if err != nil || len(msgs) != 1 || msgs[0].ID != id || msgs[0].Body != "still here" {
		t.Fatalf("after reopening: %+v, %v", msgs, err)
	}
}

// TestRelativeDirectory: a directory given relative to the working
// directory (roster agent -queue-dir q) is the same queue as its absolute
// path.
func TestRelativeDirectory(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	ctx := context.Background()
	rel := open(t, "q", local.Options{})
	mustCreate(t, rel, "jobs", 0)
	if _, err := rel.Send(ctx, "jobs", "hello"); err != nil {
		t.Fatal(err)
	}
	abs := open(t, filepath.Join(dir, "q"), local.Options{})
	msgs, err := abs.Receive(ctx, "jobs", queue.ReceiveOptions{})
	if err != nil || len(msgs) != 1 || msgs[0].Body != "hello" {
		t.Fatalf("through the absolute path: %+v, %v", msgs, err)
	}
}

func TestStaleReceiptDeletesNothing(t *testing.T) {
	q := open(t, t.TempDir(), local.Options{})
	ctx := context.Background()
	mustCreate(t, q, "q", time.Hour)
	if _, err := q.Send(ctx, "q", "x"); err != nil {
		t.Fatal(err)
	}
	first, err := q.Receive(ctx, "q", queue.ReceiveOptions{})
	if err != nil || len(first) != 1 {
		t.Fatal(first, err)
	}
	if err := q.ChangeVisibility(ctx, "q", first[0].Receipt, 0); err != nil {
		t.Fatal(err)
	}
	second, err := q.Receive(ctx, "q", queue.ReceiveOptions{})
	if err != nil || len(second) != 1 {
		t.Fatal(second, err)
	}
	if err := q.DeleteMessage(ctx, "q", first[0].Receipt); !errors.Is(err, queue.ErrInvalidReceipt) {
		t.Fatalf("delete with the first delivery's receipt: %v; want ErrInvalidReceipt", err)
	}
	res, err := q.DeleteMessageBatch(ctx, "q", []queue.DeleteEntry{{ID: "old", Receipt: first[0].Receipt}, {ID: "new", Receipt: second[0].Receipt}})
	if err != nil || !errors.Is(res[0].Err, queue.ErrInvalidReceipt) || res[1].Err != nil {
		t.Fatalf("DeleteMessageBatch: %+v, %v; want the old receipt refused and the new one accepted", res, err)
	}
}

func TestCloseReleasesDescriptors(t *testing.T) {
	dir := t.TempDir()
	fds := func() int {
		entries, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skipf("cannot count descriptors: %v", err)
		}
		return len(entries)
	}
	ctx := context.Background()
	cycle := func() {
		q, err := local.Open(dir, local.Options{})
		if err != nil {
			t.Fatal(err)
		}
		_ = q.CreateQueue(ctx, "q", queue.QueueOptions{})
		if _, err := q.Send(ctx, "q", "x"); err != nil {
			t.Fatal(err)
		}
		if _, err := q.Receive(ctx, "q", queue.ReceiveOptions{MaxMessages: 10}); err != nil {
			t.Fatal(err)
		}
		if err := q.Close(); err != nil {
			t.Fatal(err)
		}
	}
	cycle() // the first cycle creates the files
	before := fds()
	for i := 0; i < 20; i++ {
		cycle()
	}
	if after := fds(); after > before {
		t.Fatalf("%d descriptors open after 20 open/close cycles, %d before", after, before)
	}
}
