package db

import (
	"context"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/rosterhq/roster/sdk"
	"github.com/rosterhq/roster/sdk/roletest"
)

// percentile returns the p-th percentile (0..100) of sorted durations, in
// the given unit.
func percentile(sorted []time.Duration, p float64, unit time.Duration) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p / 100)
	return float64(sorted[i]) / float64(unit)
}

// BenchmarkProvisionToHealthy measures a fresh primary from Provision (initdb,
// start, SELECT 1, roles, database, the lamp schema) to its first healthy
// check, then Teardown.
func BenchmarkProvisionToHealthy(b *testing.B) {
	requirePostgres(b)
	cfg := mustConfig(b, appCfg(b, nil))
	ctx := context.Background()
	for range b.N {
		var lat []time.Duration
		for i := range 5 {
			role := New()
			srv := sdk.Server{Name: "db-" + strconv.Itoa(i+1), WorkDir: roletest.WorkDir(b)}
			start := time.Now()
			if _, err := role.Provision(ctx, sdk.ProvisionRequest{Server: srv, Config: cfg}); err != nil {
				b.Fatal(err)
			}
			h, err := role.HealthCheck(ctx, sdk.HealthCheckRequest{Server: srv, Config: cfg})
			lat = append(lat, time.Since(start))
			if _, terr := role.Teardown(ctx, sdk.TeardownRequest{Server: srv, Config: cfg}); terr != nil {
				b.Fatal(terr)
			}
			if err != nil || !h.Healthy {
				b.Fatalf("HealthCheck: %+v %v", h, err)
			}
		}
		slices.Sort(lat)
		b.ReportMetric(percentile(lat, 50, time.Millisecond), "p50-ms")
		b.ReportMetric(percentile(lat, 100, time.Millisecond), "max-ms")
	}
}

// BenchmarkHealthCheck measures a health check (connect through the socket
// with pgx, SELECT 1, the metrics query) next to what forking psql for
// SELECT 1 alone costs, which is why the role uses a Go driver.
func BenchmarkHealthCheck(b *testing.B) {
	requirePostgres(b)
	role := New()
	srv := sdk.Server{Name: "db-1", WorkDir: roletest.WorkDir(b)}
	cfg := mustConfig(b, cfgMap(nil))
	provision(b, role, srv, cfg, nil)
	l := layoutOf(srv.WorkDir)
	st, err := loadState(l)
	if err != nil || st == nil {
		b.Fatal(err)
	}
	acct, err := clusterAccount()
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ResetTimer()
	for range b.N {
		var checks, forks []time.Duration
		for range 300 {
			start := time.Now()
			h, err := role.HealthCheck(ctx, sdk.HealthCheckRequest{Server: srv, Config: cfg})
			checks = append(checks, time.Since(start))
			if err != nil || !h.Healthy {
				b.Fatalf("HealthCheck: %+v %v", h, err)
			}
		}
		psql := filepath.Join(st.Bin, "psql")
		for range 100 {
			start := time.Now()
			cmd := exec.Command(psql, "-X", "-q", "-t", "-h", l.Socket, "-p", strconv.Itoa(st.Port), "-U", superuser, "-d", "postgres", "-c", "SELECT 1")
			cmd.Env = acct.env(nil)
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("psql: %v %s", err, out)
			}
			forks = append(forks, time.Since(start))
		}
		slices.Sort(checks)
		slices.Sort(forks)
		b.ReportMetric(percentile(checks, 50, time.Microsecond), "p50-µs")
		b.ReportMetric(percentile(checks, 99, time.Microsecond), "p99-µs")
		b.ReportMetric(percentile(forks, 50, time.Microsecond), "psql-p50-µs")
		b.ReportMetric(percentile(forks, 99, time.Microsecond), "psql-p99-µs")
	}
}
