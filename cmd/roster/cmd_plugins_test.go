package main

import (
	"bytes"
	"encoding/json"
	"testing"
)

// TestPluginsJSON: `roster plugins -json` launches every built-in and
// reports what each says of itself, the db role's statefulness included.
func TestPluginsJSON(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"plugins", "-json", "-config", t.TempDir() + "/none.hcl"}, &out, &errb); code != 0 {
		t.Fatalf("roster plugins -json: exit %d\n%s", code, errb.String())
	}
	var list struct {
		Plugins []pluginJSON `json:"plugins"`
	}
	if err := json.Unmarshal(out.Bytes(), &list); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	got := map[string]pluginJSON{}
	for _, p := range list.Plugins {
		got[p.Name] = p
	}
	for name, want := range map[string]struct{ configurable, stateful bool }{
		"static": {false, false}, "web": {true, false}, "db": {false, true}, "tomcat": {false, false},
	} {
		p, ok := got[name]
		if !ok || !p.Builtin || p.Error != "" || p.Schema == nil || p.ProtocolVersion != 1 {
			t.Errorf("%s: %+v", name, p)
			continue
		}
		if p.Configurable != want.configurable || p.Stateful != want.stateful {
			t.Errorf("%s: configurable %v, stateful %v; want %v, %v", name, p.Configurable, p.Stateful, want.configurable, want.stateful)
		}
	}
}
