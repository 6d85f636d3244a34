package protocol

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hashicorp/go-hclog"
	"github.com/oklog/ulid/v2"
)

// MaxMessageSize is the largest sealed message, in bytes: Amazon SQS's limit,
// the same as queue.MaxMessageSize. Seal refuses to build a larger one and
// Open rejects one before parsing it. The body of a message can use a little
// less than three quarters of it (the envelope is carried in base64).
const MaxMessageSize = 256 * 1024

// Defaults for Options.
const (
	DefaultReplayWindow = 5 * time.Minute
	DefaultMaxSkew      = 30 * time.Second
	// DefaultMaxSeen bounds the replay seen-set: at about 100 bytes an entry
	// it is some 13 MiB at worst, and it holds the five minutes of traffic
	// of a thousand servers heart-beating every five seconds twice over.
	DefaultMaxSeen = 1 << 17
)

// maxNameLen bounds sender and recipient, which end up in logs and queue
// names.
const maxNameLen = 255

// sigContext separates Roster's signatures from any other use of the same
// keys: what is signed is sigContext followed by the envelope's bytes.
const sigContext = "roster-envelope-v1\x00"

// ErrMessageTooLarge is returned by Seal when the sealed message would be
// larger than MaxMessageSize.
var ErrMessageTooLarge = errors.New("sealed message is larger than 256 KiB")

// Reason says why a message was rejected; it labels the rejection counter.
type Reason string

// Rejection reasons.
const (
	ReasonOversize     Reason = "oversize"
	ReasonMalformed    Reason = "malformed"
	ReasonVersion      Reason = "version"
	ReasonUnknownKey   Reason = "unknown_key"
	ReasonBadSignature Reason = "bad_signature"
	ReasonDirection    Reason = "direction" // a report signed as an order or the reverse
	ReasonRecipient    Reason = "recipient" // addressed to someone else (Options.Recipient)
	ReasonExpired      Reason = "expired"   // older than the replay window
	ReasonFuture       Reason = "future"    // from the future beyond the allowed skew
	ReasonStaleEpoch   Reason = "stale_epoch"
	ReasonReplay       Reason = "replay" // id seen before
)

// Reasons lists every rejection reason, in the order Open checks them, so
// that a metrics exporter can create every label up front.
var Reasons = []Reason{
	ReasonOversize, ReasonMalformed, ReasonVersion, ReasonUnknownKey, ReasonBadSignature,
	ReasonDirection, ReasonRecipient, ReasonExpired, ReasonFuture, ReasonStaleEpoch, ReasonReplay,
}

// RejectError is returned by Open for a message that failed verification.
// Such a message can never verify, however often it is delivered again:
// delete it at once rather than leave it to cycle on the queue.
//
// Detail never holds key material or the message's body.
type RejectError struct {
	Reason Reason
	Detail string
}

func (e *RejectError) Error() string {
	return "message rejected: " + string(e.Reason) + ": " + e.Detail
}

// IsReject reports whether err is (or wraps) a *RejectError, and its reason.
func IsReject(err error) (Reason, bool) {
	var re *RejectError
	if errors.As(err, &re) {
		return re.Reason, true
	}
	return "", false
}

// Accept restricts which kinds a codec opens.
type Accept int

const (
	// AcceptAll opens orders and reports.
	AcceptAll Accept = iota
	// AcceptOrders opens orders only: what an agent uses, so that a report
	// forged with a stolen fleet key and put on an agent's queue is
	// rejected (ReasonDirection) before the agent sees it.
	AcceptOrders
	// AcceptReports opens reports only: what the orchestrator uses on its
	// own queue.
	AcceptReports
)

