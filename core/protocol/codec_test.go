package protocol

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/oklog/ulid/v2"

	"github.com/rosterhq/roster/core/queue"
)

type testBody struct {
	Role  string            `json:"role"`
	Queue string            `json:"queue"`
	Tags  map[string]string `json:"tags,omitempty"`
}

func TestSealOpenEveryKind(t *testing.T) {
	f := newFleet(t, Options{})
	for _, k := range allKinds {
		t.Run(string(k), func(t *testing.T) {
			in := testBody{Role: "web", Queue: "demo-web-3-01j", Tags: map[string]string{"k": "v"}}
			raw := f.seal(t, k, 7, in)
			if !json.Valid([]byte(raw)) {
				t.Fatalf("sealed message is not JSON: %.80s", raw)
			}
			env, err := f.opener(k).Open(raw)
			if err != nil {
				t.Fatalf("open %s: %v", k, err)
			}
			if env.V != Version || env.Kind != k || env.Sender != "orchestrator" || env.Recipient != "web-3" || env.Epoch != 7 {
				t.Fatalf("envelope fields changed: %+v", env)
			}
			if !env.SentAt.Equal(epoch0) {
				t.Fatalf("sent_at = %v, want %v", env.SentAt, epoch0)
			}
			id, err := ulid.ParseStrict(env.ID)
			if err != nil || !ulid.Time(id.Time()).Equal(epoch0) {
				t.Fatalf("id %q is not a ULID of the send time: %v", env.ID, err)
			}
			wantKID := f.keys.FleetKeyID()
			if k.IsOrder() {
				wantKID = f.keys.OrderKeyID()
			}
			if env.KeyID != wantKID {
				t.Fatalf("key id = %q, want %q", env.KeyID, wantKID)
			}
			var out testBody
			if err := env.DecodeBody(&out); err != nil {
				t.Fatal(err)
			}
			if out.Role != in.Role || out.Queue != in.Queue || out.Tags["k"] != "v" {
				t.Fatalf("body = %+v, want %+v", out, in)
			}
		})
	}
	if n := f.orch.Accepted() + f.agent.Accepted(); n != uint64(len(allKinds)) {
		t.Fatalf("accepted = %d, want %d", n, len(allKinds))
	}
	for r, n := range f.orch.Rejected() {
		if n != 0 {
			t.Fatalf("orchestrator rejected %d for %s", n, r)
		}
	}
}

func TestSealNilAndRawBody(t *testing.T) {
	f := newFleet(t, Options{})
	env, err := f.agent.Open(f.seal(t, KindPing, 1, nil))
	if err != nil {
		t.Fatal(err)
	}
	if string(env.Body) != "{}" {
		t.Fatalf("nil body sealed as %s, want {}", env.Body)
	}
	env, err = f.orch.Open(f.seal(t, KindHeartbeat, 1, json.RawMessage(`{ "load" : 0.5 }`)))
	if err != nil {
		t.Fatal(err)
	}
	if string(env.Body) != `{"load":0.5}` {
		t.Fatalf("raw body sealed as %s", env.Body)
	}
}

func TestSealRefuses(t *testing.T) {
	f := newFleet(t, Options{})
	cases := []struct {
		name string
		c    *Codec
		kind Kind
		from string
		to   string
		body any
	}{
		{"agent seals an order", f.agent, KindCommission, "m-1", "spares", nil},
		{"unknown kind", f.orch, Kind("reboot"), "orchestrator", "web-3", nil},
		{"no sender", f.agent, KindHello, "", "orchestrator", nil},
		{"no recipient", f.agent, KindHello, "m-1", "", nil},
		{"control character", f.agent, KindHello, "m-1\n", "orchestrator", nil},
		{"overlong name", f.agent, KindHello, strings.Repeat("m", 256), "orchestrator", nil},
		{"body not an object", f.agent, KindHello, "m-1", "orchestrator", []int{1}},
		{"body does not marshal", f.agent, KindHello, "m-1", "orchestrator", func() {}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if raw, err := tc.c.Seal(tc.kind, tc.from, tc.to, 1, tc.body); err == nil {
				t.Fatalf("sealed %.60s", raw)
			}
		})
	}
}

