package protocol

import (
	"sort"
	"testing"
	"time"
)

// BenchmarkSealOpen measures one seal plus one open, for an order (Ed25519)
// and for a report (HMAC-SHA256), with a heartbeat-sized body. It repeats
// internally and reports percentiles, so `-benchtime 1x` is enough.
func BenchmarkSealOpen(b *testing.B) {
	const reps = 10000
	body := map[string]any{
		"state": "serving", "health": "ok", "load": 0.42,
		"metrics": map[string]float64{"connections": 17, "requests_per_second": 230.5, "memcached_hit_ratio": 0.93},
	}
	for _, k := range []Kind{KindHalt, KindHeartbeat} {
		name := "order"
		if k.IsReport() {
			name = "report"
		}
		b.Run(name, func(b *testing.B) {
			keys := testKeys("bench")
			orch, err := NewCodec(keys, Options{})
			if err != nil {
				b.Fatal(err)
			}
			agent, err := NewCodec(keys.Agent(), Options{})
			if err != nil {
				b.Fatal(err)
			}
			sealer, opener := orch, agent
			if k.IsReport() {
				sealer, opener = agent, orch
			}
			lat := make([]time.Duration, 0, reps)
			var elapsed time.Duration
			b.ResetTimer()
			for n := 0; n < b.N; n++ {
				lat = lat[:0]
				start := time.Now()
				for i := 0; i < reps; i++ {
					t0 := time.Now()
					raw, err := sealer.Seal(k, "orchestrator", "web-3", 1, body)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := opener.Open(raw); err != nil {
						b.Fatal(err)
					}
					lat = append(lat, time.Since(t0))
				}
				elapsed = time.Since(start)
			}
			b.StopTimer()
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			us := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Nanoseconds()) / 1e3 }
			b.ReportMetric(us(0.50), "p50-µs")
			b.ReportMetric(us(0.99), "p99-µs")
			b.ReportMetric(float64(reps)/elapsed.Seconds(), "ops/s")
		})
	}
}