// Options tune a Codec.
type Options struct {
	ReplayWindow time.Duration    // default 5 minutes
	MaxSkew      time.Duration    // default 30 seconds
	Now          func() time.Time // default time.Now
	// OnReject, if set, is called for every rejected message (for metrics).
	// It must be quick and safe for concurrent use.
	OnReject func(Reason)

	// Accept restricts the kinds Open accepts; the default accepts both.
	Accept Accept
	// Recipient, if set, says whether a recipient is this process (an
	// agent: its machine id, its server name, "spares"; the orchestrator:
	// "orchestrator"). Without it a genuine order copied by someone with
	// access to the queues onto another server's queue would open there.
	// It is called concurrently.
	Recipient func(recipient string) bool
	// FollowEpoch makes every accepted order raise the minimum epoch to its
	// own, so that once an agent has heard from a new orchestrator it
	// refuses the orders of the one it deposed. Agents set it.
	FollowEpoch bool
	// MaxSeen bounds the replay seen-set (default DefaultMaxSeen). When it
	// is full of entries still inside the replay window, the oldest is
	// dropped and messages no newer than it are rejected as expired: the
	// window shrinks under a flood, it never lets a replay through.
	MaxSeen int
	// Logger receives one line per rejection (rate-limited per reason);
	// default: no logging.
	Logger hclog.Logger
}

// Codec seals and opens messages. It is safe for concurrent use.
type Codec struct {
	keys     Keys
	orderKID [kidLen]byte
	fleetKID [kidLen]byte
	opts     Options
	log      hclog.Logger

	minEpoch atomic.Uint64
	seen     *seenSet

	rejected map[Reason]*atomic.Uint64
	accepted atomic.Uint64

	logMu      sync.Mutex
	logLast    map[Reason]time.Time
	suppressed map[Reason]uint64
}

// NewCodec returns a codec for the given keys. An orchestrator's keys hold
// OrderPrivate and can seal orders; an agent's hold only OrderPublic. Both
// need FleetKey.
func NewCodec(keys Keys, opts Options) (*Codec, error) {
	k, err := keys.normalize()
	if err != nil {
		return nil, err
	}
	if opts.ReplayWindow <= 0 {
		opts.ReplayWindow = DefaultReplayWindow
	}
	if opts.MaxSkew <= 0 {
		opts.MaxSkew = DefaultMaxSkew
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxSeen <= 0 {
		opts.MaxSeen = DefaultMaxSeen
	}
	if opts.Accept < AcceptAll || opts.Accept > AcceptReports {
		return nil, fmt.Errorf("protocol: unknown Accept value %d", opts.Accept)
	}
	log := opts.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	c := &Codec{
		keys:       k,
		orderKID:   orderKeyID(k.OrderPublic),
		fleetKID:   fleetKeyID(k.FleetKey),
		opts:       opts,
		log:        log.Named("protocol"),
		seen:       newSeenSet(opts.MaxSeen, opts.ReplayWindow),
		rejected:   make(map[Reason]*atomic.Uint64, len(Reasons)),
		logLast:    map[Reason]time.Time{},
		suppressed: map[Reason]uint64{},
	}
	for _, r := range Reasons {
		c.rejected[r] = new(atomic.Uint64)
	}
	return c, nil
}

// wire is the text that travels on a queue. M is the envelope's JSON in
// base64, so the signature covers exact bytes and nothing has to be
// canonicalised; KID names the key that signed it (and so the algorithm:
// Ed25519 for the order key, HMAC-SHA256 for the fleet key).
type wire struct {
	V   *int   `json:"v"`
	KID string `json:"kid"`
	Sig string `json:"sig"`
	M   string `json:"m"`
}

var b64 = base64.StdEncoding.Strict()

// Seal builds, signs and encodes a message; the result is a queue body.
// Orders need the orchestrator's private key; reports are authenticated with
// the fleet key. A nil body is sent as {}; any other body must marshal to a
// JSON object.
func (c *Codec) Seal(kind Kind, sender, recipient string, epoch uint64, body any) (string, error) {
	sealed, _, err := c.SealID(kind, sender, recipient, epoch, body)
	return sealed, err
}

// SealID is Seal that also returns the envelope's id, for a sender that
// must remember which message it sent (a commission the orchestrator
// matches claims against) without reading its own wire format back.
func (c *Codec) SealID(kind Kind, sender, recipient string, epoch uint64, body any) (sealed, id string, err error) {
	if !kind.IsOrder() && !kind.IsReport() {
		return "", "", fmt.Errorf("protocol: cannot seal unknown kind %q", kind)
	}
	if kind.IsOrder() && c.keys.OrderPrivate == nil {
		return "", "", fmt.Errorf("protocol: cannot seal %s: only the orchestrator holds the order key", kind)
	}
	if err := checkName("sender", sender); err != nil {
		return "", "", fmt.Errorf("protocol: cannot seal %s: %w", kind, err)
	}
	if err := checkName("recipient", recipient); err != nil {
		return "", "", fmt.Errorf("protocol: cannot seal %s: %w", kind, err)
	}
	raw := json.RawMessage(`{}`)
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return "", "", fmt.Errorf("protocol: cannot seal %s: body: %w", kind, err)
		}
		if len(b) == 0 || b[0] != '{' {
			return "", "", fmt.Errorf("protocol: cannot seal %s: body must be a JSON object", kind)
		}
		raw = b
	}
	uid, err := newID(c.opts.Now())
	if err != nil {
		return "", "", fmt.Errorf("protocol: cannot seal %s: id: %w", kind, err)
	}
	env := Envelope{
		V:         Version,
		ID:        uid.String(),
		Kind:      kind,
		Sender:    sender,
		Recipient: recipient,
		Epoch:     epoch,
		SentAt:    ulid.Time(uid.Time()).UTC(),
		Body:      raw,
	}
	m, err := json.Marshal(&env)
	if err != nil {
		return "", "", fmt.Errorf("protocol: cannot seal %s: %w", kind, err)
	}
	if sealed, err = c.sealBytes(kind.IsOrder(), m); err != nil {
		return "", "", err
	}
	return sealed, env.ID, nil
}

