package protocol

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"sync"
	"testing"
	"time"
)

// testKeys derives a fixed key set from a label, so that fuzz seeds built
// with it stay valid from run to run.
func testKeys(label string) Keys {
	seed := sha256.Sum256([]byte("order " + label))
	fleet := sha256.Sum256([]byte("fleet " + label))
	priv := ed25519.NewKeyFromSeed(seed[:])
	return Keys{OrderPrivate: priv, OrderPublic: priv.Public().(ed25519.PublicKey), FleetKey: fleet[:]}
}

// epoch0 is the fixed time the tests' clocks start at.
var epoch0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// clock is a settable clock for Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: epoch0} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fleet is an orchestrator's codec and an agent's codec sharing one clock.
type fleet struct {
	keys  Keys
	clock *clock
	orch  *Codec
	agent *Codec
}

func newFleet(t testing.TB, opts Options) *fleet {
	t.Helper()
	f := &fleet{keys: testKeys("test"), clock: newClock()}
	if opts.Now == nil {
		opts.Now = f.clock.Now
	}
	var err error
	if f.orch, err = NewCodec(f.keys, opts); err != nil {
		t.Fatal(err)
	}
	if f.agent, err = NewCodec(f.keys.Agent(), opts); err != nil {
		t.Fatal(err)
	}
	return f
}

// sealer returns the codec that seals kind k: the orchestrator for orders,
// the agent for reports.
func (f *fleet) sealer(k Kind) *Codec {
	if k.IsOrder() {
		return f.orch
	}
	return f.agent
}

// opener returns the codec that opens kind k.
func (f *fleet) opener(k Kind) *Codec {
	if k.IsOrder() {
		return f.agent
	}
	return f.orch
}

func (f *fleet) seal(t testing.TB, k Kind, epoch uint64, body any) string {
	t.Helper()
	raw, err := f.sealer(k).Seal(k, "orchestrator", "web-3", epoch, body)
	if err != nil {
		t.Fatalf("seal %s: %v", k, err)
	}
	return raw
}

// sealEnvelope signs hand-made envelope bytes, as only a key holder could:
// it reaches the checks that come after the signature.
func sealEnvelope(t testing.TB, c *Codec, order bool, env any) string {
	t.Helper()
	m, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := c.sealBytes(order, m)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

var allKinds = []Kind{
	KindCommission, KindHalt, KindPing, KindConfigure, KindRetire,
	KindHello, KindClaim, KindProgress, KindReady, KindHeartbeat, KindHalting, KindFailed,
}
