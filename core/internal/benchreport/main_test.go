package main

import (
	"strings"
	"testing"
)

func TestParseAndRender(t *testing.T) {
	in := `goos: linux
pkg: github.com/rosterhq/roster/core/queue/local
BenchmarkWakeUp-2   	       1	1234567 ns/op	         1.20 p50-ms	         4.80 p99-ms
BenchmarkRoundTrip-2	       1	 999 ns/op	      2500 roundtrips/s	  16 B/op
pkg: github.com/rosterhq/roster/sdk/rolehost
--- FAIL: BenchmarkBroken
BenchmarkHealthCheck-2	1	5 ns/op	120 p50-µs
`
	rs, fails := parse(strings.NewReader(in))
	if len(rs) != 3 {
		t.Fatalf("got %d results, want 3: %+v", len(rs), rs)
	}
	if rs[0].name != "BenchmarkWakeUp" || rs[0].metrics["p99-ms"] != "4.80" {
		t.Fatalf("first result parsed wrong: %+v", rs[0])
	}
	if _, ok := rs[1].metrics["B/op"]; ok {
		t.Fatalf("B/op should be dropped: %+v", rs[1])
	}
	if len(fails) != 1 {
		t.Fatalf("failures = %v", fails)
	}
	// A target by package and name, and one by name alone.
	targets["core/queue/local.WakeUp"] = "p50 ≤ 5 ms"
	targets["RoundTrip"] = "≥ 2,000/s"
	defer delete(targets, "core/queue/local.WakeUp")
	defer delete(targets, "RoundTrip")
	var b strings.Builder
	render(&b, rs, fails)
	out := b.String()
	for _, want := range []string{"| WakeUp | 1.20 | 4.80 |  | p50 ≤ 5 ms |", "| RoundTrip |  |  | 2500 | ≥ 2,000/s |"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for _, want := range []string{"## core/queue/local", "| WakeUp | 1.20 | 4.80 |  |", "| RoundTrip |  |  | 2500 |", "## sdk/rolehost", "## Failures"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