// sealBytes signs the envelope bytes m with the order key or the fleet key
// and wraps them for the wire.
func (c *Codec) sealBytes(order bool, m []byte) (string, error) {
	var (
		sig []byte
		kid [kidLen]byte
	)
	if order {
		sig = ed25519.Sign(c.keys.OrderPrivate, signedBytes(m))
		kid = c.orderKID
	} else {
		sig = fleetMAC(c.keys.FleetKey, m)
		kid = c.fleetKID
	}
	v := Version
	out, err := json.Marshal(wire{V: &v, KID: hex.EncodeToString(kid[:]), Sig: b64.EncodeToString(sig), M: b64.EncodeToString(m)})
	if err != nil {
		return "", fmt.Errorf("protocol: cannot seal: %w", err)
	}
	if len(out) > MaxMessageSize {
		return "", fmt.Errorf("protocol: %w: %d bytes", ErrMessageTooLarge, len(out))
	}
	return string(out), nil
}

// Open verifies and decodes a queue body. It checks, in order: size, shape,
// version, key, signature, the envelope's fields, direction (orders signed
// with the order key, reports with the fleet key), recipient, age and clock
// skew, the
// epoch of orders, and last whether the id was seen before, so that only a
// message that passed everything else is remembered. Every failure is a
// *RejectError, counted and logged.
func (c *Codec) Open(raw string) (*Envelope, error) {
	env, err := c.open(raw)
	if err != nil {
		var re *RejectError
		if !errors.As(err, &re) {
			re = &RejectError{Reason: ReasonMalformed, Detail: err.Error()}
		}
		c.reject(re, len(raw))
		return nil, re
	}
	c.accepted.Add(1)
	return env, nil
}

func reject(r Reason, format string, args ...any) *RejectError {
	return &RejectError{Reason: r, Detail: fmt.Sprintf(format, args...)}
}

