package haproxy

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"
)

const benchRounds = 20

func percentile(d []time.Duration, p float64) float64 {
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p)
	return float64(s[i].Microseconds()) / 1000
}

// BenchmarkRegisterToFirstRequest measures the time from Register to the
// first request the new server answers through haproxy, next to a server
// that was there already.
func BenchmarkRegisterToFirstRequest(b *testing.B) {
	needHAProxy(b)
	ctx := context.Background()
	front := freeAddr(b)
	bal := openFront(b, b.TempDir(), fmt.Sprintf("frontend = %q\ncheck_path = \"/\"", front))
	base, fresh := newUpstream(b, "base"), newUpstream(b, "fresh")
	if err := bal.Register(ctx, "web", "web-base", base.endpoint()); err != nil {
		b.Fatal(err)
	}
	var took []time.Duration
	for range b.N {
		for range benchRounds {
			start := time.Now()
			if err := bal.Register(ctx, "web", "web-fresh", fresh.endpoint()); err != nil {
				b.Fatal(err)
			}
			for {
				body, err := get("http://" + front)
				if err != nil {
					b.Fatal(err)
				}
				if body == "fresh" {
					break
				}
				if time.Since(start) > 10*time.Second {
					b.Fatal("the new server took no request in 10s")
				}
			}
			took = append(took, time.Since(start))
			if err := bal.Deregister(ctx, "web", "web-fresh"); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(percentile(took, 0.5), "p50-ms")
	b.ReportMetric(percentile(took, 0.99), "p99-ms")
}

// BenchmarkDrainIdle measures Drain of a server without sessions.
func BenchmarkDrainIdle(b *testing.B) {
	drain, _ := benchIdle(b)
	b.ReportMetric(percentile(drain, 0.5), "p50-ms")
	b.ReportMetric(percentile(drain, 0.99), "p99-ms")
}

// BenchmarkDeregisterIdle measures Deregister of a drained server.
func BenchmarkDeregisterIdle(b *testing.B) {
	_, dereg := benchIdle(b)
	b.ReportMetric(percentile(dereg, 0.5), "p50-ms")
	b.ReportMetric(percentile(dereg, 0.99), "p99-ms")
}

func benchIdle(b *testing.B) (drain, dereg []time.Duration) {
	needHAProxy(b)
	ctx := context.Background()
	bal := openFront(b, b.TempDir(), fmt.Sprintf("frontend = %q", freeAddr(b)))
	u := newUpstream(b, "idle")
	for range b.N {
		for range benchRounds {
			if err := bal.Register(ctx, "web", "web-idle", u.endpoint()); err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			if err := bal.Drain(ctx, "web", "web-idle"); err != nil {
				b.Fatal(err)
			}
			drain = append(drain, time.Since(start))
			start = time.Now()
			if err := bal.Deregister(ctx, "web", "web-idle"); err != nil {
				b.Fatal(err)
			}
			dereg = append(dereg, time.Since(start))
		}
	}
	return drain, dereg
}
