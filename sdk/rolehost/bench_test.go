package rolehost_test

import (
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/rosterhq/roster/sdk"
	"github.com/rosterhq/roster/sdk/internal/testrole"
	"github.com/rosterhq/roster/sdk/rolehost"
	"github.com/rosterhq/roster/sdk/roletest"
)

// percentile returns the p-th percentile (0..1) of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	return sorted[int(p*float64(len(sorted)-1))]
}

func healthCheckRoundTrips(b *testing.B, role rolehost.Role, n int) {
	b.Helper()
	cfg, err := sdk.ConfigFromMap(map[string]any{"greeting": "hello", "count": 2, "enabled": true, "tags": []string{"a", "b"}})
	if err != nil {
		b.Fatal(err)
	}
	req := sdk.HealthCheckRequest{
		Server:    sdk.Server{Role: "web", Name: "web-3", MachineID: "i-0abc", WorkDir: b.TempDir()},
		Config:    cfg,
		Endpoints: sdk.Endpoints{"http": "127.0.0.1:41234"},
	}
	ctx := b.Context()
	for range 100 { // warm up connections and caches
		if _, err := role.HealthCheck(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
	d := make([]time.Duration, n)
	b.ResetTimer()
	for i := range d {
		start := time.Now()
		if _, err := role.HealthCheck(ctx, req); err != nil {
			b.Fatal(err)
		}
		d[i] = time.Since(start)
	}
	b.StopTimer()
	slices.Sort(d)
	b.ReportMetric(float64(percentile(d, 0.5).Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(percentile(d, 0.99).Nanoseconds())/1e3, "p99-µs")
}

// BenchmarkHealthCheckRoundTrip measures 2000 HealthCheck calls through a
// real plugin process (go-plugin, AutoMTLS, gRPC over a unix socket) and the
// same calls through the in-process gRPC test connection.
func BenchmarkHealthCheckRoundTrip(b *testing.B) {
	const n = 2000
	bin := roletest.Build(b, echoPkg)
	b.Run("plugin_process", func(b *testing.B) {
		client := plugin.NewClient(rolehost.ClientConfig(exec.Command(bin), hclog.NewNullLogger()))
		defer client.Kill()
		role, err := rolehost.Dispense(client)
		if err != nil {
			b.Fatal(err)
		}
		healthCheckRoundTrips(b, role, n)
	})
	b.Run("in_process", func(b *testing.B) {
		healthCheckRoundTrips(b, roletest.InProcess(b, &testrole.Echo{}), n)
	})
}

// BenchmarkPluginStart measures 20 starts of a plugin process, from
// launching it to the answer of its first call (Info).
func BenchmarkPluginStart(b *testing.B) {
	const n = 20
	bin := roletest.Build(b, echoPkg)
	logger := hclog.NewNullLogger()
	start := func() time.Duration {
		t0 := time.Now()
		client := plugin.NewClient(rolehost.ClientConfig(exec.Command(bin), logger))
		defer client.Kill()
		role, err := rolehost.Dispense(client)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := role.Info(b.Context()); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0)
	}
	start() // the first start pays for the page cache
	d := make([]time.Duration, n)
	b.ResetTimer()
	for i := range d {
		d[i] = start()
	}
	b.StopTimer()
	slices.Sort(d)
	b.ReportMetric(float64(percentile(d, 0.5).Microseconds())/1e3, "p50-ms")
	b.ReportMetric(float64(percentile(d, 0.99).Microseconds())/1e3, "p99-ms")
}
