package protocol

// PLACEHOLDER: the protocol helper replaces this file with the real codec.

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"time"
)

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
	ReasonExpired      Reason = "expired"   // older than the replay window
	ReasonFuture       Reason = "future"    // from the future beyond the allowed skew
	ReasonStaleEpoch   Reason = "stale_epoch"
	ReasonReplay       Reason = "replay" // id seen before
)

// RejectError is returned by Open for a message that failed verification.
// Such a message can never verify: delete it at once.
type RejectError struct {
	Reason Reason
	Detail string
}

func (e *RejectError) Error() string { return "message rejected: " + string(e.Reason) + ": " + e.Detail }

// Options tune a Codec.
type Options struct {
	ReplayWindow time.Duration    // default 5 minutes
	MaxSkew      time.Duration    // default 30 seconds
	Now          func() time.Time // default time.Now
	// OnReject, if set, is called for every rejected message (for metrics).
	OnReject func(Reason)
}

// Keys are what a codec holds. The orchestrator holds OrderPrivate; agents
// hold only OrderPublic. Both hold FleetKey.
type Keys struct {
	OrderPrivate ed25519.PrivateKey
	OrderPublic  ed25519.PublicKey
	FleetKey     []byte
}

// Codec seals and opens messages.
type Codec struct{ keys Keys }

// NewCodec returns a codec for the given keys.
func NewCodec(keys Keys, opts Options) (*Codec, error) { return &Codec{keys: keys}, nil }

// Seal builds, signs and encodes a message; the result is a queue body.
func (c *Codec) Seal(kind Kind, sender, recipient string, epoch uint64, body any) (string, error) {
	return "", errors.New("not implemented")
}

// Open verifies and decodes a queue body.
func (c *Codec) Open(raw string) (*Envelope, error) { return nil, errors.New("not implemented") }

// SetMinEpoch makes Open refuse orders from an epoch below e.
func (c *Codec) SetMinEpoch(e uint64) {}

// Rejected returns the number of messages rejected, by reason.
func (c *Codec) Rejected() map[Reason]uint64 { return nil }

func decodeStrict(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	return d.Decode(v)
}