func TestSealRefusesOversize(t *testing.T) {
	f := newFleet(t, Options{})
	// base64 makes the envelope a third larger: 200 KiB of body does not
	// fit, 150 KiB does.
	_, err := f.agent.Seal(KindProgress, "m-1", "orchestrator", 1, map[string]string{"log": strings.Repeat("x", 200<<10)})
	if !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("seal of 200 KiB: err = %v, want ErrMessageTooLarge", err)
	}
	raw, err := f.agent.Seal(KindProgress, "m-1", "orchestrator", 1, map[string]string{"log": strings.Repeat("x", 150<<10)})
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) > MaxMessageSize {
		t.Fatalf("sealed %d bytes", len(raw))
	}
	if _, err := f.orch.Open(raw); err != nil {
		t.Fatal(err)
	}
}

func TestIDsAreMonotonic(t *testing.T) {
	c, err := NewCodec(testKeys("ids"), Options{}) // the real clock
	if err != nil {
		t.Fatal(err)
	}
	opener, err := NewCodec(testKeys("ids"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	prev := ""
	for i := 0; i < 2000; i++ {
		raw, err := c.Seal(KindHeartbeat, "m-1", "orchestrator", 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		env, err := opener.Open(raw)
		if err != nil {
			t.Fatal(err)
		}
		if env.ID <= prev {
			t.Fatalf("id %s after %s: not increasing", env.ID, prev)
		}
		prev = env.ID
	}
}

// envMap is a valid envelope as a map, for tests that break one field and
// sign the result.
func envMap(t testing.TB, k Kind, at time.Time) map[string]any {
	t.Helper()
	id, err := newID(at)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]any{
		"v": Version, "id": id.String(), "kind": k, "sender": "orchestrator", "recipient": "web-3",
		"epoch": 3, "sent_at": ulid.Time(id.Time()).UTC(), "body": map[string]any{},
	}
}

func with(m map[string]any, kv ...any) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
		} else {
			out[kv[i].(string)] = kv[i+1]
		}
	}
	return out
}

func outer(v any, kid, sig, m string) string {
	b, _ := json.Marshal(map[string]any{"v": v, "kid": kid, "sig": sig, "m": m})
	return string(b)
}

