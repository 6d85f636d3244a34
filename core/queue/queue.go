// Package queue is the transport between the orchestrator and the agents: one
// interface with the semantics of Amazon SQS standard queues (at-least-once
// delivery, visibility timeouts, long polling, batches of up to ten), served by
// the embedded `local` backend (queue/local) and by Amazon SQS (queue/sqs).
// Both pass the one conformance suite in queue/queuetest.
//
// Queues are named, not addressed by URL: the sqs backend resolves and caches
// URLs itself. Bodies are text (SQS accepts only valid Unicode), at most
// MaxMessageSize bytes; a larger body is refused before any call is made.
package queue

import (
	"context"
	"errors"
	"time"
)

// Limits shared by every backend; they are Amazon SQS's.
const (
	// MaxMessageSize is the largest body a message may carry, in bytes.
	MaxMessageSize = 256 * 1024
	// MaxBatch is the most entries a batch call takes, and the most messages
	// one Receive returns.
	MaxBatch = 10
	// MaxWait is the longest a Receive may long-poll.
	MaxWait = 20 * time.Second
	// DefaultVisibilityTimeout applies when a queue is created without one.
	DefaultVisibilityTimeout = 30 * time.Second
)

// Errors every backend returns (wrapped with detail); test with errors.Is.
var (
	// ErrQueueNotFound: the queue does not exist.
	ErrQueueNotFound = errors.New("queue does not exist")
	// ErrQueueDeletedRecently: the name belonged to a queue deleted less than
	// 60 seconds ago (SQS refuses it); Roster never reuses a queue name.
	ErrQueueDeletedRecently = errors.New("queue name was deleted less than 60 seconds ago")
	// ErrMessageTooLarge: the body is larger than MaxMessageSize.
	ErrMessageTooLarge = errors.New("message body is larger than 256 KiB")
	// ErrInvalidReceipt: the receipt handle is unknown or has expired.
	ErrInvalidReceipt = errors.New("receipt handle is invalid")
	// ErrThrottled: the service asked us to slow down, and retries with
	// backoff did not get through.
	ErrThrottled = errors.New("request was throttled")
	// ErrTooManyEntries: a batch had more than MaxBatch entries or none.
	ErrTooManyEntries = errors.New("a batch takes 1 to 10 entries")
	// ErrInvalidArgument: a name, option or entry id is not acceptable.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrQueueExists: CreateQueue found the queue with different options.
	ErrQueueExists = errors.New("queue exists with different options")
	// ErrClosed: the backend was closed.
	ErrClosed = errors.New("queue backend is closed")
)

// Queue is a set of named message queues.
type Queue interface {
	// CreateQueue creates the named queue, or does nothing when it exists
	// with the same options.
	CreateQueue(ctx context.Context, name string, opts QueueOptions) error
	// DeleteQueue deletes the queue and every message on it.
	DeleteQueue(ctx context.Context, name string) error
	// ListQueues returns the names of the queues whose names begin with prefix.
	ListQueues(ctx context.Context, prefix string) ([]string, error)
	// QueueAttributes returns the queue's options and approximate counts.
	QueueAttributes(ctx context.Context, name string) (Attributes, error)

	// Send puts one message on the queue and returns its id.
	Send(ctx context.Context, queue, body string) (string, error)
	// SendBatch puts up to MaxBatch messages on the queue; the result has
	// one entry per input entry, in order, each with its own error.
	SendBatch(ctx context.Context, queue string, entries []SendEntry) ([]BatchResult, error)
	// Receive returns up to opts.MaxMessages messages, waiting up to
	// opts.WaitTime for the first one. Received messages are invisible to
	// other receivers for the visibility timeout, then delivered again
	// unless deleted.
	Receive(ctx context.Context, queue string, opts ReceiveOptions) ([]Message, error)
	// DeleteMessage deletes a received message by its receipt handle.
	DeleteMessage(ctx context.Context, queue, receipt string) error
	// DeleteMessageBatch deletes up to MaxBatch messages; per-entry results.
	DeleteMessageBatch(ctx context.Context, queue string, entries []DeleteEntry) ([]BatchResult, error)
	// ChangeVisibility sets how long from now a received message stays
	// invisible: longer to extend a lease during long work, zero to release
	// it at once.
	ChangeVisibility(ctx context.Context, queue, receipt string, timeout time.Duration) error

	// Close releases the backend's resources.
	Close() error
}

// QueueOptions are set when a queue is created.
type QueueOptions struct {
	// VisibilityTimeout is how long a received message stays invisible;
	// zero means DefaultVisibilityTimeout.
	VisibilityTimeout time.Duration
	// Tags are attached to the queue where the backend supports it.
	Tags map[string]string
}

// Attributes describe a queue.
type Attributes struct {
	VisibilityTimeout time.Duration
	// ApproximateMessages is the number of messages available to receive.
	ApproximateMessages int
	// ApproximateInFlight is the number received and not yet deleted or
	// visible again.
	ApproximateInFlight int
	CreatedAt           time.Time
}

// ReceiveOptions tune one Receive.
type ReceiveOptions struct {
	// MaxMessages is 1..MaxBatch; zero means 1.
	MaxMessages int
	// WaitTime is how long to long-poll for the first message, 0..MaxWait.
	WaitTime time.Duration
	// VisibilityTimeout overrides the queue's for these messages; zero
	// keeps the queue's.
	VisibilityTimeout time.Duration
}

// Message is a received message.
type Message struct {
	ID string
	// Receipt identifies this delivery; it deletes the message or changes
	// its visibility.
	Receipt string
	Body    string
	// ReceiveCount is how many times the message has been received,
	// this time included.
	ReceiveCount int
	// SentAt is when the queue accepted the message.
	SentAt time.Time
}

// SendEntry is one message of a SendBatch.
type SendEntry struct {
	// ID identifies the entry within the batch (not the message).
	ID   string
	Body string
}

// DeleteEntry is one message of a DeleteMessageBatch.
type DeleteEntry struct {
	ID      string
	Receipt string
}

// BatchResult is the outcome of one batch entry.
type BatchResult struct {
	// ID is the entry's id from the request.
	ID string
	// MessageID is the new message's id, for SendBatch.
	MessageID string
	// Err is nil when the entry succeeded.
	Err error
}
