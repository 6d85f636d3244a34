package orchestrator

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/rosterhq/roster/core/config"
)

// PolicyInput is what the scaling policy sees of one role at one instant.
type PolicyInput struct {
	Role  string
	Count config.Count
	Scale *config.Scale // nil: the pool stays at Count.Min

	// Current is the pool's capacity: servers commissioning, provisioning
	// or ready. Servers draining or halting are on their way out and do
	// not count.
	Current int
	// Ready is how many of Current are ready; only they report load.
	Ready int

	// Avg is the average of Scale.Metric over Scale.Window across the ready
	// servers; it is meaningful only when HaveMetric.
	Avg float64
	// HaveMetric is false when no ready server reported the metric in the
	// window, or when the reports do not yet cover a whole window (after a
	// start, or while the pool had no ready server).
	HaveMetric bool

	Now time.Time
	// LastChange is when the pool size last changed by a decision of the
	// policy (zero: never). Cooldowns run from it.
	LastChange time.Time
}

// Decision is what the policy wants for a role.
type Decision struct {
	// Desired is the pool size the role should have.
	Desired int
	// Reason explains a change ("load 0.91 > 0.75 for 30s"); empty when
	// Desired == Current.
	Reason string
	// Waiting explains why a change the metric asks for is held back (a
	// cooldown, a pool still provisioning); empty otherwise.
	Waiting string
}

// Decide is the scaling policy: a pure function of its input, so that every
// rule is tested by table.
//
//   - count.min and count.max always win, cooldown or not, metric or not.
//   - A missing metric holds the pool: it never scales in on silence.
//   - Servers still provisioning count toward capacity but not toward load:
//     the load the pool will carry once they are ready is projected as
//     avg × ready / current.
//   - Threshold mode (up_above/down_below) moves one server at a time: up
//     when the projected load is above up_above, down when the measured
//     load is below down_below, nothing is provisioning, and removing one
//     server would not push the load above up_above (no flapping).
//   - Target mode (target > 0): desired = ceil(current × projected / target),
//     unchanged while projected is within target × (1 ± tolerance); it scales
//     in only when nothing is provisioning.
//   - Evaluation goes on during a cooldown; only the change waits: a scale-up
//     waits cooldown_up after the last change, a scale-in cooldown_down.
func Decide(in PolicyInput) Decision {
	cur := in.Current
	lo, hi := in.Count.Min, in.Count.Max
	if hi < lo {
		hi = lo
	}
	if cur < lo {
		return Decision{Desired: lo, Reason: fmt.Sprintf("%d below count.min %d", cur, lo)}
	}
	if cur > hi {
		return Decision{Desired: hi, Reason: fmt.Sprintf("%d above count.max %d", cur, hi)}
	}
	s := in.Scale
	if s == nil {
		if cur != lo {
			return Decision{Desired: lo, Reason: fmt.Sprintf("no scale block: pool stays at count.min %d", lo)}
		}
		return Decision{Desired: cur}
	}
	if !in.HaveMetric || in.Ready == 0 {
		return Decision{Desired: cur}
	}
	metric := s.Metric
	if metric == "" {
		metric = "load"
	}
	projected := in.Avg
	if cur > 0 {
		projected = in.Avg * float64(in.Ready) / float64(cur)
	}
	provisioning := cur > in.Ready
	window := fmtDur(s.Window)

	want := cur
	var reason string
	if s.Target > 0 {
		tol := s.Tolerance
		if tol <= 0 {
			tol = 0.1
		}
		if math.Abs(projected/s.Target-1) > tol {
			want = int(math.Ceil(float64(cur) * projected / s.Target))
			if want < 1 && cur > 0 {
				want = 1
			}
			if want < cur && provisioning {
				return Decision{Desired: cur, Waiting: "scale-in waits for provisioning servers"}
			}
			op := ">"
			if projected < s.Target {
				op = "<"
			}
			reason = fmt.Sprintf("%s %.2f %s target %.2f ±%.0f%% over %s", metric, projected, op, s.Target, tol*100, window)
		}
	} else {
		switch {
		case projected > s.UpAbove:
			want = cur + 1
			if provisioning {
				reason = fmt.Sprintf("%s %.2f > %.2f over %s (%.2f projected with %d provisioning)", metric, in.Avg, s.UpAbove, window, projected, cur-in.Ready)
			} else {
				reason = fmt.Sprintf("%s %.2f > %.2f over %s", metric, in.Avg, s.UpAbove, window)
			}
		case in.Avg < s.DownBelow && cur > lo:
			if provisioning {
				return Decision{Desired: cur, Waiting: "scale-in waits for provisioning servers"}
			}
			if cur > 1 && in.Avg*float64(cur)/float64(cur-1) > s.UpAbove {
				return Decision{Desired: cur, Waiting: fmt.Sprintf("one server fewer would put %s above %.2f", metric, s.UpAbove)}
			}
			want = cur - 1
			reason = fmt.Sprintf("%s %.2f < %.2f over %s", metric, in.Avg, s.DownBelow, window)
		}
	}
	if want > hi {
		want = hi
	}
	if want < lo {
		want = lo
	}
	if want == cur {
		return Decision{Desired: cur}
	}
	since := in.Now.Sub(in.LastChange)
	if want > cur && !in.LastChange.IsZero() && since < s.CooldownUp {
		return Decision{Desired: cur, Waiting: fmt.Sprintf("scale-up to %d in cooldown_up (%s left): %s", want, fmtDur(s.CooldownUp-since), reason)}
	}
	if want < cur && !in.LastChange.IsZero() && since < s.CooldownDown {
		return Decision{Desired: cur, Waiting: fmt.Sprintf("scale-in to %d in cooldown_down (%s left): %s", want, fmtDur(s.CooldownDown-since), reason)}
	}
	return Decision{Desired: want, Reason: reason}
}

// fmtDur prints a duration the way operators write them (30s, 2m0s → 2m).
func fmtDur(d time.Duration) string {
	if d <= 0 {
		return "0s"
	}
	d = d.Round(100 * time.Millisecond)
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
