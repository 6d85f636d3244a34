// Package sqs is the Amazon SQS queue backend (aws-sdk-go-v2), for fleets
// that span hosts. Queues are addressed by name; the backend resolves each
// name to its URL once and caches it.
//
// Credentials come from the SDK's standard chain (environment, shared config
// and credentials files, SSO, web identity, ECS and EC2 instance roles) unless
// Options.Credentials is set. Every call goes through the SDK's standard
// retryer (exponential backoff with jitter, Options.MaxAttempts attempts);
// errors are mapped to the queue package's (queue.ErrQueueNotFound,
// queue.ErrQueueDeletedRecently, queue.ErrThrottled, queue.ErrInvalidReceipt…)
// and wrap the SDK's error for detail. Arguments are checked before any call:
// an oversized body, a bad name or a bad batch costs no request.
package sqs

import (
	"context"
	"errors"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	"github.com/hashicorp/go-hclog"
	"github.com/rosterhq/roster/core/queue"
)

// Options configure the SQS backend.
type Options struct {
	// Region is the AWS region; empty means the one the standard chain finds
	// (AWS_REGION, the shared config file…).
	Region string
	// Endpoint overrides the service endpoint (BaseEndpoint), e.g.
	// http://127.0.0.1:4566 for a local SQS-compatible server.
	Endpoint string
	// Profile selects a shared config profile; empty means the default.
	Profile string
	// Credentials replaces the standard credential chain when set (tests
	// pass static dummy credentials here).
	Credentials aws.CredentialsProvider
	// MaxAttempts is how many times a call is tried, the first included,
	// with exponential backoff between tries; zero means 5.
	MaxAttempts int
	// MaxBackoff caps the delay between tries; zero means the SDK's 20 s.
	MaxBackoff time.Duration
	// Logger receives debug logs; nil means none.
	Logger hclog.Logger
}

// Queue is the SQS backend; it implements queue.Queue and is safe for
// concurrent use.
type Queue struct {
	client     *awssqs.Client
	httpClient awssqs.HTTPClient
	log        hclog.Logger
	requests   atomic.Int64

	mu   sync.RWMutex
	urls map[string]string
}

var _ queue.Queue = (*Queue)(nil)

// New builds an SQS backend. It makes no request: a wrong region or missing
// credentials show on the first call.
func New(ctx context.Context, opts Options) (*Queue, error) {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 5
	}
	q := &Queue{
		log:  opts.Logger.Named("queue_sqs"),
		urls: make(map[string]string),
	}
	load := []func(*config.LoadOptions) error{
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = opts.MaxAttempts
				if opts.MaxBackoff > 0 {
					o.MaxBackoff = opts.MaxBackoff
				}
			})
		}),
	}
	if opts.Region != "" {
		load = append(load, config.WithRegion(opts.Region))
	}
	if opts.Profile != "" {
		load = append(load, config.WithSharedConfigProfile(opts.Profile))
	}
	if opts.Credentials != nil {
		load = append(load, config.WithCredentialsProvider(opts.Credentials))
	}
	cfg, err := config.LoadDefaultConfig(ctx, load...)
	if err != nil {
		return nil, fmt.Errorf("sqs queue: load AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		return nil, fmt.Errorf("sqs queue: %w: no region configured (set region in the queue block or AWS_REGION)", queue.ErrInvalidArgument)
	}
	// A frozen client is a plain *http.Client, whose idle connections
	// Close can release; the SDK has already applied the CA bundle to it.
	if bc, ok := cfg.HTTPClient.(*awshttp.BuildableClient); ok {
		cfg.HTTPClient = bc.Freeze()
	}
	q.httpClient = cfg.HTTPClient
	q.client = awssqs.NewFromConfig(cfg, func(o *awssqs.Options) {
		if opts.Endpoint != "" {
			o.BaseEndpoint = aws.String(opts.Endpoint)
		}
		o.APIOptions = append(o.APIOptions, q.countRequests)
	})
	q.log.Debug("sqs backend ready", "region", cfg.Region, "endpoint", opts.Endpoint, "max_attempts", opts.MaxAttempts)
	return q, nil
}

// Requests returns how many HTTP requests the backend has sent, retries
// included; benchmarks report it.
func (q *Queue) Requests() int64 { return q.requests.Load() }

