// Package ec2 is the provider that launches roster machines as Amazon EC2
// instances.
//
// A machine is launched from a launch template or from an AMI and instance
// type, in one of the configured subnets (spread by the launch token; a
// subnet without capacity is skipped), tagged with roster:cluster and
// roster:machine on the instance and its volumes. Its user data is a
// cloud-config that installs the roster binary (checked against its
// SHA-256), fetches the fleet key from SSM Parameter Store, writes the
// order public key and the agent's flags, and starts `roster agent` as a
// systemd unit. The templates are in templates/.
//
// Idempotency: a launch first looks for an instance tagged with the
// machine id, then calls RunInstances with a ClientToken derived from the
// launch token and the subnet, so that a retried launch returns the
// instance the first try made rather than a second one.
//
// Errors: InsufficientInstanceCapacity (and a full subnet, a Spot price
// too low, a zone without the instance type) moves on to the next subnet,
// then wraps provider.ErrCapacity; InstanceLimitExceeded, VcpuLimitExceeded
// and MaxSpotInstanceCountExceeded wrap provider.ErrCapacity at once.
// Throttling (RequestLimitExceeded) and 5xx answers are retried by the
// SDK's standard retryer with exponential backoff and jitter.
//
// Testing: there is no local EC2 server, so the tests run against a
// recorded-request fake of the EC2 Query API (an httptest server that
// records the form-encoded requests and answers canned XML written from
// the EC2 API reference, in testdata/). It checks what Roster sends and
// how it handles the answers; it cannot check that AWS accepts the
// requests, that the IAM policies allow them or that the user data boots
// an instance. It is the one fake the project accepts; docs/aws.md says
// what it leaves untested.
package ec2
