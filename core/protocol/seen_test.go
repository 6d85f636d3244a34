package protocol

import (
	"testing"
	"time"
)

func TestSeenSetExpiresEntries(t *testing.T) {
	f := newFleet(t, Options{ReplayWindow: time.Minute})
	for i := 0; i < 50; i++ {
		if _, err := f.orch.Open(f.seal(t, KindHeartbeat, 0, nil)); err != nil {
			t.Fatal(err)
		}
		f.clock.Add(time.Second)
	}
	if n := f.orch.seen.len(); n != 50 {
		t.Fatalf("seen-set holds %d, want 50", n)
	}
	// A minute later every entry is out of the window: the next Open lets
	// them all go, keeping only the newcomer.
	f.clock.Add(time.Minute)
	if _, err := f.orch.Open(f.seal(t, KindHeartbeat, 0, nil)); err != nil {
		t.Fatal(err)
	}
	if n := f.orch.seen.len(); n != 1 {
		t.Fatalf("seen-set holds %d after the window, want 1", n)
	}
}

// TestSeenSetBound: a flood inside the window never grows the set beyond
// MaxSeen, and never lets a replay of a forgotten message through.
func TestSeenSetBound(t *testing.T) {
	const max = 16
	f := newFleet(t, Options{MaxSeen: max})
	var msgs []string
	for i := 0; i < 10*max; i++ {
		raw := f.seal(t, KindHeartbeat, 0, nil)
		msgs = append(msgs, raw)
		if _, err := f.orch.Open(raw); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if n := f.orch.seen.len(); n > max {
			t.Fatalf("seen-set holds %d > %d", n, max)
		}
		f.clock.Add(time.Millisecond)
	}
	for i, raw := range msgs {
		_, err := f.orch.Open(raw)
		want := ReasonReplay
		if i < len(msgs)-max {
			// Forgotten under pressure: refused as too old to tell.
			want = ReasonExpired
		}
		if !isReason(err, want) {
			t.Fatalf("replay of message %d: err = %v, want %s", i, err, want)
		}
	}
	// A new message still opens.
	if _, err := f.orch.Open(f.seal(t, KindHeartbeat, 0, nil)); err != nil {
		t.Fatal(err)
	}
}

// TestSeenSetClockStepBack: after entries have left the window, stepping
// the clock back must not bring their replays back to life.
func TestSeenSetClockStepBack(t *testing.T) {
	f := newFleet(t, Options{ReplayWindow: time.Minute})
	raw := f.seal(t, KindHeartbeat, 0, nil)
	if _, err := f.orch.Open(raw); err != nil {
		t.Fatal(err)
	}
	f.clock.Add(2 * time.Minute)
	if _, err := f.orch.Open(f.seal(t, KindHeartbeat, 0, nil)); err != nil {
		t.Fatal(err)
	}
	f.clock.Add(-2 * time.Minute)
	if _, err := f.orch.Open(raw); err == nil {
		t.Fatal("replay accepted after the clock stepped back")
	}
}
