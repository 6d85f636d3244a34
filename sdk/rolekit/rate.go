package rolekit

import (
	"sync"
	"time"
)

// Sample is a reading of a counter that only grows (requests served,
// transactions committed).
type Sample struct {
	At    time.Time
	Count float64
}

// PerSecond returns the counter's increase per second from prev to cur,
// less own (what the reading itself adds to the counter: a health check's
// own requests). ok is false when there is no rate: no previous sample, the
// counter went back (the daemon restarted), or no time passed.
func PerSecond(prev, cur Sample, own float64) (rate float64, ok bool) {
	if prev.At.IsZero() || cur.Count < prev.Count {
		return 0, false
	}
	secs := cur.At.Sub(prev.At).Seconds()
	if secs <= 0 {
		return 0, false
	}
	return max(cur.Count-prev.Count-own, 0) / secs, true
}

// Rate keeps the previous sample of a counter in memory. The zero value is
// ready to use and safe for concurrent use.
type Rate struct {
	mu   sync.Mutex
	prev Sample
}

// Observe records cur and returns the rate since the previous sample (see
// PerSecond).
func (r *Rate) Observe(cur Sample, own float64) (float64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	prev := r.prev
	r.prev = cur
	return PerSecond(prev, cur, own)
}

// Reset forgets the previous sample: the next rate starts afresh (after a
// Provision restarted the daemon).
func (r *Rate) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.prev = Sample{}
}