// TestRejections covers every reason: each case must be rejected with its
// reason, counted once under that reason and reported to OnReject.
func TestRejections(t *testing.T) {
	type tc struct {
		name   string
		reason Reason
		// msg builds the message to open with codec c (the opener).
		msg  func(t *testing.T, f *fleet) (c *Codec, raw string)
		opts Options
	}
	order := func(t *testing.T, f *fleet) string { return f.seal(t, KindHalt, 3, nil) }
	report := func(t *testing.T, f *fleet) string { return f.seal(t, KindReady, 3, nil) }
	parts := func(raw string) (kid, sig, m string) {
		var w struct{ KID, Sig, M string }
		_ = json.Unmarshal([]byte(raw), &w)
		return w.KID, w.Sig, w.M
	}
	cases := []tc{
		{name: "oversize", reason: ReasonOversize, msg: func(t *testing.T, f *fleet) (*Codec, string) {
			return f.agent, strings.Repeat(" ", MaxMessageSize+1)
		}},
		{name: "not json", reason: ReasonMalformed, msg: func(t *testing.T, f *fleet) (*Codec, string) { return f.agent, "halt now" }},
		{name: "empty", reason: ReasonMalformed, msg: func(t *testing.T, f *fleet) (*Codec, string) { return f.agent, "" }},
		{name: "json array", reason: ReasonMalformed, msg: func(t *testing.T, f *fleet) (*Codec, string) { return f.agent, "[1]" }},
		{name: "no version", reason: ReasonMalformed, msg: func(t *testing.T, f *fleet) (*Codec, string) {
			kid, sig, m := parts(order(t, f))
			b, _ := json.Marshal(map[string]string{"kid": kid, "sig": sig, "m": m})
			return f.agent, string(b)
		}},
		{name: "missing signature", reason: ReasonMalformed, msg: func(t *testing.T, f *fleet) (*Codec, string) {
			kid, _, m := parts(order(t, f))
			return f.agent, outer(1, kid, "", m)
		}},
		{name: "unknown outer field", reason: ReasonMalformed, msg: func(t *testing.T, f *fleet) (*Codec, string) {
			raw := order(t, f)
			return f.agent, `{"x":1,` + raw[1:]
		}},
		{name: "duplicate outer field", reason: ReasonMalformed, msg: func(t *testing.T, f *fleet) (*Codec, string) {
			raw := order(t, f)
			return f.agent, `{"v":1,` + raw[1:]
		}},
		{name: "upper-case field name", reason: ReasonMalformed, msg: func(t *testing.T, f *fleet) (*Codec, string) {
			return f.agent, strings.Replace(order(t, f), `"m":`, `"M":`, 1)
		}},
		{name: "upper-case key id", reason: ReasonMalformed, msg: func(t *testing.T, f *fleet) (*Codec, string) {
			kid, sig, m := parts(order(t, f))
			return f.agent, outer(1, strings.ToUpper(kid), sig, m)
		}},
		{name: "trailing data", reason: ReasonMalformed, msg: func(t *testing.T, f *fleet) (*Codec, string) {
			return f.agent, order(t, f) + "{}"
		}},
		{name: "signature not base64", reason: ReasonMalformed, msg: func(t *testing.T, f *fleet) (*Codec, string) {
			kid, _, m := parts(order(t, f))
			return f.agent, outer(1, kid, "!!!!", m)
		}},
		{name: "envelope not json", reason: ReasonMalformed, msg: func(t *testing.T, f *fleet) (*Codec, string) {
			raw, _ := f.orch.sealBytes(true, []byte("halt"))
			return f.agent, raw
		}},
		{name: "unknown kind", reason: ReasonMalformed, msg: func(t *testing.T, f *fleet) (*Codec, string) {
			return f.agent, sealEnvelope(t, f.orch, true, with(envMap(t, KindHalt, epoch0), "kind", "reboot"))
		}},
		{name: "missing sender", reason: ReasonMalformed, msg: func(t *testing.T, f *fleet) (*Codec, string) {
			return f.agent, sealEnvelope(t, f.orch, true, with(envMap(t, KindHalt, epoch0), "sender", nil))
		}},
		{name: "missing body", reason: ReasonMalformed, msg: func(t *testing.T, f *fleet) (*Codec, string) {
			return f.agent, sealEnvelope(t, f.orch, true, with(envMap(t, KindHalt, epoch0), "body", nil))
		}},
		{name: "body not an object", reason: ReasonMalformed, msg: func(t *testing.T, f *fleet) (*Codec, string) {
			return f.agent, sealEnvelope(t, f.orch, true, with(envMap(t, KindHalt, epoch0), "body", "halt"))
		}},
		{name: "bad id", reason: ReasonMalformed, msg: func(t *testing.T, f *fleet) (*Codec, string) {
			return f.agent, sealEnvelope(t, f.orch, true, with(envMap(t, KindHalt, epoch0), "id", "42"))
		}},
		{name: "sent_at not the id's time", reason: ReasonMalformed, msg: func(t *testing.T, f *fleet) (*Codec, string) {
			return f.agent, sealEnvelope(t, f.orch, true, with(envMap(t, KindHalt, epoch0), "sent_at", epoch0.Add(time.Second)))
		}},
		{name: "unknown envelope field", reason: ReasonMalformed, msg: func(t *testing.T, f *fleet) (*Codec, string) {
			return f.agent, sealEnvelope(t, f.orch, true, with(envMap(t, KindHalt, epoch0), "admin", true))
		}},
		{name: "negative epoch", reason: ReasonMalformed, msg: func(t *testing.T, f *fleet) (*Codec, string) {
			return f.agent, sealEnvelope(t, f.orch, true, with(envMap(t, KindHalt, epoch0), "epoch", -1))
		}},
		{name: "outer version", reason: ReasonVersion, msg: func(t *testing.T, f *fleet) (*Codec, string) {
			kid, sig, m := parts(order(t, f))
			return f.agent, outer(2, kid, sig, m)
		}},
		{name: "envelope version", reason: ReasonVersion, msg: func(t *testing.T, f *fleet) (*Codec, string) {
			return f.agent, sealEnvelope(t, f.orch, true, with(envMap(t, KindHalt, epoch0), "v", 2))
		}},
		{name: "unknown order key", reason: ReasonUnknownKey, msg: func(t *testing.T, f *fleet) (*Codec, string) {
			other, _ := NewCodec(testKeys("other"), Options{Now: f.clock.Now})
			raw, _ := other.Seal(KindHalt, "orchestrator", "web-3", 3, nil)
			return f.agent, raw
		}},
		{name: "unknown fleet key", reason: ReasonUnknownKey, msg: func(t *testing.T, f *fleet) (*Codec, string) {
			other, _ := NewCodec(testKeys("other"), Options{Now: f.clock.Now})
			raw, _ := other.Seal(KindHeartbeat, "m-1", "orchestrator", 3, nil)
			return f.orch, raw
		}},
		{name: "order signed by another key under our key id", reason: ReasonBadSignature, msg: func(t *testing.T, f *fleet) (*Codec, string) {
			other, _ := NewCodec(testKeys("other"), Options{Now: f.clock.Now})
			_, sig, m := parts(mustSeal(t, other, KindHalt))
			kid, _, _ := parts(order(t, f))
			return f.agent, outer(1, kid, sig, m)
		}},
		{name: "report MAC'd by another key under our key id", reason: ReasonBadSignature, msg: func(t *testing.T, f *fleet) (*Codec, string) {
			other, _ := NewCodec(testKeys("other"), Options{Now: f.clock.Now})
			_, sig, m := parts(mustSeal(t, other, KindReady))
			kid, _, _ := parts(report(t, f))
			return f.orch, outer(1, kid, sig, m)
		}},
		{name: "envelope changed after signing", reason: ReasonBadSignature, msg: func(t *testing.T, f *fleet) (*Codec, string) {
			kid, sig, m := parts(order(t, f))
			b, _ := base64.StdEncoding.DecodeString(m)
			b = bytes.Replace(b, []byte(`"web-3"`), []byte(`"web-4"`), 1)
			return f.agent, outer(1, kid, sig, base64.StdEncoding.EncodeToString(b))
		}},
		{name: "truncated signature", reason: ReasonBadSignature, msg: func(t *testing.T, f *fleet) (*Codec, string) {
			kid, sig, m := parts(order(t, f))
			s, _ := base64.StdEncoding.DecodeString(sig)
			return f.agent, outer(1, kid, base64.StdEncoding.EncodeToString(s[:32]), m)
		}},
		{name: "order MAC'd with the fleet key", reason: ReasonDirection, msg: func(t *testing.T, f *fleet) (*Codec, string) {
			// What a stolen agent key allows: it must not order anyone.
			return f.agent, sealEnvelope(t, f.agent, false, envMap(t, KindCommission, epoch0))
		}},
		{name: "report signed as an order", reason: ReasonDirection, msg: func(t *testing.T, f *fleet) (*Codec, string) {
			return f.orch, sealEnvelope(t, f.orch, true, envMap(t, KindHeartbeat, epoch0))
		}},
		{name: "report at an orders-only codec", reason: ReasonDirection, opts: Options{Accept: AcceptOrders}, msg: func(t *testing.T, f *fleet) (*Codec, string) {
			return f.agent, report(t, f)
		}},
		{name: "order at a reports-only codec", reason: ReasonDirection, opts: Options{Accept: AcceptReports}, msg: func(t *testing.T, f *fleet) (*Codec, string) {
			return f.orch, order(t, f)
		}},
		{name: "order for someone else", reason: ReasonRecipient, opts: Options{Recipient: func(r string) bool { return r == "web-4" || r == "spares" }}, msg: func(t *testing.T, f *fleet) (*Codec, string) {
			return f.agent, order(t, f) // to web-3
		}},
		{name: "older than the window", reason: ReasonExpired, msg: func(t *testing.T, f *fleet) (*Codec, string) {
			raw := order(t, f)
			f.clock.Add(DefaultReplayWindow + time.Millisecond)
			return f.agent, raw
		}},
		{name: "report older than the window", reason: ReasonExpired, msg: func(t *testing.T, f *fleet) (*Codec, string) {
			raw := report(t, f)
			f.clock.Add(DefaultReplayWindow + time.Millisecond)
			return f.orch, raw
		}},
		{name: "from the future", reason: ReasonFuture, msg: func(t *testing.T, f *fleet) (*Codec, string) {
			ahead := newClock()
			ahead.Add(DefaultMaxSkew + time.Millisecond)
			c, _ := NewCodec(f.keys, Options{Now: ahead.Now})
			return f.agent, mustSeal(t, c, KindHalt)
		}},
		{name: "order from an old epoch", reason: ReasonStaleEpoch, msg: func(t *testing.T, f *fleet) (*Codec, string) {
			f.agent.SetMinEpoch(4)
			return f.agent, order(t, f) // epoch 3
		}},
		{name: "replay", reason: ReasonReplay, msg: func(t *testing.T, f *fleet) (*Codec, string) {
			raw := order(t, f)
			if _, err := f.agent.Open(raw); err != nil {
				t.Fatal(err)
			}
			f.clock.Add(DefaultReplayWindow) // still inside the window
			return f.agent, raw
		}},
		{name: "report replay", reason: ReasonReplay, msg: func(t *testing.T, f *fleet) (*Codec, string) {
			raw := report(t, f)
			if _, err := f.orch.Open(raw); err != nil {
				t.Fatal(err)
			}
			return f.orch, raw
		}},
	}
	seen := map[Reason]bool{}
	ran := 0
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var hook sync.Map
			opts := tc.opts
			opts.OnReject = func(r Reason) {
				n, _ := hook.LoadOrStore(r, new(atomic.Int64))
				n.(*atomic.Int64).Add(1)
			}
			var logBuf bytes.Buffer
			opts.Logger = hclog.New(&hclog.LoggerOptions{Output: &logBuf, Level: hclog.Warn})
			f := newFleet(t, opts)
			c, raw := tc.msg(t, f)
			env, err := c.Open(raw)
			if err == nil {
				t.Fatalf("opened %+v", env)
			}
			var re *RejectError
			if !errors.As(err, &re) {
				t.Fatalf("error %T is not a *RejectError: %v", err, err)
			}
			if r, ok := IsReject(err); !ok || r != tc.reason {
				t.Fatalf("reason = %q (%v), want %q", r, err, tc.reason)
			}
			for r, n := range c.Rejected() {
				want := uint64(0)
				if r == tc.reason {
					want = 1
				}
				if n != want {
					t.Fatalf("rejected[%s] = %d, want %d", r, n, want)
				}
			}
			n, _ := hook.Load(tc.reason)
			if n == nil || n.(*atomic.Int64).Load() != 1 {
				t.Fatalf("OnReject not called once for %s", tc.reason)
			}
			log := logBuf.String()
			if !strings.Contains(log, "reason="+string(tc.reason)) {
				t.Fatalf("rejection not logged: %q", log)
			}
			// The log must not carry key material or the message.
			for _, secret := range []string{string(f.keys.FleetKey), fmt.Sprintf("%x", f.keys.FleetKey), base64.StdEncoding.EncodeToString(f.keys.OrderPrivate.Seed())} {
				if strings.Contains(log, secret) {
					t.Fatal("the log holds key material")
				}
			}
			if len(raw) > 40 && strings.Contains(log, raw[len(raw)/2:len(raw)/2+20]) {
				t.Fatalf("the log echoes the message: %q", log)
			}
			seen[tc.reason] = true
			ran++
		})
	}
	if ran < len(cases) {
		return // some cases were filtered out with -run
	}
	for _, r := range Reasons {
		if !seen[r] {
			t.Errorf("no case for reason %s", r)
		}
	}
}

