package main

// targets are the goals the issues set, keyed by benchmark name without the
// Benchmark prefix; a benchmark without one shows an empty cell.
var targets = map[string]string{
	// Issue 2: the plugin transport.
	"HealthCheckRoundTrip/plugin_process": "p50 ≤ 250 µs",
	"PluginStart":                         "p50 ≤ 30 ms",
	// Issue 3: the local queue.
	"WakeLatency/local": "p50 ≤ 5 ms, p99 ≤ 20 ms",
	"RoundTrips/local":  "≥ 2,000 round trips/s",
	"Batched/local":     "≥ 10,000 msgs/s",
	"IdleSpareRequests": "≈ 180 requests/h",
	// Issue 4: the control loop.
	"CommissionFromSpare": "p50 ≤ 50 ms, p99 ≤ 200 ms",
	"Track2000Servers":    "≤ 25 %cpu of one core, ≤ 150 MiB",
	"AgentIdleMemory":     "≤ 30 MiB",
	// Issue 5: the roles.
	"ProvisionToHealthy": "overhead p50 ≤ 50 ms",
}
