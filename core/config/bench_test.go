package config

import (
	"context"
	"sort"
	"testing"
	"time"
)

// BenchmarkLoad measures a whole two-phase load of testdata/good/full
// (roster.hcl, two role files, three roles with nested config blocks and
// references), schemas answered in memory: the cost of config itself.
func BenchmarkLoad(b *testing.B) {
	const n = 1000
	schemas := testSchemas().schemasFunc()
	for b.Loop() {
		durs := make([]time.Duration, n)
		for i := range durs {
			start := time.Now()
			_, diags := Load(context.Background(), "testdata/good/full/roster.hcl", schemas)
			durs[i] = time.Since(start)
			if diags.HasErrors() {
				b.Fatal(diags.Error())
			}
		}
		sort.Slice(durs, func(i, j int) bool { return durs[i] < durs[j] })
		b.ReportMetric(float64(durs[n/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(durs[n*99/100].Microseconds()), "p99-µs")
	}
}