func (c *Codec) open(raw string) (*Envelope, error) {
	if len(raw) > MaxMessageSize {
		return nil, reject(ReasonOversize, "%d bytes, the limit is %d", len(raw), MaxMessageSize)
	}
	w, err := decodeWire([]byte(raw))
	if err != nil {
		return nil, err
	}
	if *w.V != Version {
		return nil, reject(ReasonVersion, "version %d, this roster speaks %d", *w.V, Version)
	}
	var kid [kidLen]byte
	if len(w.KID) != 2*kidLen {
		return nil, reject(ReasonMalformed, "key id is not %d lower-case hex digits", 2*kidLen)
	}
	// Lower case only: the text of a message has exactly one form, so a
	// changed byte never opens.
	if _, err := hex.Decode(kid[:], []byte(w.KID)); err != nil || hex.EncodeToString(kid[:]) != w.KID {
		return nil, reject(ReasonMalformed, "key id is not %d lower-case hex digits", 2*kidLen)
	}
	var order bool
	switch {
	case hmac.Equal(kid[:], c.orderKID[:]):
		order = true
	case hmac.Equal(kid[:], c.fleetKID[:]):
		order = false
	default:
		return nil, reject(ReasonUnknownKey, "key %x is neither this fleet's order key nor its fleet key", kid)
	}
	sig, err := b64.DecodeString(w.Sig)
	if err != nil {
		return nil, reject(ReasonMalformed, "signature is not base64")
	}
	m, err := b64.DecodeString(w.M)
	if err != nil {
		return nil, reject(ReasonMalformed, "envelope is not base64")
	}
	if order {
		if len(sig) != ed25519.SignatureSize || !ed25519.Verify(c.keys.OrderPublic, signedBytes(m), sig) {
			return nil, reject(ReasonBadSignature, "order signature does not verify under key %x", kid)
		}
	} else if !hmac.Equal(sig, fleetMAC(c.keys.FleetKey, m)) {
		return nil, reject(ReasonBadSignature, "report MAC does not verify under key %x", kid)
	}

	// From here on the bytes are authentic: what fails is a bug or a
	// forgery by a holder of the key, not line noise.
	env, err := decodeEnvelope(m)
	if err != nil {
		return nil, err
	}
	env.KeyID = hex.EncodeToString(kid[:])
	if env.Kind.IsOrder() && !order {
		return nil, reject(ReasonDirection, "%s %s from %q is authenticated with the fleet key, not the order key", env.Kind, env.ID, env.Sender)
	}
	if env.Kind.IsReport() && order {
		return nil, reject(ReasonDirection, "%s %s is signed with the order key, not the fleet key", env.Kind, env.ID)
	}
	if c.opts.Accept == AcceptOrders && !env.Kind.IsOrder() {
		return nil, reject(ReasonDirection, "%s %s from %q: this codec opens orders only", env.Kind, env.ID, env.Sender)
	}
	if c.opts.Accept == AcceptReports && !env.Kind.IsReport() {
		return nil, reject(ReasonDirection, "%s %s: this codec opens reports only", env.Kind, env.ID)
	}
	if c.opts.Recipient != nil && !c.opts.Recipient(env.Recipient) {
		return nil, reject(ReasonRecipient, "%s %s is for %q", env.Kind, env.ID, env.Recipient)
	}
	now := c.opts.Now()
	age := now.Sub(env.SentAt)
	if age > c.opts.ReplayWindow {
		return nil, reject(ReasonExpired, "%s %s from %q was sent %s ago, the replay window is %s", env.Kind, env.ID, env.Sender, age.Round(time.Millisecond), c.opts.ReplayWindow)
	}
	if -age > c.opts.MaxSkew {
		return nil, reject(ReasonFuture, "%s %s from %q was sent %s in the future, the allowed skew is %s", env.Kind, env.ID, env.Sender, (-age).Round(time.Millisecond), c.opts.MaxSkew)
	}
	if env.Kind.IsOrder() {
		if minE := c.minEpoch.Load(); env.Epoch < minE {
			return nil, reject(ReasonStaleEpoch, "%s %s is from epoch %d, orders from epoch %d on are accepted", env.Kind, env.ID, env.Epoch, minE)
		}
	}
	id := ulid.MustParseStrict(env.ID) // checked by decodeEnvelope
	switch c.seen.add(seenKey{kid: kid, id: id}, env.SentAt, now) {
	case seenReplay:
		return nil, reject(ReasonReplay, "%s %s from %q was seen before", env.Kind, env.ID, env.Sender)
	case seenBelowFloor:
		return nil, reject(ReasonExpired, "%s %s from %q is older than the replay seen-set still remembers (it is full)", env.Kind, env.ID, env.Sender)
	}
	if env.Kind.IsOrder() && c.opts.FollowEpoch {
		c.SetMinEpoch(env.Epoch)
	}
	return env, nil
}

