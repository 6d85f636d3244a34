package pluginhost

import (
	"context"
	"sort"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/rosterhq/roster/sdk"
)

func percentile(d []time.Duration, p float64) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[int(float64(len(s)-1)*p)]
}

// BenchmarkHostHealthCheck is a HealthCheck round trip through a plugin
// process the host launched and supervises (third-party binary, AutoMTLS).
func BenchmarkHostHealthCheck(b *testing.B) {
	dir, _ := testPlugin(b)
	h, err := New(Options{PluginDir: dir, Logger: hclog.NewNullLogger()})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	p, err := h.Launch(ctx, "testplugin")
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	const n = 2000
	for i := 0; i < 100; i++ { // warm up
		if _, err := p.HealthCheck(ctx, sdk.HealthCheckRequest{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for range b.N {
		lat := make([]time.Duration, n)
		for i := range lat {
			t0 := time.Now()
			if _, err := p.HealthCheck(ctx, sdk.HealthCheckRequest{}); err != nil {
				b.Fatal(err)
			}
			lat[i] = time.Since(t0)
		}
		b.ReportMetric(float64(percentile(lat, 0.5).Microseconds()), "p50-µs")
		b.ReportMetric(float64(percentile(lat, 0.99).Microseconds()), "p99-µs")
	}
}

// BenchmarkHostLaunch is the time from Launch to the first answered call,
// with and without a checksum pin (the pin hashes the executable first).
func BenchmarkHostLaunch(b *testing.B) {
	dir, path := testPlugin(b)
	digest, err := FileDigest(path)
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		pins map[string]string
	}{{"unpinned", nil}, {"pinned", map[string]string{"testplugin": digest}}} {
		b.Run(bc.name, func(b *testing.B) {
			h, err := New(Options{PluginDir: dir, Logger: hclog.NewNullLogger(), Pins: bc.pins})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			const n = 20
			for range b.N {
				lat := make([]time.Duration, n)
				for i := range lat {
					t0 := time.Now()
					p, err := h.Launch(ctx, "testplugin")
					if err != nil {
						b.Fatal(err)
					}
					if _, err := p.HealthCheck(ctx, sdk.HealthCheckRequest{}); err != nil {
						b.Fatal(err)
					}
					lat[i] = time.Since(t0)
					_ = p.Close()
				}
				b.ReportMetric(float64(percentile(lat, 0.5).Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "p99-ms")
			}
		})
	}
}
