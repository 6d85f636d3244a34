// Package protocol defines the messages that travel on Roster's queues: a
// versioned envelope (id, kind, sender, recipient, epoch, sent time, body),
// the bodies of each kind, and how they are sealed and opened.
//
// Orders (orchestrator -> agents) are signed with the orchestrator's Ed25519
// key; agents hold only the public key, so a machine that is broken into
// cannot order the others. Reports (agents -> orchestrator) are authenticated
// with the shared fleet key (HMAC-SHA256). Opening a message checks, in order:
// size, shape, version, key, signature, the envelope's fields, kind direction,
// recipient, age (replay window) and clock skew, the epoch of orders, and
// whether the id was seen before. docs/security.md has the wire format, the
// key files and the threat model.
package protocol

import (
	"encoding/json"
	"time"
)

// Version is the envelope version this package writes and accepts.
const Version = 1

// Kind is what a message is.
type Kind string

// The kinds of message. Orders go from the orchestrator to agents; reports go
// from agents to the orchestrator's queue.
const (
	// Orders.
	KindCommission Kind = "commission" // on the global queue: become a server
	KindHalt       Kind = "halt"       // on a server queue: drain, tear down, halt
	KindPing       Kind = "ping"       // on a server queue: report at once
	KindConfigure  Kind = "configure"  // on a server queue: referenced pools changed
	KindRetire     Kind = "retire"     // on a machine queue or the global queue: a spare stops

	// Reports.
	KindHello     Kind = "hello"     // an agent started
	KindClaim     Kind = "claim"     // a spare took a commission
	KindProgress  Kind = "progress"  // provisioning progress
	KindReady     Kind = "ready"     // provisioned, with endpoints
	KindHeartbeat Kind = "heartbeat" // periodic: state, health, load, metrics
	KindHalting   Kind = "halting"   // drained and torn down, logs shipped
	KindFailed    Kind = "failed"    // an order failed
)

// IsOrder says whether messages of this kind come from the orchestrator.
func (k Kind) IsOrder() bool {
	switch k {
	case KindCommission, KindGrant, KindHalt, KindPing, KindConfigure, KindRetire:
		return true
	}
	return false
}

// IsReport says whether messages of this kind come from an agent.
func (k Kind) IsReport() bool {
	switch k {
	case KindHello, KindClaim, KindProgress, KindReady, KindHeartbeat, KindHalting, KindFailed:
		return true
	}
	return false
}

// Envelope is a message as opened: verified and decoded, body still raw.
type Envelope struct {
	V         int             `json:"v"`
	ID        string          `json:"id"` // a ULID: unique and sortable by time
	Kind      Kind            `json:"kind"`
	Sender    string          `json:"sender"`    // "orchestrator" or a machine id
	Recipient string          `json:"recipient"` // a machine id, a server name, "spares" or "orchestrator"
	Epoch     uint64          `json:"epoch"`     // the orchestrator's epoch (orders; reports echo the latest seen)
	SentAt    time.Time       `json:"sent_at"`
	Body      json.RawMessage `json:"body"`

	// KeyID is the id of the key that authenticated the message (the order
	// key or the fleet key); Open fills it in, it is not part of the
	// signed envelope.
	KeyID string `json:"-"`
}

// DecodeBody unmarshals the body into v, refusing unknown fields.
func (e *Envelope) DecodeBody(v any) error {
	return decodeStrict(e.Body, v)
}