// decodeWire parses the outer object token by token rather than with
// Unmarshal, whose field names match case-insensitively and whose duplicate
// keys silently override each other: a message has exactly one spelling.
func decodeWire(b []byte) (*wire, error) {
	bad := func(format string, args ...any) (*wire, error) {
		return nil, reject(ReasonMalformed, "not a sealed message: "+format, args...)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	tok, err := d.Token()
	if err != nil {
		return bad("%s", jsonProblem(err))
	}
	if tok != json.Delim('{') {
		return bad("not a JSON object")
	}
	var w wire
	seen := map[string]bool{}
	for d.More() {
		tok, err := d.Token()
		if err != nil {
			return bad("%s", jsonProblem(err))
		}
		key, _ := tok.(string)
		if seen[key] {
			return bad("field %.20q appears twice", key)
		}
		seen[key] = true
		tok, err = d.Token()
		if err != nil {
			return bad("%s", jsonProblem(err))
		}
		switch key {
		case "v":
			n, ok := tok.(json.Number)
			if !ok {
				return bad("v is not a number")
			}
			v, err := strconv.Atoi(string(n))
			if err != nil {
				return bad("v is not an integer")
			}
			w.V = &v
		case "kid", "sig", "m":
			s, ok := tok.(string)
			if !ok {
				return bad("%s is not a string", key)
			}
			switch key {
			case "kid":
				w.KID = s
			case "sig":
				w.Sig = s
			default:
				w.M = s
			}
		default:
			return bad("unknown field %.20q", key)
		}
	}
	if tok, err := d.Token(); err != nil || tok != json.Delim('}') {
		return bad("unterminated object")
	}
	if _, err := d.Token(); err != io.EOF {
		return bad("data after the JSON value")
	}
	if w.V == nil {
		return bad("no version")
	}
	if w.KID == "" || w.Sig == "" || w.M == "" {
		return bad("missing kid, sig or m")
	}
	return &w, nil
}

// decodeEnvelope decodes and checks authentic envelope bytes; it is separate
// from Open so that it can be fuzzed without a key.
func decodeEnvelope(m []byte) (*Envelope, error) {
	var env Envelope
	if err := decodeStrict(m, &env); err != nil {
		return nil, reject(ReasonMalformed, "envelope: %s", jsonProblem(err))
	}
	if env.V != Version {
		return nil, reject(ReasonVersion, "envelope version %d, this roster speaks %d", env.V, Version)
	}
	if !env.Kind.IsOrder() && !env.Kind.IsReport() {
		return nil, reject(ReasonMalformed, "unknown kind %.40q", string(env.Kind))
	}
	id, err := ulid.ParseStrict(env.ID)
	if err != nil || id.String() != env.ID {
		return nil, reject(ReasonMalformed, "%s: id is not a ULID in canonical form", env.Kind)
	}
	if err := checkName("sender", env.Sender); err != nil {
		return nil, reject(ReasonMalformed, "%s %s: %s", env.Kind, env.ID, err)
	}
	if err := checkName("recipient", env.Recipient); err != nil {
		return nil, reject(ReasonMalformed, "%s %s: %s", env.Kind, env.ID, err)
	}
	// The id carries the send time in milliseconds; Seal derives sent_at
	// from it, so the two agree and ids sort by send time.
	if !env.SentAt.Equal(ulid.Time(id.Time())) {
		return nil, reject(ReasonMalformed, "%s %s: sent_at does not match the time in the id", env.Kind, env.ID)
	}
	if len(env.Body) == 0 || env.Body[0] != '{' {
		return nil, reject(ReasonMalformed, "%s %s: body is not a JSON object", env.Kind, env.ID)
	}
	return &env, nil
}

// checkName refuses empty, overlong, invalid UTF-8 and control characters:
// names are logged and used in queue names.
func checkName(what, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("no %s", what)
	case len(s) > maxNameLen:
		return fmt.Errorf("%s is longer than %d bytes", what, maxNameLen)
	case !utf8.ValidString(s):
		return fmt.Errorf("%s is not valid UTF-8", what)
	}
	for _, r := range s {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return fmt.Errorf("%s has a control character", what)
		}
	}
	return nil
}

