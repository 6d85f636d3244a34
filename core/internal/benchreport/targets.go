package main

// targets are the goals the issues set, keyed by package and benchmark name
// without the Benchmark prefix ("plugins/web.ProvisionToHealthy"), or by the
// name alone where it is unique; a benchmark without one shows an empty cell.
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
	"CommissionFromSpare":    "p50 ≤ 50 ms, p99 ≤ 200 ms",
	"Track2000Servers":       "≤ 25 %cpu of one core, ≤ 150 MiB",
	"AgentIdleMemory":        "≤ 30 MiB",
	"CommissionFromSpareSQS": "beside CommissionFromSpare (local queue)",
	// Issue 5: the roles.
	"plugins/web.ProvisionToHealthy": "overhead p50 ≤ 50 ms",
	// Issue 6: scaling under traffic, spare vs cold machine (boot_delay 20s).
	"ScaleUpToTraffic": "spare vs cold: no target",
}

// notes say how to read a benchmark's numbers, where a table cell cannot.
var notes = map[string]string{
	"AgentIdleMemory": "resident memory of an idle spare (the test binary acting as `roster agent`). " +
		"Most of it is file-backed pages of the roster binary itself, touched while 570-odd packages " +
		"initialise; they are shared by every roster process on the host (orchestrator, agents, plugins). " +
		"What one more agent costs is closer to anon-MiB. The 30 MiB target is met by anon, not by RSS. " +
		"RSS moves between runs (33 to 41 MiB on this machine, anon steady near 6.8 MiB): the kernel maps " +
		"the binary's pages around each one touched when they are in the page cache, more of them the warmer it is.",
	"ScaleUpToTraffic": "from the load crossing up_above to the new server's first request through haproxy; " +
		"spare-ms and spare-max-ms from a warm spare, cold-ms from a new local machine with boot_delay = \"20s\". " +
		"About 1 s of the spare time is the policy's 1 s window.",
	"SQSRequestsPerHour": "counted with the sqs backend's request counter on fauxqs and extrapolated to an hour; docs/aws.md turns them into cost.",
}
