package sqs_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rosterhq/roster/core/queue"
	"github.com/rosterhq/roster/core/queue/fauxqs"
	"github.com/rosterhq/roster/core/queue/sqs"
)

// fakeSQS answers each action (X-Amz-Target) with a canned JSON response and
// counts the calls per action.
type fakeSQS struct {
	mu      sync.Mutex
	calls   map[string]int
	answers map[string]func() (int, string)
}

func (f *fakeSQS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	action := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "AmazonSQS.")
	f.mu.Lock()
	f.calls[action]++
	answer := f.answers[action]
	f.mu.Unlock()
	status, body := http.StatusBadRequest, `{"__type":"com.amazonaws.sqs#InvalidAction","message":"unexpected"}`
	if answer != nil {
		status, body = answer()
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

func (f *fakeSQS) count(action string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[action]
}

func sqsError(code, msg string) func() (int, string) {
	return func() (int, string) {
		return http.StatusBadRequest, fmt.Sprintf(`{"__type":"com.amazonaws.sqs#%s","message":%q}`, code, msg)
	}
}

func startFake(t *testing.T, answers map[string]func() (int, string)) (*fakeSQS, *sqs.Queue) {
	t.Helper()
	f := &fakeSQS{calls: map[string]int{}, answers: answers}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	q, err := sqs.New(context.Background(), sqs.Options{
		Region:      fauxqs.Region,
		Endpoint:    srv.URL,
		Credentials: fauxqs.Credentials(),
		MaxAttempts: 3,
		MaxBackoff:  10 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return f, q
}

func TestThrottlingIsRetriedThenReported(t *testing.T) {
	f, q := startFake(t, map[string]func() (int, string){
		"CreateQueue": sqsError("RequestThrottled", "Rate exceeded"),
	})
	err := q.CreateQueue(context.Background(), "busy", queue.QueueOptions{})
	if !errors.Is(err, queue.ErrThrottled) {
		t.Fatalf("CreateQueue: %v; want ErrThrottled", err)
	}
	if n := f.count("CreateQueue"); n != 3 {
		t.Fatalf("CreateQueue was tried %d times, want 3 (MaxAttempts)", n)
	}
	if n := q.Requests(); n != 3 {
		t.Fatalf("Requests() = %d, want 3", n)
	}
}

func TestDeletedRecentlyIsMapped(t *testing.T) {
	f, q := startFake(t, map[string]func() (int, string){
		"CreateQueue": sqsError("QueueDeletedRecently", "You must wait 60 seconds after deleting a queue before you can create another with the same name."),
	})
	err := q.CreateQueue(context.Background(), "web-3-abc", queue.QueueOptions{})
	if !errors.Is(err, queue.ErrQueueDeletedRecently) {
		t.Fatalf("CreateQueue: %v; want ErrQueueDeletedRecently", err)
	}
	if !strings.Contains(err.Error(), "web-3-abc") {
		t.Fatalf("the error does not name the queue: %v", err)
	}
	if n := f.count("CreateQueue"); n != 1 {
		t.Fatalf("CreateQueue was tried %d times; a non-retryable error must be tried once", n)
	}
}

func TestMissingQueueDropsCachedURL(t *testing.T) {
	f, q := startFake(t, map[string]func() (int, string){
		"GetQueueUrl": func() (int, string) {
			return http.StatusOK, `{"QueueUrl":"http://127.0.0.1/000000000000/gone"}`
		},
		"SendMessage": sqsError("QueueDoesNotExist", "The specified queue does not exist."),
	})
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		if _, err := q.Send(ctx, "gone", "x"); !errors.Is(err, queue.ErrQueueNotFound) {
			t.Fatalf("Send #%d: %v; want ErrQueueNotFound", i+1, err)
		}
	}
	// The URL was looked up again after the queue was found missing.
	if n := f.count("GetQueueUrl"); n != 2 {
		t.Fatalf("GetQueueUrl called %d times, want 2", n)
	}
}

func TestInvalidReceiptIsMapped(t *testing.T) {
	_, q := startFake(t, map[string]func() (int, string){
		"GetQueueUrl": func() (int, string) {
			return http.StatusOK, `{"QueueUrl":"http://127.0.0.1/000000000000/q"}`
		},
		"DeleteMessage": sqsError("ReceiptHandleIsInvalid", "The input receipt handle is invalid."),
		"DeleteMessageBatch": func() (int, string) {
			return http.StatusOK, `{"Successful":[{"Id":"a"}],"Failed":[{"Id":"b","Code":"ReceiptHandleIsInvalid","Message":"bad","SenderFault":true}]}`
		},
	})
	ctx := context.Background()
	if err := q.DeleteMessage(ctx, "q", "junk"); !errors.Is(err, queue.ErrInvalidReceipt) {
		t.Fatalf("DeleteMessage: %v; want ErrInvalidReceipt", err)
	}
	res, err := q.DeleteMessageBatch(ctx, "q", []queue.DeleteEntry{{ID: "a", Receipt: "r1"}, {ID: "b", Receipt: "r2"}})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Err != nil || !errors.Is(res[1].Err, queue.ErrInvalidReceipt) {
		t.Fatalf("DeleteMessageBatch results %+v; want a ok, b ErrInvalidReceipt", res)
	}
}

func TestRequestsAreCounted(t *testing.T) {
	q := open(t, fauxqs.Start(t))
	ctx := context.Background()
	before := q.Requests()
	if err := q.CreateQueue(ctx, "counted", queue.QueueOptions{}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := q.Send(ctx, "counted", "x"); err != nil {
			t.Fatal(err)
		}
	}
	// CreateQueue cached the URL: one request each, none to look it up.
	if n := q.Requests() - before; n != 4 {
		t.Fatalf("4 calls made %d requests, want 4", n)
	}
}
