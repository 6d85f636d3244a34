package sqs_test

import (
	"context"
	"testing"

	"github.com/rosterhq/roster/core/queue"
	"github.com/rosterhq/roster/core/queue/fauxqs"
	"github.com/rosterhq/roster/core/queue/queuetest"
	"github.com/rosterhq/roster/core/queue/sqs"
)

func open(t testing.TB, endpoint string) *sqs.Queue {
	t.Helper()
	q, err := sqs.New(context.Background(), sqs.Options{
		Region:      fauxqs.Region,
		Endpoint:    endpoint,
		Credentials: fauxqs.Credentials(),
		MaxAttempts: 3,
	})
	if err != nil {
		t.Fatalf("sqs.New: %v", err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

func TestConformance(t *testing.T) {
	endpoint := fauxqs.Start(t)
	queuetest.Run(t, func(t *testing.T) queue.Queue { return open(t, endpoint) })
}
