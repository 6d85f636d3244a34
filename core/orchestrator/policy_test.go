package orchestrator

import (
	"strings"
	"testing"
	"time"

	"github.com/rosterhq/roster/core/config"
)

func TestDecide(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	thr := &config.Scale{Metric: "load", UpAbove: 0.75, DownBelow: 0.25, Window: 30 * time.Second, CooldownUp: 30 * time.Second, CooldownDown: 2 * time.Minute}
	tgt := &config.Scale{Metric: "rps", Target: 100, Tolerance: 0.1, Window: time.Minute, CooldownUp: 10 * time.Second, CooldownDown: time.Minute}
	long := now.Add(-time.Hour)
	c28 := config.Count{Min: 2, Max: 8}

	cases := []struct {
		name    string
		in      PolicyInput
		want    int
		reason  string // substring of Reason; "" means Reason must be empty
		waiting string // substring of Waiting; "" means Waiting must be empty
	}{
		{"below min grows to min", PolicyInput{Count: c28, Scale: thr, Current: 0}, 2, "below count.min", ""},
		{"below min ignores cooldown and metric", PolicyInput{Count: c28, Scale: thr, Current: 1, LastChange: now}, 2, "below count.min", ""},
		{"above max shrinks to max", PolicyInput{Count: c28, Scale: thr, Current: 10, Ready: 10, HaveMetric: true, Avg: 0.99}, 8, "above count.max", ""},
		{"no scale block stays at min", PolicyInput{Count: c28, Current: 3, Ready: 3}, 2, "no scale block", ""},
		{"no scale block at min holds", PolicyInput{Count: c28, Current: 2, Ready: 2}, 2, "", ""},
		{"missing metric holds, never scales in", PolicyInput{Count: c28, Scale: thr, Current: 5, Ready: 5, HaveMetric: false, Avg: 0}, 5, "", ""},
		{"no ready server holds", PolicyInput{Count: c28, Scale: thr, Current: 3, Ready: 0, HaveMetric: true, Avg: 0.9}, 3, "", ""},
		{"high load scales up by one", PolicyInput{Count: c28, Scale: thr, Current: 2, Ready: 2, HaveMetric: true, Avg: 0.91, LastChange: long}, 3, "load 0.91 > 0.75 over 30s", ""},
		{"never scaled: no cooldown", PolicyInput{Count: c28, Scale: thr, Current: 2, Ready: 2, HaveMetric: true, Avg: 0.91}, 3, "0.91 > 0.75", ""},
		{"high load at max holds", PolicyInput{Count: c28, Scale: thr, Current: 8, Ready: 8, HaveMetric: true, Avg: 0.99, LastChange: long}, 8, "", ""},
		{"cooldown_up holds a scale-up", PolicyInput{Count: c28, Scale: thr, Current: 2, Ready: 2, HaveMetric: true, Avg: 0.91, LastChange: now.Add(-10 * time.Second)}, 2, "", "cooldown_up (20s left)"},
		{"cooldown_up over", PolicyInput{Count: c28, Scale: thr, Current: 2, Ready: 2, HaveMetric: true, Avg: 0.91, LastChange: now.Add(-31 * time.Second)}, 3, "0.91 > 0.75", ""},
		{"provisioning counts toward capacity", PolicyInput{Count: c28, Scale: thr, Current: 3, Ready: 2, HaveMetric: true, Avg: 0.9, LastChange: long}, 3, "", ""},
		{"provisioning, still too loaded", PolicyInput{Count: c28, Scale: thr, Current: 3, Ready: 2, HaveMetric: true, Avg: 1.5, LastChange: long}, 4, "projected with 1 provisioning", ""},
		{"low load scales in by one", PolicyInput{Count: c28, Scale: thr, Current: 4, Ready: 4, HaveMetric: true, Avg: 0.1, LastChange: long}, 3, "load 0.10 < 0.25 over 30s", ""},
		{"low load at min holds", PolicyInput{Count: c28, Scale: thr, Current: 2, Ready: 2, HaveMetric: true, Avg: 0.0, LastChange: long}, 2, "", ""},
		{"cooldown_down holds a scale-in", PolicyInput{Count: c28, Scale: thr, Current: 4, Ready: 4, HaveMetric: true, Avg: 0.1, LastChange: now.Add(-time.Minute)}, 4, "", "cooldown_down (1m left)"},
		{"scale-in waits for provisioning", PolicyInput{Count: c28, Scale: thr, Current: 4, Ready: 3, HaveMetric: true, Avg: 0.1, LastChange: long}, 4, "", "provisioning"},
		{"between thresholds holds", PolicyInput{Count: c28, Scale: thr, Current: 4, Ready: 4, HaveMetric: true, Avg: 0.5, LastChange: long}, 4, "", ""},
		{"scale-in that would flap is held", PolicyInput{Count: config.Count{Min: 1, Max: 8}, Scale: &config.Scale{Metric: "load", UpAbove: 0.3, DownBelow: 0.2, Window: time.Second}, Current: 2, Ready: 2, HaveMetric: true, Avg: 0.19, LastChange: long}, 2, "", "one server fewer"},
		{"target: above tolerance scales to ceil", PolicyInput{Count: c28, Scale: tgt, Current: 4, Ready: 4, HaveMetric: true, Avg: 130, LastChange: long}, 6, "rps 130.00 > target 100.00", ""},
		{"target: within tolerance holds", PolicyInput{Count: c28, Scale: tgt, Current: 4, Ready: 4, HaveMetric: true, Avg: 108, LastChange: long}, 4, "", ""},
		{"target: below tolerance scales in", PolicyInput{Count: c28, Scale: tgt, Current: 6, Ready: 6, HaveMetric: true, Avg: 40, LastChange: long}, 3, "rps 40.00 < target", ""},
		{"target: clamped to max", PolicyInput{Count: c28, Scale: tgt, Current: 4, Ready: 4, HaveMetric: true, Avg: 1000, LastChange: long}, 8, "target", ""},
		{"target: clamped to min", PolicyInput{Count: c28, Scale: tgt, Current: 4, Ready: 4, HaveMetric: true, Avg: 1, LastChange: long}, 2, "target", ""},
		{"target: provisioning projected", PolicyInput{Count: c28, Scale: tgt, Current: 4, Ready: 2, HaveMetric: true, Avg: 200, LastChange: long}, 4, "", ""},
		{"target: scale-in waits for provisioning", PolicyInput{Count: c28, Scale: tgt, Current: 4, Ready: 3, HaveMetric: true, Avg: 10, LastChange: long}, 4, "", "provisioning"},
		{"target: cooldown_up", PolicyInput{Count: c28, Scale: tgt, Current: 4, Ready: 4, HaveMetric: true, Avg: 200, LastChange: now.Add(-5 * time.Second)}, 4, "", "cooldown_up"},
		{"target: default tolerance 10%", PolicyInput{Count: c28, Scale: &config.Scale{Metric: "rps", Target: 100}, Current: 4, Ready: 4, HaveMetric: true, Avg: 109}, 4, "", ""},
		{"max below min means min", PolicyInput{Count: config.Count{Min: 3, Max: 1}, Scale: thr, Current: 3, Ready: 3, HaveMetric: true, Avg: 0.99}, 3, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.in.Now = now
			c.in.Role = "web"
			d := Decide(c.in)
			if d.Desired != c.want {
				t.Errorf("desired = %d, want %d (%+v)", d.Desired, c.want, d)
			}
			if (c.reason == "") != (d.Reason == "") || !strings.Contains(d.Reason, c.reason) {
				t.Errorf("reason = %q, want it to contain %q", d.Reason, c.reason)
			}
			if (c.waiting == "") != (d.Waiting == "") || !strings.Contains(d.Waiting, c.waiting) {
				t.Errorf("waiting = %q, want it to contain %q", d.Waiting, c.waiting)
			}
		})
	}
}

func TestFmtDur(t *testing.T) {
	for d, want := range map[time.Duration]string{30 * time.Second: "30s", 2 * time.Minute: "2m", 1500 * time.Millisecond: "1.5s", 0: "0s", 90 * time.Minute: "1h30m"} {
		if got := fmtDur(d); got != want {
			t.Errorf("fmtDur(%v) = %q, want %q", d, got, want)
		}
	}
}