// Client returns the underlying SDK client, for calls the queue interface
// does not cover.
func (q *Queue) Client() *awssqs.Client { return q.client }

// Close releases idle connections.
func (q *Queue) Close() error {
	if c, ok := q.httpClient.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
	return nil
}

// countRequests adds a middleware that counts every attempt: it sits in the
// deserialize step, below the retryer, so each retry counts too.
func (q *Queue) countRequests(stack *middleware.Stack) error {
	return stack.Deserialize.Add(middleware.DeserializeMiddlewareFunc("RosterCountRequests",
		func(ctx context.Context, in middleware.DeserializeInput, next middleware.DeserializeHandler) (middleware.DeserializeOutput, middleware.Metadata, error) {
			q.requests.Add(1)
			return next.HandleDeserialize(ctx, in)
		}), middleware.After)
}

// url resolves a queue name to its URL, once.
func (q *Queue) url(ctx context.Context, name string) (string, error) {
	q.mu.RLock()
	u, ok := q.urls[name]
	q.mu.RUnlock()
	if ok {
		return u, nil
	}
	out, err := q.client.GetQueueUrl(ctx, &awssqs.GetQueueUrlInput{QueueName: aws.String(name)})
	if err != nil {
		return "", err
	}
	q.remember(name, aws.ToString(out.QueueUrl))
	return aws.ToString(out.QueueUrl), nil
}

func (q *Queue) remember(name, u string) {
	q.mu.Lock()
	q.urls[name] = u
	q.mu.Unlock()
}

func (q *Queue) forget(name string) {
	q.mu.Lock()
	delete(q.urls, name)
	q.mu.Unlock()
}

// fail wraps err with the queue package's error for it; a missing queue
// also drops the cached URL.
func (q *Queue) fail(op, name string, err error) error {
	kind := classify(err)
	if errors.Is(kind, queue.ErrQueueNotFound) {
		q.forget(name)
	}
	if kind != nil {
		return fmt.Errorf("sqs queue: %s %q: %w: %w", op, name, kind, err)
	}
	return fmt.Errorf("sqs queue: %s %q: %w", op, name, err)
}

func classify(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return nil
	}
	return classifyCode(ae.ErrorCode())
}

// classifyCode maps an SQS error code (JSON or legacy query form) to the
// queue package's errors; nil when none fits.
func classifyCode(code string) error {
	code = strings.TrimPrefix(code, "AWS.SimpleQueueService.")
	switch code {
	case "QueueDoesNotExist", "NonExistentQueue":
		return queue.ErrQueueNotFound
	case "QueueDeletedRecently":
		return queue.ErrQueueDeletedRecently
	case "ReceiptHandleIsInvalid", "MessageNotInflight", "InvalidIdFormat":
		return queue.ErrInvalidReceipt
	case "QueueNameExists", "QueueAlreadyExists":
		return queue.ErrQueueExists
	case "TooManyEntriesInBatchRequest", "EmptyBatchRequest":
		return queue.ErrTooManyEntries
	case "BatchEntryIdsNotDistinct", "InvalidBatchEntryId", "InvalidMessageContents", "InvalidParameterValue",
		"InvalidAttributeValue", "InvalidAttributeName", "BatchRequestTooLong", "MissingParameter":
		return queue.ErrInvalidArgument
	case "KmsThrottled":
		return queue.ErrThrottled
	}
	if _, ok := retry.DefaultThrottleErrorCodes[code]; ok {
		return queue.ErrThrottled
	}
	return nil
}

// seconds rounds up to whole seconds, SQS's unit.
func seconds(d time.Duration) int32 {
	return int32((d + time.Second - 1) / time.Second)
}

