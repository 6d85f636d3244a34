package tomcat

import (
	"context"
	"sort"
	"testing"
	"time"

	"github.com/rosterhq/roster/sdk"
	"github.com/rosterhq/roster/sdk/roletest"
)

// BenchmarkProvisionToHealthy measures the time from Provision to the first
// healthy HealthCheck of the example WAR (JVM start, deployment, first JSP
// compilation) with the default JVM options, and Teardown's time, over a few servers in a row.
func BenchmarkProvisionToHealthy(b *testing.B) {
	requireServices(b, false)
	const runs = 5
	ctx := context.Background()
	var ready, down []time.Duration
	for range b.N {
		for range runs {
			role := New()
			srv := sdk.Server{Name: "tomcat-1", WorkDir: roletest.WorkDir(b)}
			// The defaults: no jvm_options.
			cfg := mustConfig(b, cfgMap(b, map[string]any{"jvm_options": []any{}, "heap_mb": 256}))
			start := time.Now()
			resp, err := role.Provision(ctx, sdk.ProvisionRequest{Server: srv, Config: cfg})
			if err != nil {
				b.Fatal(err)
			}
			// Also when the benchmark fails half-way.
			b.Cleanup(func() { role.Teardown(context.Background(), sdk.TeardownRequest{Server: srv, Config: cfg}) })
			h, err := role.HealthCheck(ctx, sdk.HealthCheckRequest{Server: srv, Config: cfg, Endpoints: resp.Endpoints})
			if err != nil || !h.Healthy {
				b.Fatalf("HealthCheck: %+v %v", h, err)
			}
			ready = append(ready, time.Since(start))
			start = time.Now()
			if _, err := role.Teardown(ctx, sdk.TeardownRequest{Server: srv, Config: cfg, Endpoints: resp.Endpoints}); err != nil {
				b.Fatal(err)
			}
			down = append(down, time.Since(start))
		}
	}
	b.ReportMetric(percentile(ready, 0.5), "p50-ms")
	b.ReportMetric(percentile(ready, 0.99), "p99-ms")
	b.ReportMetric(percentile(down, 0.5), "teardown-p50-ms")
}

func percentile(d []time.Duration, p float64) float64 {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(float64(len(s)-1) * p)
	return float64(s[i]) / float64(time.Millisecond)
}
