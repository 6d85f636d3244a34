// Package provider is where machines come from and go back to. A machine is a
// host running `roster agent`: with the `local` provider a process on this
// host, with `ec2` an EC2 instance. The orchestrator only launches,
// terminates and lists; everything else it learns from the agents' reports.
package provider

import (
	"context"
	"errors"
	"time"
)

// Tags every provider puts on the machines it launches, so that reconcile
// can find a cluster's machines after a restart.
const (
	TagCluster = "roster:cluster"
	TagMachine = "roster:machine"
)

// Errors providers return (wrapped); test with errors.Is.
var (
	// ErrNotFound: no such machine (already gone counts as success for
	// Terminate).
	ErrNotFound = errors.New("machine not found")
	// ErrCapacity: the provider cannot launch more machines now (a limit,
	// no capacity); try again later.
	ErrCapacity = errors.New("no capacity to launch a machine")
)

// Provider launches and terminates machines.
type Provider interface {
	// Name is the provider's type: "local", "ec2".
	Name() string
	// Launch starts a machine. Token makes it idempotent: launching twice
	// with one token yields one machine (the same Machine is returned).
	Launch(ctx context.Context, req LaunchRequest) (Machine, error)
	// Terminate stops the machine and releases it; a machine that is
	// already gone is not an error.
	Terminate(ctx context.Context, id string) error
	// List returns the machines whose tags include all of tags.
	List(ctx context.Context, tags map[string]string) ([]Machine, error)
	// Close releases the provider's resources; it does not terminate
	// machines (the orchestrator decides that).
	Close() error
}

// LaunchRequest describes the machine to launch.
type LaunchRequest struct {
	// Token is the idempotency token (at most 64 printable characters).
	Token string
	// MachineID is the id the orchestrator chose for the machine; the agent
	// reports it in every message.
	MachineID string
	Tags      map[string]string
}

// Machine is a launched machine as the provider sees it.
type Machine struct {
	ID         string // the orchestrator's machine id
	ProviderID string // the provider's own id (a pid, an instance id)
	State      string // "pending", "running", "stopped"…
	Address    string // where it can be reached, if known
	LaunchedAt time.Time
	Tags       map[string]string
}