// CreateQueue creates the queue (idempotent for the same options) and caches
// its URL.
func (q *Queue) CreateQueue(ctx context.Context, name string, opts queue.QueueOptions) error {
	if err := queue.ValidateName(name); err != nil {
		return err
	}
	if err := queue.ValidateQueueOptions(opts); err != nil {
		return fmt.Errorf("queue %q: %w", name, err)
	}
	vis := opts.VisibilityTimeout
	if vis == 0 {
		vis = queue.DefaultVisibilityTimeout
	}
	in := &awssqs.CreateQueueInput{
		QueueName:  aws.String(name),
		Attributes: map[string]string{string(types.QueueAttributeNameVisibilityTimeout): strconv.Itoa(int(seconds(vis)))},
	}
	if len(opts.Tags) > 0 {
		in.Tags = opts.Tags
	}
	out, err := q.client.CreateQueue(ctx, in)
	if err != nil {
		return q.fail("create queue", name, err)
	}
	q.remember(name, aws.ToString(out.QueueUrl))
	return nil
}

// DeleteQueue deletes the queue; SQS then refuses its name for 60 s.
func (q *Queue) DeleteQueue(ctx context.Context, name string) error {
	if err := queue.ValidateName(name); err != nil {
		return err
	}
	u, err := q.url(ctx, name)
	if err != nil {
		return q.fail("delete queue", name, err)
	}
	_, err = q.client.DeleteQueue(ctx, &awssqs.DeleteQueueInput{QueueUrl: aws.String(u)})
	q.forget(name)
	if err != nil {
		return q.fail("delete queue", name, err)
	}
	return nil
}

// ListQueues returns the names of the queues that begin with prefix, sorted.
func (q *Queue) ListQueues(ctx context.Context, prefix string) ([]string, error) {
	in := &awssqs.ListQueuesInput{MaxResults: aws.Int32(1000)}
	if prefix != "" {
		in.QueueNamePrefix = aws.String(prefix)
	}
	var names []string
	p := awssqs.NewListQueuesPaginator(q.client, in)
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return nil, q.fail("list queues with prefix", prefix, err)
		}
		for _, u := range out.QueueUrls {
			n := path.Base(u)
			// The prefix match is the service's; check it anyway, as some
			// servers compare without case.
			if strings.HasPrefix(n, prefix) {
				names = append(names, n)
				q.remember(n, u)
			}
		}
	}
	sort.Strings(names)
	return names, nil
}

// QueueAttributes returns the queue's visibility timeout, creation time and
// approximate counts (SQS's counts lag by up to a minute).
func (q *Queue) QueueAttributes(ctx context.Context, name string) (queue.Attributes, error) {
	if err := queue.ValidateName(name); err != nil {
		return queue.Attributes{}, err
	}
	u, err := q.url(ctx, name)
	if err != nil {
		return queue.Attributes{}, q.fail("attributes of", name, err)
	}
	out, err := q.client.GetQueueAttributes(ctx, &awssqs.GetQueueAttributesInput{
		QueueUrl: aws.String(u),
		AttributeNames: []types.QueueAttributeName{
			types.QueueAttributeNameVisibilityTimeout,
			types.QueueAttributeNameApproximateNumberOfMessages,
			types.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
			types.QueueAttributeNameCreatedTimestamp,
		},
	})
	if err != nil {
		return queue.Attributes{}, q.fail("attributes of", name, err)
	}
	num := func(k types.QueueAttributeName) int64 {
		v, _ := strconv.ParseInt(out.Attributes[string(k)], 10, 64)
		return v
	}
	return queue.Attributes{
		VisibilityTimeout:   time.Duration(num(types.QueueAttributeNameVisibilityTimeout)) * time.Second,
		ApproximateMessages: int(num(types.QueueAttributeNameApproximateNumberOfMessages)),
		ApproximateInFlight: int(num(types.QueueAttributeNameApproximateNumberOfMessagesNotVisible)),
		CreatedAt:           time.Unix(num(types.QueueAttributeNameCreatedTimestamp), 0),
	}, nil
}

// Send puts one message on the queue.
func (q *Queue) Send(ctx context.Context, name, body string) (string, error) {
	if err := queue.ValidateName(name); err != nil {
		return "", err
	}
	if err := queue.ValidateBody(body); err != nil {
		return "", fmt.Errorf("sqs queue: send to %q: %w", name, err)
	}
	u, err := q.url(ctx, name)
	if err != nil {
		return "", q.fail("send to", name, err)
	}
	out, err := q.client.SendMessage(ctx, &awssqs.SendMessageInput{QueueUrl: aws.String(u), MessageBody: aws.String(body)})
	if err != nil {
		return "", q.fail("send to", name, err)
	}
	return aws.ToString(out.MessageId), nil
}

