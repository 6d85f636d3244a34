package protocol

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The fuzz targets use fixed keys and a clock that never moves, so every
// seed sealed here opens, run after run.

func fuzzCodec(t testing.TB) *Codec {
	c, err := NewCodec(testKeys("fuzz"), Options{Now: func() time.Time { return epoch0 }})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// fuzzSeeds returns a valid sealed message of every kind, and broken ones.
func fuzzSeeds(t testing.TB) []string {
	c := fuzzCodec(t)
	var out []string
	for _, k := range allKinds {
		raw, err := c.Seal(k, "orchestrator", "web-3", 2, map[string]any{"role": "web", "n": 1, "s": "é\u2028<"})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, raw)
	}
	good := out[0]
	b := []byte(good)
	b[len(b)/2] ^= 1
	out = append(out,
		string(b),
		good[:len(good)/2],
		strings.Replace(good, `"v":1`, `"v":2`, 1),
		strings.Replace(good, `"kid":"`, `"kid":"0`, 1),
		good+" ",
		"",
		"{}",
		`{"v":1,"kid":"0000000000000000","sig":"AA==","m":"AA=="}`,
		"null",
	)
	return out
}

// FuzzOpen: no input makes Open panic or fail with anything but a
// *RejectError; whatever opens re-seals and re-opens to the same message,
// and does not open twice.
func FuzzOpen(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		c := fuzzCodec(t)
		env, err := c.Open(raw)
		if err != nil {
			if _, ok := IsReject(err); !ok {
				t.Fatalf("error is not a RejectError: %v", err)
			}
			return
		}
		if _, err := c.Open(raw); !isReason(err, ReasonReplay) {
			t.Fatalf("second open: err = %v, want replay", err)
		}
		again, err := c.Seal(env.Kind, env.Sender, env.Recipient, env.Epoch, env.Body)
		if err != nil {
			t.Fatalf("re-seal: %v", err)
		}
		env2, err := c.Open(again)
		if err != nil {
			t.Fatalf("re-sealed message does not open: %v", err)
		}
		if env2.Kind != env.Kind || env2.Sender != env.Sender || env2.Recipient != env.Recipient ||
			env2.Epoch != env.Epoch || env2.KeyID != env.KeyID || !jsonEqual(env2.Body, env.Body) {
			t.Fatalf("re-sealed message differs:\n%+v\n%+v", env, env2)
		}
	})
}

// FuzzDecodeEnvelope: envelope bytes (what the signature covers) never make
// the decoder panic, and whatever it accepts survives a round trip.
func FuzzDecodeEnvelope(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		if m := envelopeBytes(s); m != nil {
			f.Add(m)
			f.Add(bytes.Replace(m, []byte(`"body":{`), []byte(`"body":[`), 1))
			f.Add(bytes.Replace(m, []byte(`"v":1`), []byte(`"V":1`), 1))
		}
	}
	f.Add([]byte(`{"v":1}`))
	f.Fuzz(func(t *testing.T, m []byte) {
		env, err := decodeEnvelope(m)
		if err != nil {
			if _, ok := IsReject(err); !ok {
				t.Fatalf("error is not a RejectError: %v", err)
			}
			return
		}
		b, err := json.Marshal(env)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		env2, err := decodeEnvelope(b)
		if err != nil {
			t.Fatalf("re-encoded envelope does not decode: %v\n%s", err, b)
		}
		if env2.V != env.V || env2.ID != env.ID || env2.Kind != env.Kind || env2.Sender != env.Sender ||
			env2.Recipient != env.Recipient || env2.Epoch != env.Epoch || !env2.SentAt.Equal(env.SentAt) ||
			!jsonEqual(env2.Body, env.Body) {
			t.Fatalf("round trip changed the envelope:\n%+v\n%+v", env, env2)
		}
	})
}

// FuzzOpenSigned signs arbitrary envelope bytes with the order key and with
// the fleet key, reaching every check behind the signature: the result is
// never a signature error, and an order never opens when MAC'd with the
// fleet key (nor a report when signed with the order key).
func FuzzOpenSigned(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		if m := envelopeBytes(s); m != nil {
			f.Add(m, true)
			f.Add(m, false)
		}
	}
	f.Fuzz(func(t *testing.T, m []byte, order bool) {
		c := fuzzCodec(t)
		raw, err := c.sealBytes(order, m)
		if err != nil {
			return // too large
		}
		env, err := c.Open(raw)
		if err != nil {
			r, ok := IsReject(err)
			if !ok || r == ReasonBadSignature || r == ReasonUnknownKey {
				t.Fatalf("open of a correctly signed message: %v", err)
			}
			return
		}
		if env.Kind.IsOrder() != order {
			t.Fatalf("%s opened although signed with the wrong key (order=%v)", env.Kind, order)
		}
	})
}

// envelopeBytes returns the signed envelope inside a sealed message, or nil.
func envelopeBytes(raw string) []byte {
	var w struct{ M string }
	if json.Unmarshal([]byte(raw), &w) != nil {
		return nil
	}
	m, err := base64.StdEncoding.DecodeString(w.M)
	if err != nil || len(m) == 0 {
		return nil
	}
	return m
}

// jsonEqual compares two JSON values by meaning: Marshal escapes HTML
// characters in a json.RawMessage, so bytes may differ.
func jsonEqual(a, b []byte) bool {
	decode := func(in []byte) (any, error) {
		d := json.NewDecoder(bytes.NewReader(in))
		d.UseNumber()
		var v any
		err := d.Decode(&v)
		return v, err
	}
	x, err1 := decode(a)
	y, err2 := decode(b)
	return err1 == nil && err2 == nil && reflect.DeepEqual(x, y)
}