// jsonProblem describes a decoding error without quoting the input.
func jsonProblem(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("invalid JSON at offset %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("field %.40q has the wrong type", te.Field)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "truncated JSON"
	case errors.Is(err, errTrailing):
		return "data after the JSON value"
	}
	// Unknown fields and time parsing errors quote at most a field name or
	// a timestamp; cap them anyway.
	s := err.Error()
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return s
}

// reject counts, reports and logs a rejection. Logs are rate-limited per
// reason so that a flood of junk cannot flood the log too; the counters are
// always exact.
func (c *Codec) reject(re *RejectError, size int) {
	c.rejected[re.Reason].Add(1)
	if c.opts.OnReject != nil {
		c.opts.OnReject(re.Reason)
	}
	now := time.Now()
	c.logMu.Lock()
	if last, ok := c.logLast[re.Reason]; ok && now.Sub(last) < time.Second {
		c.suppressed[re.Reason]++
		c.logMu.Unlock()
		return
	}
	c.logLast[re.Reason] = now
	suppressed := c.suppressed[re.Reason]
	c.suppressed[re.Reason] = 0
	c.logMu.Unlock()
	c.log.Warn("rejected message", "reason", string(re.Reason), "detail", re.Detail, "size", size, "suppressed_since_last", suppressed)
}

// SetMinEpoch makes Open refuse orders from an epoch below e. It only ever
// raises the minimum: a lower e is ignored.
func (c *Codec) SetMinEpoch(e uint64) {
	for {
		cur := c.minEpoch.Load()
		if e <= cur || c.minEpoch.CompareAndSwap(cur, e) {
			return
		}
	}
}

// MinEpoch returns the lowest epoch whose orders Open accepts.
func (c *Codec) MinEpoch() uint64 { return c.minEpoch.Load() }

// Rejected returns the number of messages rejected, by reason; every reason
// is present, zero or not.
func (c *Codec) Rejected() map[Reason]uint64 {
	out := make(map[Reason]uint64, len(c.rejected))
	for r, n := range c.rejected {
		out[r] = n.Load()
	}
	return out
}

// Accepted returns the number of messages Open accepted.
func (c *Codec) Accepted() uint64 { return c.accepted.Load() }

// OrderKeyID and FleetKeyID return the ids of the codec's keys as they
// appear on the wire.
func (c *Codec) OrderKeyID() string { return hex.EncodeToString(c.orderKID[:]) }

// FleetKeyID returns the id of the fleet key as it appears on the wire.
func (c *Codec) FleetKeyID() string { return hex.EncodeToString(c.fleetKID[:]) }

func signedBytes(m []byte) []byte {
	b := make([]byte, 0, len(sigContext)+len(m))
	return append(append(b, sigContext...), m...)
}

func fleetMAC(key, m []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(sigContext))
	h.Write(m)
	return h.Sum(nil)
}

// ids hands out ULIDs that increase strictly within a process for as long
// as the clock does not go back (ulid.Monotonic is not safe for concurrent
// use on its own, hence the lock).
var ids = struct {
	sync.Mutex
	entropy *ulid.MonotonicEntropy
}{entropy: ulid.Monotonic(rand.Reader, 0)}

func newID(t time.Time) (ulid.ULID, error) {
	ids.Lock()
	defer ids.Unlock()
	return ulid.New(ulid.Timestamp(t), ids.entropy)
}

var errTrailing = errors.New("data after the JSON value")

// decodeStrict decodes exactly one JSON value into v, refusing unknown
// fields and anything after the value.
func decodeStrict(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if _, err := d.Token(); err != io.EOF {
		return errTrailing
	}
	return nil
}