// SendBatch sends up to ten messages. Entries refused locally fail alone
// without a request; the rest go in as few calls as SQS's limit on a batch's
// total size (256 KiB) allows, usually one.
func (q *Queue) SendBatch(ctx context.Context, name string, entries []queue.SendEntry) ([]queue.BatchResult, error) {
	if err := queue.ValidateName(name); err != nil {
		return nil, err
	}
	if err := queue.ValidateBatch(len(entries), func(i int) string { return entries[i].ID }); err != nil {
		return nil, fmt.Errorf("sqs queue: send batch to %q: %w", name, err)
	}
	results := make([]queue.BatchResult, len(entries))
	index := make(map[string]int, len(entries))
	var chunks [][]types.SendMessageBatchRequestEntry
	var chunk []types.SendMessageBatchRequestEntry
	size := 0
	for i, e := range entries {
		results[i].ID = e.ID
		index[e.ID] = i
		if err := queue.ValidateBody(e.Body); err != nil {
			results[i].Err = err
			continue
		}
		if size+len(e.Body) > queue.MaxMessageSize && len(chunk) > 0 {
			chunks = append(chunks, chunk)
			chunk, size = nil, 0
		}
		chunk = append(chunk, types.SendMessageBatchRequestEntry{Id: aws.String(e.ID), MessageBody: aws.String(e.Body)})
		size += len(e.Body)
	}
	if len(chunk) > 0 {
		chunks = append(chunks, chunk)
	}
	if len(chunks) == 0 {
		return results, nil
	}
	u, err := q.url(ctx, name)
	if err != nil {
		return nil, q.fail("send batch to", name, err)
	}
	for c, chunk := range chunks {
		out, err := q.client.SendMessageBatch(ctx, &awssqs.SendMessageBatchInput{QueueUrl: aws.String(u), Entries: chunk})
		if err != nil {
			err = q.fail("send batch to", name, err)
			if c == 0 {
				return nil, err
			}
			// Earlier chunks went in: report this one's entries alone.
			for _, e := range chunk {
				results[index[aws.ToString(e.Id)]].Err = err
			}
			continue
		}
		for _, s := range out.Successful {
			if i, ok := index[aws.ToString(s.Id)]; ok {
				results[i].MessageID = aws.ToString(s.MessageId)
			}
		}
		for _, f := range out.Failed {
			if i, ok := index[aws.ToString(f.Id)]; ok {
				results[i].Err = entryError(f)
			}
		}
	}
	return results, nil
}

func entryError(f types.BatchResultErrorEntry) error {
	code, msg := aws.ToString(f.Code), aws.ToString(f.Message)
	if kind := classifyCode(code); kind != nil {
		return fmt.Errorf("%w: %s: %s", kind, code, msg)
	}
	return fmt.Errorf("sqs: %s: %s", code, msg)
}

var systemAttributes = []types.MessageSystemAttributeName{
	types.MessageSystemAttributeNameApproximateReceiveCount,
	types.MessageSystemAttributeNameSentTimestamp,
}

// Receive long-polls for up to opts.WaitTime (whole seconds, rounded up).
func (q *Queue) Receive(ctx context.Context, name string, opts queue.ReceiveOptions) ([]queue.Message, error) {
	if err := queue.ValidateName(name); err != nil {
		return nil, err
	}
	opts, err := queue.ValidateReceiveOptions(opts)
	if err != nil {
		return nil, fmt.Errorf("sqs queue: receive from %q: %w", name, err)
	}
	u, err := q.url(ctx, name)
	if err != nil {
		return nil, q.fail("receive from", name, err)
	}
	in := &awssqs.ReceiveMessageInput{
		QueueUrl:                    aws.String(u),
		MaxNumberOfMessages:         int32(opts.MaxMessages),
		WaitTimeSeconds:             seconds(opts.WaitTime),
		MessageSystemAttributeNames: systemAttributes,
	}
	if opts.VisibilityTimeout > 0 {
		in.VisibilityTimeout = seconds(opts.VisibilityTimeout)
	}
	out, err := q.client.ReceiveMessage(ctx, in)
	if err != nil {
		return nil, q.fail("receive from", name, err)
	}
	msgs := make([]queue.Message, 0, len(out.Messages))
	for _, m := range out.Messages {
		count, _ := strconv.Atoi(m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)])
		sent, _ := strconv.ParseInt(m.Attributes[string(types.MessageSystemAttributeNameSentTimestamp)], 10, 64)
		msgs = append(msgs, queue.Message{
			ID:           aws.ToString(m.MessageId),
			Receipt:      aws.ToString(m.ReceiptHandle),
			Body:         aws.ToString(m.Body),
			ReceiveCount: count,
			SentAt:       time.UnixMilli(sent),
		})
	}
	return msgs, nil
}