func mustSeal(t testing.TB, c *Codec, k Kind) string {
	t.Helper()
	raw, err := c.Seal(k, "orchestrator", "web-3", 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestFlippedByteAnywhere changes every byte of a sealed order and of a
// sealed report in several ways; none may open.
func TestFlippedByteAnywhere(t *testing.T) {
	f := newFleet(t, Options{})
	for _, k := range []Kind{KindCommission, KindHeartbeat} {
		raw := f.seal(t, k, 1, testBody{Role: "web", Queue: "q"})
		opener := f.opener(k)
		tried := 0
		for i := 0; i < len(raw); i++ {
			for _, x := range []byte{0x01, 0x02, 0x20, 0x40, 0x80} {
				b := []byte(raw)
				b[i] ^= x
				tried++
				env, err := opener.Open(string(b))
				if err == nil {
					t.Fatalf("%s with byte %d xor %#x opened: %+v", k, i, x, env)
				}
				if _, ok := IsReject(err); !ok {
					t.Fatalf("not a RejectError: %v", err)
				}
			}
		}
		if env, err := opener.Open(raw); err != nil {
			t.Fatalf("the unchanged %s no longer opens: %v", k, err)
		} else if env.Kind != k {
			t.Fatalf("kind = %s", env.Kind)
		}
		var total uint64
		for _, n := range opener.Rejected() {
			total += n
		}
		if total != uint64(tried) {
			t.Fatalf("%s: %d rejections counted for %d tries", k, total, tried)
		}
	}
}

// TestReplayWindowEdges: a message exactly at the edge of the window or the
// skew opens; its replay after the window is expired, not accepted.
func TestReplayWindowEdges(t *testing.T) {
	f := newFleet(t, Options{ReplayWindow: time.Minute, MaxSkew: 5 * time.Second})
	raw := f.seal(t, KindHalt, 0, nil)
	f.clock.Add(time.Minute)
	if _, err := f.agent.Open(raw); err != nil {
		t.Fatalf("at the window's edge: %v", err)
	}
	if _, err := f.agent.Open(raw); !isReason(err, ReasonReplay) {
		t.Fatalf("replay inside the window: %v", err)
	}
	f.clock.Add(time.Millisecond)
	if _, err := f.agent.Open(raw); !isReason(err, ReasonExpired) {
		t.Fatalf("replay after the window: %v", err)
	}

	ahead := newClock()
	ahead.Add(5 * time.Second)
	c, err := NewCodec(f.keys, Options{Now: ahead.Now})
	if err != nil {
		t.Fatal(err)
	}
	f2 := newFleet(t, Options{ReplayWindow: time.Minute, MaxSkew: 5 * time.Second})
	if _, err := f2.agent.Open(mustSeal(t, c, KindHalt)); err != nil {
		t.Fatalf("at the skew's edge: %v", err)
	}
}

func isReason(err error, r Reason) bool {
	got, ok := IsReject(err)
	return ok && got == r
}

func TestEpochRule(t *testing.T) {
	f := newFleet(t, Options{})
	f.agent.SetMinEpoch(5)
	f.agent.SetMinEpoch(2) // never lowers
	if f.agent.MinEpoch() != 5 {
		t.Fatalf("min epoch = %d, want 5", f.agent.MinEpoch())
	}
	for _, tc := range []struct {
		kind  Kind
		epoch uint64
		ok    bool
	}{
		{KindCommission, 4, false},
		{KindHalt, 0, false},
		{KindHalt, 5, true},
		{KindPing, 6, true},
		{KindHalt, 5, true}, // a lower epoch than the last order is fine while >= min
	} {
		_, err := f.agent.Open(f.seal(t, tc.kind, tc.epoch, nil))
		if tc.ok && err != nil {
			t.Fatalf("%s epoch %d: %v", tc.kind, tc.epoch, err)
		}
		if !tc.ok && !isReason(err, ReasonStaleEpoch) {
			t.Fatalf("%s epoch %d: err = %v, want stale_epoch", tc.kind, tc.epoch, err)
		}
	}
	// Reports echo the epoch they last saw; an old one is no reason to drop
	// a heartbeat.
	f.orch.SetMinEpoch(9)
	if _, err := f.orch.Open(f.seal(t, KindHeartbeat, 1, nil)); err != nil {
		t.Fatalf("report from an old epoch: %v", err)
	}
}

func TestFollowEpoch(t *testing.T) {
	f := newFleet(t, Options{FollowEpoch: true})
	oldOrder := f.seal(t, KindHalt, 3, nil)
	if _, err := f.agent.Open(f.seal(t, KindPing, 4, nil)); err != nil {
		t.Fatal(err)
	}
	if f.agent.MinEpoch() != 4 {
		t.Fatalf("min epoch = %d after an order of epoch 4", f.agent.MinEpoch())
	}
	if _, err := f.agent.Open(oldOrder); !isReason(err, ReasonStaleEpoch) {
		t.Fatalf("order of the deposed orchestrator: %v", err)
	}
	// A rejected order does not move the epoch.
	if _, err := f.agent.Open(sealEnvelope(t, f.agent, false, with(envMap(t, KindHalt, epoch0), "epoch", 99))); err == nil {
		t.Fatal("forged order opened")
	}
	if f.agent.MinEpoch() != 4 {
		t.Fatalf("min epoch = %d after a forged order", f.agent.MinEpoch())
	}
}

func TestNewCodecChecksKeys(t *testing.T) {
	k := testKeys("a")
	other := testKeys("b")
	for name, keys := range map[string]Keys{
		"empty":                 {},
		"no fleet key":          {OrderPublic: k.OrderPublic},
		"short fleet key":       {OrderPublic: k.OrderPublic, FleetKey: k.FleetKey[:16]},
		"mismatched public key": {OrderPrivate: k.OrderPrivate, OrderPublic: other.OrderPublic, FleetKey: k.FleetKey},
		"short public key":      {OrderPublic: k.OrderPublic[:16], FleetKey: k.FleetKey},
	} {
		if _, err := NewCodec(keys, Options{}); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	c, err := NewCodec(Keys{OrderPrivate: k.OrderPrivate, FleetKey: k.FleetKey}, Options{})
	if err != nil {
		t.Fatalf("private key alone: %v", err)
	}
	if c.OrderKeyID() != k.OrderKeyID() || c.FleetKeyID() != k.FleetKeyID() {
		t.Fatal("key ids differ from the Keys' own")
	}
	if k.OrderKeyID() == k.FleetKeyID() || k.OrderKeyID() == other.OrderKeyID() {
		t.Fatal("key ids collide")
	}
}

func TestOpenConcurrent(t *testing.T) {
	f := newFleet(t, Options{})
	const n = 400
	msgs := make([]string, n)
	for i := range msgs {
		msgs[i] = f.seal(t, KindHeartbeat, 1, nil)
	}
	// Every message is opened by four goroutines at once: exactly one of
	// them must accept it.
	var wg sync.WaitGroup
	var accepted, replays atomic.Int64
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, raw := range msgs {
				_, err := f.orch.Open(raw)
				switch {
				case err == nil:
					accepted.Add(1)
				case isReason(err, ReasonReplay):
					replays.Add(1)
				default:
					t.Errorf("open: %v", err)
				}
			}
		}()
	}
	// Sealing while opening is safe too.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 100; i++ {
			if _, err := f.agent.Seal(KindHeartbeat, "m-1", "orchestrator", 1, nil); err != nil {
				t.Error(err)
			}
		}
	}()
	wg.Wait()
	if accepted.Load() != n || replays.Load() != 3*n {
		t.Fatalf("accepted %d, replays %d; want %d and %d", accepted.Load(), replays.Load(), n, 3*n)
	}
	if got := f.orch.Rejected()[ReasonReplay]; got != 3*n {
		t.Fatalf("replay counter = %d", got)
	}
}

func TestMaxMessageSizeIsQueueLimit(t *testing.T) {
	if MaxMessageSize != queue.MaxMessageSize {
		t.Fatalf("MaxMessageSize = %d, queue.MaxMessageSize = %d", MaxMessageSize, queue.MaxMessageSize)
	}
}

func TestDecodeBodyStrict(t *testing.T) {
	env := &Envelope{Body: json.RawMessage(`{"role":"web","extra":1}`)}
	var b testBody
	if err := env.DecodeBody(&b); err == nil {
		t.Fatal("unknown field accepted")
	}
	env.Body = json.RawMessage(`{"role":"web"} {}`)
	if err := env.DecodeBody(&b); err == nil {
		t.Fatal("trailing data accepted")
	}
	env.Body = json.RawMessage(`{"role":"web"}`)
	if err := env.DecodeBody(&b); err != nil || b.Role != "web" {
		t.Fatalf("decode: %v %+v", err, b)
	}
}
