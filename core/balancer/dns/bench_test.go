package dns

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// BenchmarkUpdate measures, against a private BIND 9 on loopback, the time
// from Register's call to the record being answered, and of a Deregister
// (the record gone once it returns).
func BenchmarkUpdate(b *testing.B) {
	n := startNamed(b)
	dir := b.TempDir()
	bal := open(b, dir, n.block(b, dir, ""))
	ctx := context.Background()
	const rounds = 200
	var reg, dereg []time.Duration
	for range b.N {
		for i := range rounds {
			server := fmt.Sprintf("web-%d", i)
			ip := fmt.Sprintf("127.0.%d.%d", i/250, i%250+1)
			start := time.Now()
			if err := bal.Register(ctx, "web", server, ip+":80"); err != nil {
				b.Fatal(err)
			}
			for deadline := time.Now().Add(5 * time.Second); !has(n.lookup(b, "web.example.test.", mdns.TypeA), ip); {
				if time.Now().After(deadline) {
					b.Fatalf("%s not answered 5s after Register", ip)
				}
			}
			reg = append(reg, time.Since(start))
			start = time.Now()
			if err := bal.Deregister(ctx, "web", server); err != nil {
				b.Fatal(err)
			}
			dereg = append(dereg, time.Since(start))
			if has(n.lookup(b, "web.example.test.", mdns.TypeA), ip) {
				b.Fatalf("%s still answered after Deregister", ip)
			}
		}
	}
	report(b, reg, "register")
	report(b, dereg, "deregister")
}

func has(rrs []mdns.RR, ip string) bool {
	for _, a := range addrs(rrs) {
		if a == ip {
			return true
		}
	}
	return false
}

func report(b *testing.B, d []time.Duration, what string) {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	pct := func(p float64) float64 { return float64(d[int(p*float64(len(d)-1))].Microseconds()) / 1000 }
	b.ReportMetric(pct(0.5), what+"-p50-ms")
	b.ReportMetric(pct(0.99), what+"-p99-ms")
}
