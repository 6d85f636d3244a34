package protocol

import (
	"container/heap"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
)

// seenKey names a message for replay detection. The key id is part of it so
// that a holder of the fleet key who copies an order's id into a forged
// report cannot get the genuine order refused as a replay.
type seenKey struct {
	kid [kidLen]byte
	id  ulid.ULID
}

type seenEntry struct {
	at  int64 // sent_at, Unix nanoseconds
	key seenKey
}

// seenHeap orders entries by send time, oldest first.
type seenHeap []seenEntry

func (h seenHeap) Len() int           { return len(h) }
func (h seenHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h seenHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *seenHeap) Push(x any)        { *h = append(*h, x.(seenEntry)) }
func (h *seenHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

type seenResult int

const (
	seenNew        seenResult = iota
	seenReplay                // the key is in the set
	seenBelowFloor            // sent no later than an entry the set has let go
)

// seenSet remembers the messages accepted within the replay window. It keeps
// one invariant: every accepted message sent after floor is in the set. An
// entry leaves the set when it falls out of the window (the age check
// rejects its replays from then on) or when the set is full; either way the
// floor rises to the entry's send time, so a message no newer than the floor
// is refused rather than risked. That also covers a clock stepped back
// after entries were let go.
type seenSet struct {
	mu     sync.Mutex
	max    int
	window time.Duration
	m      map[seenKey]struct{}
	h      seenHeap
	floor  int64
}

func newSeenSet(max int, window time.Duration) *seenSet {
	return &seenSet{max: max, window: window, m: map[seenKey]struct{}{}, floor: -1 << 63}
}

// add records k, sent at sentAt, unless it was seen before or is below the
// floor.
func (s *seenSet) add(k seenKey, sentAt, now time.Time) seenResult {
	at := sentAt.UnixNano()
	cutoff := now.Add(-s.window).UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.h) > 0 && s.h[0].at < cutoff {
		s.drop()
	}
	if _, ok := s.m[k]; ok {
		return seenReplay
	}
	if at <= s.floor {
		return seenBelowFloor
	}
	if len(s.h) >= s.max {
		if at <= s.h[0].at {
			// The newcomer is the oldest of all: letting it in would
			// only push itself out again.
			return seenBelowFloor
		}
		s.drop()
	}
	s.m[k] = struct{}{}
	heap.Push(&s.h, seenEntry{at: at, key: k})
	return seenNew
}

// drop lets go of the oldest entry and raises the floor to it.
func (s *seenSet) drop() {
	e := heap.Pop(&s.h).(seenEntry)
	delete(s.m, e.key)
	if e.at > s.floor {
		s.floor = e.at
	}
}

func (s *seenSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}
