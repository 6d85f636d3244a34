package queue

import (
	"fmt"
	"time"
	"unicode/utf8"
)

// Every backend checks its arguments with these helpers before doing any
// work, so that code developed against the local backend is refused in the
// same way, and at the same point, as it would be by Amazon SQS.

// MaxNameLength is the longest queue name SQS accepts.
const MaxNameLength = 80

// ValidateName checks a queue name: 1 to 80 characters, each an ASCII letter,
// digit, hyphen or underscore (SQS's rule for standard queues).
func ValidateName(name string) error {
	if name == "" || len(name) > MaxNameLength {
		return fmt.Errorf("queue name %q: %w: must be 1 to %d characters", name, ErrInvalidArgument, MaxNameLength)
	}
	for i := 0; i < len(name); i++ {
		if !idChar(name[i]) {
			return fmt.Errorf("queue name %q: %w: only letters, digits, '-' and '_' are allowed", name, ErrInvalidArgument)
		}
	}
	return nil
}

// ValidateBody checks a message body: at most MaxMessageSize bytes (else
// ErrMessageTooLarge), not empty, valid UTF-8, and made only of the characters
// SQS accepts (#x9 #xA #xD #x20-#xD7FF #xE000-#xFFFD #x10000-#x10FFFF).
func ValidateBody(body string) error {
	if len(body) > MaxMessageSize {
		return fmt.Errorf("message body of %d bytes: %w", len(body), ErrMessageTooLarge)
	}
	if body == "" {
		return fmt.Errorf("message body: %w: must not be empty", ErrInvalidArgument)
	}
	for i, r := range body {
		switch {
		case r == utf8.RuneError:
			// A literal U+FFFD is allowed; a decoding error is not.
			if _, size := utf8.DecodeRuneInString(body[i:]); size == 1 {
				return fmt.Errorf("message body: %w: invalid UTF-8 at byte %d", ErrInvalidArgument, i)
			}
		case r == 0x9 || r == 0xA || r == 0xD,
			r >= 0x20 && r <= 0xD7FF,
			r >= 0xE000 && r <= 0xFFFD,
			r >= 0x10000 && r <= 0x10FFFF:
		default:
			return fmt.Errorf("message body: %w: character %U at byte %d is not allowed by SQS", ErrInvalidArgument, r, i)
		}
	}
	return nil
}

// ValidateEntryID checks a batch entry id: 1 to 80 letters, digits, hyphens
// or underscores.
func ValidateEntryID(id string) error {
	if id == "" || len(id) > 80 {
		return fmt.Errorf("batch entry id %q: %w: must be 1 to 80 characters", id, ErrInvalidArgument)
	}
	for i := 0; i < len(id); i++ {
		if !idChar(id[i]) {
			return fmt.Errorf("batch entry id %q: %w: only letters, digits, '-' and '_' are allowed", id, ErrInvalidArgument)
		}
	}
	return nil
}

// ValidateBatch checks the size of a batch and its entry ids (valid and
// distinct); ids yields the i-th entry's id.
func ValidateBatch(n int, ids func(i int) string) error {
	if n < 1 || n > MaxBatch {
		return fmt.Errorf("batch of %d entries: %w", n, ErrTooManyEntries)
	}
	seen := make(map[string]struct{}, n)
	for i := 0; i < n; i++ {
		id := ids(i)
		if err := ValidateEntryID(id); err != nil {
			return err
		}
		if _, dup := seen[id]; dup {
			return fmt.Errorf("batch entry id %q: %w: ids must be distinct", id, ErrInvalidArgument)
		}
		seen[id] = struct{}{}
	}
	return nil
}

// MaxVisibilityTimeout is the longest visibility timeout SQS accepts.
const MaxVisibilityTimeout = 12 * time.Hour

// ValidateQueueOptions checks the options of CreateQueue.
func ValidateQueueOptions(opts QueueOptions) error {
	if opts.VisibilityTimeout < 0 || opts.VisibilityTimeout > MaxVisibilityTimeout {
		return fmt.Errorf("visibility timeout %s: %w: must be 0 to 12h", opts.VisibilityTimeout, ErrInvalidArgument)
	}
	return nil
}

// ValidateReceiveOptions checks the options of Receive and returns them with
// defaults applied (MaxMessages 0 becomes 1).
func ValidateReceiveOptions(opts ReceiveOptions) (ReceiveOptions, error) {
	if opts.MaxMessages == 0 {
		opts.MaxMessages = 1
	}
	if opts.MaxMessages < 1 || opts.MaxMessages > MaxBatch {
		return opts, fmt.Errorf("receive of %d messages: %w", opts.MaxMessages, ErrTooManyEntries)
	}
	if opts.WaitTime < 0 || opts.WaitTime > MaxWait {
		return opts, fmt.Errorf("wait time %s: %w: must be 0 to 20s", opts.WaitTime, ErrInvalidArgument)
	}
	if opts.VisibilityTimeout < 0 || opts.VisibilityTimeout > MaxVisibilityTimeout {
		return opts, fmt.Errorf("visibility timeout %s: %w: must be 0 to 12h", opts.VisibilityTimeout, ErrInvalidArgument)
	}
	return opts, nil
}

// ValidateVisibility checks the timeout of ChangeVisibility.
func ValidateVisibility(timeout time.Duration) error {
	if timeout < 0 || timeout > MaxVisibilityTimeout {
		return fmt.Errorf("visibility timeout %s: %w: must be 0 to 12h", timeout, ErrInvalidArgument)
	}
	return nil
}

func idChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}
