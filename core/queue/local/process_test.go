package local_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rosterhq/roster/core/queue"
	"github.com/rosterhq/roster/core/queue/local"
)

// The test binary doubles as the helper process: re-executed with
// childEnv set, it runs one of the child roles below instead of the tests.
const childEnv = "ROSTER_LOCAL_QUEUE_CHILD"

func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "":
		os.Exit(m.Run())
	case "send":
		os.Exit(childSend())
	case "churn":
		os.Exit(childChurn())
	default:
		fmt.Fprintf(os.Stderr, "unknown %s=%q\n", childEnv, os.Getenv(childEnv))
		os.Exit(2)
	}
}

type child struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

// startChild re-executes the test binary in the given role; the child is
// killed, if still running, when the test ends.
func startChild(t *testing.T, role string, env ...string) *child {
	t.Helper()
	c := &child{cmd: exec.Command(os.Args[0], "-test.run=^$"), out: &syncBuffer{}, done: make(chan struct{})}
	c.cmd.Env = append(os.Environ(), append([]string{childEnv + "=" + role}, env...)...)
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start %s child: %v", role, err)
	}
	go func() { _ = c.cmd.Wait(); close(c.done) }()
	t.Cleanup(func() {
		_ = c.cmd.Process.Kill()
		<-c.done
	})
	return c
}

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// childSend sends one message, body $BODY, to $QUEUE in $DIR.
func childSend() int {
	q, err := local.Open(os.Getenv("DIR"), local.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer q.Close()
	if _, err := q.Send(context.Background(), os.Getenv("QUEUE"), os.Getenv("BODY")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// TestCrossProcessWake: a receiver long-polling in this process wakes when
// another process sends. The fallback re-check is an hour, so only the
// inotify bell can wake it in time.
func TestCrossProcessWake(t *testing.T) {
	dir := t.TempDir()
	q := open(t, dir, local.Options{Recheck: time.Hour})
	ctx := context.Background()
	if err := q.CreateQueue(ctx, "wake", queue.QueueOptions{}); err != nil {
		t.Fatal(err)
	}
	type result struct {
		msgs    []queue.Message
		err     error
		elapsed time.Duration
	}
	done := make(chan result, 1)
	go func() {
		t0 := time.Now()
		msgs, err := q.Receive(ctx, "wake", queue.ReceiveOptions{WaitTime: queue.MaxWait})
		done <- result{msgs, err, time.Since(t0)}
	}()
	// Let the receiver reach its wait (it would otherwise find the message
	// on its first look, which proves nothing but fails nothing).
	time.Sleep(200 * time.Millisecond)
	c := startChild(t, "send", "DIR="+dir, "QUEUE=wake", "BODY=from another process")
	out := c.out
	r := <-done
	if r.err != nil {
		t.Fatalf("Receive: %v (child output: %s)", r.err, out)
	}
	if len(r.msgs) != 1 || r.msgs[0].Body != "from another process" {
		t.Fatalf("Receive returned %v, want the child's message (child output: %s)", r.msgs, out)
	}
	if r.elapsed >= queue.MaxWait {
		t.Fatalf("the receiver waited its whole %s: the bell did not wake it", r.elapsed)
	}
}

// childChurn sends, receives and deletes on $QUEUE in $DIR until killed.
// Before each Send returns to the loop it appends "sent <body>" to $LOG; before
// each delete it appends "deleting <body>". Plain writes are enough: the
// kernel keeps what was written when a process is killed.
func childChurn() int {
	q, err := local.Open(os.Getenv("DIR"), local.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	log, err := os.OpenFile(os.Getenv("LOG"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx := context.Background()
	name, gen := os.Getenv("QUEUE"), os.Getenv("GEN")
	fmt.Fprintln(os.Stdout, "ready")
	for n := 0; ; n++ {
		if n%3 == 0 {
			var entries []queue.SendEntry
			for i := 0; i < 5; i++ {
				entries = append(entries, queue.SendEntry{ID: fmt.Sprint("e", i), Body: fmt.Sprintf("%s-%d-%d", gen, n, i)})
			}
			res, err := q.SendBatch(ctx, name, entries)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			for i, r := range res {
				if r.Err == nil {
					fmt.Fprintf(log, "sent %s\n", entries[i].Body)
				}
			}
		} else {
			body := fmt.Sprintf("%s-%d", gen, n)
			if _, err := q.Send(ctx, name, body); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			fmt.Fprintf(log, "sent %s\n", body)
		}
		if n%2 == 1 {
			msgs, err := q.Receive(ctx, name, queue.ReceiveOptions{MaxMessages: 3})
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			for _, m := range msgs {
				fmt.Fprintf(log, "deleting %s\n", m.Body)
				if err := q.DeleteMessage(ctx, name, m.Receipt); err != nil && !errors.Is(err, queue.ErrInvalidReceipt) {
					fmt.Fprintln(os.Stderr, err)
					return 1
				}
			}
		}
	}
}

// TestSIGKILLLosesNothing kills a process that sends, receives and deletes
// at random moments, several times over, and then checks that every message
// whose Send had returned, and that the process had not begun to delete, is
// still delivered.
func TestSIGKILLLosesNothing(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "churn.log")
	setup := open(t, dir, local.Options{})
	ctx := context.Background()
	// A short visibility timeout, so that what a killed child held in
	// flight comes back quickly.
	if err := setup.CreateQueue(ctx, "churn", queue.QueueOptions{VisibilityTimeout: time.Second}); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	const kills = 6
	for gen := 0; gen < kills; gen++ {
		c := startChild(t, "churn", "DIR="+dir, "QUEUE=churn", "LOG="+logPath, fmt.Sprint("GEN=g", gen))
		// Wait until it runs, then let it churn for a random while.
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(c.out.String(), "ready") {
			if time.Now().After(deadline) || c.exited() {
				t.Fatalf("child %d did not start: %s", gen, c.out)
			}
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(time.Duration(20+rng.IntN(300)) * time.Millisecond)
		if c.exited() {
			t.Fatalf("child %d stopped before it was killed: %s", gen, c.out)
		}
		if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatalf("kill child %d: %v", gen, err)
		}
		<-c.done
	}

	sent, deleting := readChurnLog(t, logPath)
	if len(sent) < kills {
		t.Fatalf("the children logged only %d sends", len(sent))
	}
	must := map[string]bool{}
	for body := range sent {
		if !deleting[body] {
			must[body] = true
		}
	}
	// Drain: the in-flight ones come back after their 1 s timeout.
	seen := map[string]bool{}
	deadline := time.Now().Add(20 * time.Second)
	for missing(must, seen) > 0 && time.Now().Before(deadline) {
		msgs, err := setup.Receive(ctx, "churn", queue.ReceiveOptions{MaxMessages: queue.MaxBatch, WaitTime: 2 * time.Second})
		if err != nil {
			t.Fatalf("Receive: %v", err)
		}
		for _, m := range msgs {
			seen[m.Body] = true
			if err := setup.DeleteMessage(ctx, "churn", m.Receipt); err != nil {
				t.Fatalf("DeleteMessage: %v", err)
			}
		}
	}
	if n := missing(must, seen); n > 0 {
		var lost []string
		for b := range must {
			if !seen[b] && len(lost) < 10 {
				lost = append(lost, b)
			}
		}
		t.Fatalf("%d of %d sent messages were lost, e.g. %v", n, len(must), lost)
	}
	t.Logf("%d kills, %d messages sent, %d to find after the kills, all found", kills, len(sent), len(must))
}

func missing(must, seen map[string]bool) int {
	n := 0
	for b := range must {
		if !seen[b] {
			n++
		}
	}
	return n
}

func readChurnLog(t *testing.T, path string) (sent, deleting map[string]bool) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sent, deleting = map[string]bool{}, map[string]bool{}
	lines := strings.Split(string(data), "\n")
	// The last element follows the last newline: empty, or a line a kill
	// cut short, which names nothing.
	for _, line := range lines[:len(lines)-1] {
		switch verb, body, _ := strings.Cut(line, " "); verb {
		case "sent":
			sent[body] = true
		case "deleting":
			deleting[body] = true
		}
	}
	return sent, deleting
}
