// Package queuebench measures the queue backends side by side: the local
// backend (with its receiver in another process where it matters) and the
// sqs backend against fauxqs on loopback.
//
//	go test -run '^$' -bench . -benchtime 1x ./core/queue/...
//
// Each benchmark repeats its work internally and reports its own metrics, so
// -benchtime 1x is the intended setting.
package queuebench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rosterhq/roster/core/queue"
	"github.com/rosterhq/roster/core/queue/fauxqs"
	"github.com/rosterhq/roster/core/queue/local"
	"github.com/rosterhq/roster/core/queue/sqs"
)

const childEnv = "ROSTER_QUEUEBENCH_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "receiver" {
		os.Exit(childReceiver(os.Getenv("DIR")))
	}
	os.Exit(m.Run())
}

// backend opens one client of a backend; every call reaches the same store.
type backend struct {
	name string
	open func(b *testing.B) queue.Queue
	// dir is the local backend's directory, for the child process.
	dir string
}

func backends(b *testing.B) []backend {
	dir := b.TempDir()
	var endpoint string
	var once sync.Once
	return []backend{
		{name: "local", dir: dir, open: func(b *testing.B) queue.Queue {
			q, err := local.Open(dir, local.Options{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { q.Close() })
			return q
		}},
		{name: "sqs-fauxqs", open: func(b *testing.B) queue.Queue {
			once.Do(func() { endpoint = fauxqs.Start(b) })
			return openSQS(b, endpoint)
		}},
	}
}

func openSQS(b *testing.B, endpoint string) *sqs.Queue {
	q, err := sqs.New(context.Background(), sqs.Options{
		Region: fauxqs.Region, Endpoint: endpoint, Credentials: fauxqs.Credentials(),
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { q.Close() })
	return q
}

func mustCreate(b *testing.B, q queue.Queue, names ...string) {
	for _, n := range names {
		if err := q.CreateQueue(context.Background(), n, queue.QueueOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p / 100 * float64(len(sorted)-1))
	return sorted[i]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// childReceiver long-polls "ping" in dir; for each message it replies on
// "pong" with how long the message took from its Send (the body carries the
// send time) to its Receive.
func childReceiver(dir string) int {
	q, err := local.Open(dir, local.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer q.Close()
	if err := receiver(context.Background(), q); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func receiver(ctx context.Context, q queue.Queue) error {
	for {
		msgs, err := q.Receive(ctx, "ping", queue.ReceiveOptions{WaitTime: queue.MaxWait})
		if err != nil {
			return err
		}
		for _, m := range msgs {
			got := time.Now()
			if m.Body == "stop" {
				return q.DeleteMessage(ctx, "ping", m.Receipt)
			}
			sent, err := strconv.ParseInt(m.Body, 10, 64)
			if err != nil {
				return err
			}
			if err := q.DeleteMessage(ctx, "ping", m.Receipt); err != nil {
				return err
			}
			if _, err := q.Send(ctx, "pong", strconv.FormatInt(got.UnixNano()-sent, 10)); err != nil {
				return err
			}
		}
	}
}

// BenchmarkWakeLatency: send→receive latency with a receiver already waiting
// in its long poll. For local the receiver is another process.
func BenchmarkWakeLatency(b *testing.B) {
	for _, be := range backends(b) {
		b.Run(be.name, func(b *testing.B) {
			ctx := context.Background()
			q := be.open(b)
			mustCreate(b, q, "ping", "pong")
			rounds := 400
			if be.dir != "" {
				cmd := exec.Command(os.Args[0], "-test.run=^$")
				cmd.Env = append(os.Environ(), childEnv+"=receiver", "DIR="+be.dir)
				cmd.Stderr = os.Stderr
				if err := cmd.Start(); err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
			} else {
				rounds = 200
				rq := be.open(b)
				go func() { _ = receiver(ctx, rq) }()
			}
			var lat []time.Duration
			b.ResetTimer()
			for i := 0; i < rounds+10; i++ {
				// Let the receiver get back into its long poll.
				time.Sleep(2 * time.Millisecond)
				if _, err := q.Send(ctx, "ping", strconv.FormatInt(time.Now().UnixNano(), 10)); err != nil {
					b.Fatal(err)
				}
				msgs, err := q.Receive(ctx, "pong", queue.ReceiveOptions{WaitTime: queue.MaxWait})
				if err != nil || len(msgs) != 1 {
					b.Fatalf("pong: %v, %v", msgs, err)
				}
				n, _ := strconv.ParseInt(msgs[0].Body, 10, 64)
				if err := q.DeleteMessage(ctx, "pong", msgs[0].Receipt); err != nil {
					b.Fatal(err)
				}
				if i >= 10 { // the first rounds warm up
					lat = append(lat, time.Duration(n))
				}
			}
			b.StopTimer()
			if _, err := q.Send(ctx, "ping", "stop"); err != nil {
				b.Fatal(err)
			}
			slices.Sort(lat)
			b.ReportMetric(ms(percentile(lat, 50)), "p50-ms")
			b.ReportMetric(ms(percentile(lat, 99)), "p99-ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// BenchmarkRoundTrips: one client sends, receives and deletes, one message
// at a time.
func BenchmarkRoundTrips(b *testing.B) {
	for _, be := range backends(b) {
		b.Run(be.name, func(b *testing.B) {
			ctx := context.Background()
			q := be.open(b)
			mustCreate(b, q, "rt")
			counter, _ := q.(interface{ Requests() int64 })
			var before int64
			if counter != nil {
				before = counter.Requests()
			}
			const budget = 3 * time.Second
			n := 0
			b.ResetTimer()
			start := time.Now()
			for time.Since(start) < budget {
				if _, err := q.Send(ctx, "rt", "round trip"); err != nil {
					b.Fatal(err)
				}
				msgs, err := q.Receive(ctx, "rt", queue.ReceiveOptions{WaitTime: time.Second})
				if err != nil || len(msgs) != 1 {
					b.Fatalf("receive: %v, %v", msgs, err)
				}
				if err := q.DeleteMessage(ctx, "rt", msgs[0].Receipt); err != nil {
					b.Fatal(err)
				}
				n++
			}
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(n)/elapsed.Seconds(), "roundtrips/s")
			if counter != nil {
				b.ReportMetric(float64(counter.Requests()-before)/float64(n), "requests/roundtrip")
			}
			b.ReportMetric(0, "ns/op")
		})
	}
}

// BenchmarkBatched: one client moves messages ten at a time with SendBatch,
// Receive of up to ten, and DeleteMessageBatch.
func BenchmarkBatched(b *testing.B) {
	for _, be := range backends(b) {
		b.Run(be.name, func(b *testing.B) {
			ctx := context.Background()
			q := be.open(b)
			mustCreate(b, q, "batch")
			entries := make([]queue.SendEntry, queue.MaxBatch)
			for i := range entries {
				entries[i] = queue.SendEntry{ID: strconv.Itoa(i), Body: "batched message " + strings.Repeat("x", 100)}
			}
			const budget = 3 * time.Second
			moved := 0
			b.ResetTimer()
			start := time.Now()
			for time.Since(start) < budget {
				res, err := q.SendBatch(ctx, "batch", entries)
				if err != nil {
					b.Fatal(err)
				}
				for _, r := range res {
					if r.Err != nil {
						b.Fatal(r.Err)
					}
				}
				got := 0
				for got < len(entries) {
					msgs, err := q.Receive(ctx, "batch", queue.ReceiveOptions{MaxMessages: queue.MaxBatch, WaitTime: time.Second})
					if err != nil || len(msgs) == 0 {
						b.Fatalf("receive: %v, %v", msgs, err)
					}
					del := make([]queue.DeleteEntry, len(msgs))
					for i, m := range msgs {
						del[i] = queue.DeleteEntry{ID: strconv.Itoa(i), Receipt: m.Receipt}
					}
					if _, err := q.DeleteMessageBatch(ctx, "batch", del); err != nil {
						b.Fatal(err)
					}
					got += len(msgs)
				}
				moved += got
			}
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(moved)/elapsed.Seconds(), "msgs/s")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// BenchmarkIdleSpareRequests: how many SQS requests an idle spare makes per
// hour. A spare loops Receive with the longest wait (20 s), so at most 180
// polls an hour; this runs the same loop with 2 s waits for a few polls and
// scales the requests per poll up to the 20 s poll rate.
func BenchmarkIdleSpareRequests(b *testing.B) {
	endpoint := fauxqs.Start(b)
	q := openSQS(b, endpoint)
	ctx := context.Background()
	mustCreate(b, q, "global")
	const wait, polls = 2 * time.Second, 4
	before := q.Requests()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < polls; i++ {
		msgs, err := q.Receive(ctx, "global", queue.ReceiveOptions{WaitTime: wait, MaxMessages: queue.MaxBatch})
		if err != nil || len(msgs) != 0 {
			b.Fatalf("idle receive: %v, %v", msgs, err)
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	perPoll := float64(q.Requests()-before) / polls
	if elapsed < polls*wait*9/10 {
		b.Fatalf("%d polls of %s took %s: the long poll did not wait", polls, wait, elapsed)
	}
	b.ReportMetric(perPoll*float64(time.Hour/queue.MaxWait), "requests/h")
	b.ReportMetric(perPoll, "requests/poll")
	b.ReportMetric(0, "ns/op")
}