// DeleteMessage deletes a received message. SQS itself accepts a stale
// receipt without deleting anything; a malformed one is
// queue.ErrInvalidReceipt.
func (q *Queue) DeleteMessage(ctx context.Context, name, receipt string) error {
	if err := queue.ValidateName(name); err != nil {
		return err
	}
	if receipt == "" {
		return fmt.Errorf("sqs queue: delete from %q: %w", name, queue.ErrInvalidReceipt)
	}
	u, err := q.url(ctx, name)
	if err != nil {
		return q.fail("delete from", name, err)
	}
	if _, err := q.client.DeleteMessage(ctx, &awssqs.DeleteMessageInput{QueueUrl: aws.String(u), ReceiptHandle: aws.String(receipt)}); err != nil {
		return q.fail("delete from", name, err)
	}
	return nil
}

// DeleteMessageBatch deletes up to ten messages in one call.
func (q *Queue) DeleteMessageBatch(ctx context.Context, name string, entries []queue.DeleteEntry) ([]queue.BatchResult, error) {
	if err := queue.ValidateName(name); err != nil {
		return nil, err
	}
	if err := queue.ValidateBatch(len(entries), func(i int) string { return entries[i].ID }); err != nil {
		return nil, fmt.Errorf("sqs queue: delete batch from %q: %w", name, err)
	}
	results := make([]queue.BatchResult, len(entries))
	index := make(map[string]int, len(entries))
	var req []types.DeleteMessageBatchRequestEntry
	for i, e := range entries {
		results[i].ID = e.ID
		index[e.ID] = i
		if e.Receipt == "" {
			results[i].Err = queue.ErrInvalidReceipt
			continue
		}
		req = append(req, types.DeleteMessageBatchRequestEntry{Id: aws.String(e.ID), ReceiptHandle: aws.String(e.Receipt)})
	}
	if len(req) == 0 {
		return results, nil
	}
	u, err := q.url(ctx, name)
	if err != nil {
		return nil, q.fail("delete batch from", name, err)
	}
	out, err := q.client.DeleteMessageBatch(ctx, &awssqs.DeleteMessageBatchInput{QueueUrl: aws.String(u), Entries: req})
	if err != nil {
		return nil, q.fail("delete batch from", name, err)
	}
	for _, f := range out.Failed {
		if i, ok := index[aws.ToString(f.Id)]; ok {
			results[i].Err = entryError(f)
		}
	}
	return results, nil
}

// ChangeVisibility sets how long from now (whole seconds, rounded up) a
// message in flight stays invisible; zero releases it.
func (q *Queue) ChangeVisibility(ctx context.Context, name, receipt string, timeout time.Duration) error {
	if err := queue.ValidateName(name); err != nil {
		return err
	}
	if err := queue.ValidateVisibility(timeout); err != nil {
		return fmt.Errorf("sqs queue: change visibility on %q: %w", name, err)
	}
	if receipt == "" {
		return fmt.Errorf("sqs queue: change visibility on %q: %w", name, queue.ErrInvalidReceipt)
	}
	u, err := q.url(ctx, name)
	if err != nil {
		return q.fail("change visibility on", name, err)
	}
	_, err = q.client.ChangeMessageVisibility(ctx, &awssqs.ChangeMessageVisibilityInput{
		QueueUrl:          aws.String(u),
		ReceiptHandle:     aws.String(receipt),
		VisibilityTimeout: seconds(timeout),
	})
	if err != nil {
		return q.fail("change visibility on", name, err)
	}
	return nil
}
