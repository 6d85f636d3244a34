package orchestrator

import (
	"time"

	"github.com/rosterhq/roster/core/protocol"
)

// runtime is what the orchestrator rebuilds after a restart instead of
// storing: liveness, health streaks, loads and metric samples, progress.
type runtime struct {
	servers  map[string]*liveServer
	machines map[string]*liveMachine
	roles    map[string]*liveRole
	// unknown are machines the provider lists that the state does not know,
	// with when they were first seen.
	unknown map[string]time.Time
	// launchBackoff holds launches back after the provider refused one.
	launchBackoff time.Time
	// syncing is true while a sync with the provider, the queue backend
	// and the balancers runs.
	syncing bool
	// configSeq numbers the Configure orders of this run; with the epoch
	// above it, it makes their generations grow across restarts.
	configSeq uint64
}

type liveServer struct {
	lastSeen time.Time
	// heartbeats is true once the server heartbeated in this run.
	heartbeats      bool
	healthy         bool
	unhealthyStreak int
	reason          string
	load            float64
	metrics         map[string]float64
	agentState      string
	progress        *Progress
	// unsent is true while the commission order could not be sent.
	unsent bool
	// resendAt is when an unsent commission may be sent (again).
	resendAt time.Time
	// sentAt is when the last commission copy went out.
	sentAt time.Time
	// outbox holds a commission sealed in this pass, sent once the state
	// is written.
	outbox string
	// draining is true while the drain goroutine runs.
	draining bool
}

type liveMachine struct {
	lastSeen     time.Time
	agentState   string
	hostname     string
	agentVersion string
	// launching is true while the provider's Launch call runs.
	launching bool
	// terminateFailed is true when the provider refused to terminate it;
	// the next sync retries.
	terminateFailed bool
	// withdrawn are the commissions the machine claimed and then gave up
	// (Failed, stage claim): a claim for one of them that arrives late is
	// not granted.
	withdrawn []string
}

type liveRole struct {
	samples []sample
	// since is when the role's samples began covering time without a gap
	// (zero: no samples).
	since    time.Time
	decision Decision
	decided  bool
	avg      float64
	haveAvg  bool
	// pendingReplace names servers removed as failed whose replacements
	// reconcile commissions first.
	pendingReplace []string
	// failures counts failed or abandoned provisions in a row; holdUntil
	// is when the role may commission again.
	failures  int
	holdUntil time.Time
	// config caches the role's config resolved for peersSum, the sum of
	// the referenced pools it was resolved from.
	config    protocol.Value
	peersSum  string
	configErr error
	// spec is the role's spec (roleSpec), once specDone.
	spec     string
	specDone bool
	// refreshHeld is set once the event saying that the role's outdated
	// servers are not replaced (refresh off) was recorded.
	refreshHeld bool
}

type sample struct {
	at    time.Time
	value float64
}

// Progress is the last provisioning step a server reported.
type Progress struct {
	Step     string    `json:"step"`
	Message  string    `json:"message"`
	Fraction float64   `json:"fraction"`
	At       time.Time `json:"at"`
}

func newRuntime() runtime {
	return runtime{
		servers:  map[string]*liveServer{},
		machines: map[string]*liveMachine{},
		roles:    map[string]*liveRole{},
		unknown:  map[string]time.Time{},
	}
}

func (r *runtime) server(name string) *liveServer {
	l := r.servers[name]
	if l == nil {
		l = &liveServer{healthy: true}
		r.servers[name] = l
	}
	return l
}

func (r *runtime) machine(id string) *liveMachine {
	l := r.machines[id]
	if l == nil {
		l = &liveMachine{}
		r.machines[id] = l
	}
	return l
}

func (r *runtime) role(name string) *liveRole {
	l := r.roles[name]
	if l == nil {
		l = &liveRole{}
		r.roles[name] = l
	}
	return l
}

// add records a sample and forgets those older than window.
func (l *liveRole) add(at time.Time, v float64, window time.Duration) {
	if l.since.IsZero() {
		l.since = at
	}
	l.samples = append(l.samples, sample{at: at, value: v})
	l.prune(at, window)
}

func (l *liveRole) prune(now time.Time, window time.Duration) {
	cut := now.Add(-window)
	i := 0
	for i < len(l.samples) && l.samples[i].at.Before(cut) {
		i++
	}
	if i > 0 {
		l.samples = append(l.samples[:0], l.samples[i:]...)
	}
}

// average returns the mean of the samples in the window, and whether the
// samples cover the whole window (they began at least window ago and none
// is missing now).
func (l *liveRole) average(now time.Time, window time.Duration) (float64, bool) {
	l.prune(now, window)
	if len(l.samples) == 0 {
		l.since = time.Time{}
		return 0, false
	}
	sum := 0.0
	for _, s := range l.samples {
		sum += s.value
	}
	return sum / float64(len(l.samples)), now.Sub(l.since) >= window
}
