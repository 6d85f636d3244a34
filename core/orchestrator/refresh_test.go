package orchestrator

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zclconf/go-cty/cty"

	"github.com/rosterhq/roster/core/config"
	"github.com/rosterhq/roster/sdk"
)

func TestRoleSpec(t *testing.T) {
	withConfig := func(plugin string, attrs map[string]cty.Value) *config.Role {
		return &config.Role{Name: "web", Plugin: plugin, Config: cty.ObjectVal(attrs)}
	}
	a := withConfig("web", map[string]cty.Value{"port": cty.NumberIntVal(80), "env": cty.MapVal(map[string]cty.Value{"B": cty.StringVal("2"), "A": cty.StringVal("1")})})
	same := withConfig("web", map[string]cty.Value{"env": cty.MapVal(map[string]cty.Value{"A": cty.StringVal("1"), "B": cty.StringVal("2")}), "port": cty.NumberIntVal(80)})
	if roleSpec(a) == "" || roleSpec(a) != roleSpec(same) {
		t.Fatalf("equal configs: %q and %q", roleSpec(a), roleSpec(same))
	}
	// The orchestrator's own settings are not part of the spec.
	counted := withConfig("web", map[string]cty.Value{"port": cty.NumberIntVal(80), "env": cty.MapVal(map[string]cty.Value{"B": cty.StringVal("2"), "A": cty.StringVal("1")})})
	counted.Count, counted.Drain.Timeout, counted.Health.Interval = config.Count{Min: 5, Max: 9}, time.Minute, time.Hour
	if roleSpec(counted) != roleSpec(a) {
		t.Error("count, drain or health changed the spec")
	}
	for name, r := range map[string]*config.Role{
		"plugin": withConfig("tomcat", map[string]cty.Value{"port": cty.NumberIntVal(80), "env": cty.MapVal(map[string]cty.Value{"B": cty.StringVal("2"), "A": cty.StringVal("1")})}),
		"value":  withConfig("web", map[string]cty.Value{"port": cty.NumberIntVal(81), "env": cty.MapVal(map[string]cty.Value{"B": cty.StringVal("2"), "A": cty.StringVal("1")})}),
		"map":    withConfig("web", map[string]cty.Value{"port": cty.NumberIntVal(80), "env": cty.MapVal(map[string]cty.Value{"A": cty.StringVal("1")})}),
	} {
		if roleSpec(r) == roleSpec(a) {
			t.Errorf("a changed %s left the spec as it was", name)
		}
	}
	// A reference is unknown until a server is commissioned: part of the
	// spec as written, the same on every load.
	ref := withConfig("web", map[string]cty.Value{"database": cty.UnknownVal(cty.String)})
	if s := roleSpec(ref); s == "" || s != roleSpec(withConfig("web", map[string]cty.Value{"database": cty.UnknownVal(cty.String)})) {
		t.Errorf("a config with a reference: spec %q, not stable", s)
	}
	if roleSpec(ref) == roleSpec(withConfig("web", map[string]cty.Value{"database": cty.StringVal("127.0.0.1:5432")})) {
		t.Error("a reference and a literal address give the same spec")
	}
}

// TestRoleSpecFromFiles: the spec of a role file loaded twice is the same,
// references included, and an edit of its config block changes it.
func TestRoleSpecFromFiles(t *testing.T) {
	schemas := config.SchemaMap{"static": {Attributes: []sdk.Attribute{
		{Name: "root", Type: sdk.String},
		{Name: "backend", Type: sdk.String},
	}}}
	role := func(src string) *config.Role {
		t.Helper()
		path := filepath.Join(t.TempDir(), "web.hcl")
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		roles, diags := config.LoadRoleFiles(context.Background(), []string{path}, schemas)
		if diags.HasErrors() || len(roles) != 1 {
			t.Fatalf("%d roles, %v", len(roles), diags)
		}
		return roles[0]
	}
	const src = `role "web" {
  plugin = "static"
  count {
    min = 1
    max = 2
  }
  config {
    root    = "/srv/site"
    backend = role.db.endpoints.postgres
  }
}
`
	if a, b := roleSpec(role(src)), roleSpec(role(src)); a == "" || a != b {
		t.Fatalf("the same file twice: %q, %q", a, b)
	}
	if roleSpec(role(src)) == roleSpec(role(strings.Replace(src, "/srv/site", "/srv/site-v2", 1))) {
		t.Error("an edited config block left the spec as it was")
	}
	if roleSpec(role(src)) != roleSpec(role(strings.Replace(src, "max = 2", "max = 4", 1))) {
		t.Error("an edited count changed the spec")
	}
}

// TestRefreshReplacesOutdatedServersOneAtATime: the orchestrator restarts
// with the role's config changed. Every server is replaced, one at a time
// and successor first: the pool never has fewer than count.min ready
// servers, never more than one successor on its way, and ends with new
// servers only.
func TestRefreshReplacesOutdatedServersOneAtATime(t *testing.T) {
	h, r := versionedPool(t, config.Count{Min: 2, Max: 2})
	st := h.o.Status()
	var old []string
	for _, s := range st.Servers {
		if s.Outdated {
			t.Fatalf("%s outdated before any change", s.Name)
		}
		old = append(old, s.Name)
	}

	h.stop()
	r.Config = cty.ObjectVal(map[string]cty.Value{"version": cty.StringVal("2")})
	h.start()
	<-h.o.Ready()

	deadline := time.Now().Add(60 * time.Second)
	sawOutdated := false
	for {
		st := h.o.Status()
		ready, coming := 0, 0
		done := true
		for _, s := range st.Servers {
			isOld := slices.Contains(old, s.Name)
			if s.Outdated != isOld {
				t.Fatalf("%s: outdated = %v, but it was commissioned %s the change", s.Name, s.Outdated, map[bool]string{true: "before", false: "after"}[isOld])
			}
			sawOutdated = sawOutdated || s.Outdated
			switch s.State {
			case ServerReady:
				ready++
				if isOld {
					done = false
				}
			case ServerCommissioning, ServerProvisioning:
				coming++
				done = false
				if s.Replaces == "" || !slices.Contains(old, s.Replaces) {
					t.Fatalf("%s is on its way but replaces %q, not an outdated server", s.Name, s.Replaces)
				}
			default:
				done = false
			}
		}
		if ready < 2 {
			t.Fatalf("only %d ready servers during the refresh: %+v", ready, st.Servers)
		}
		if coming > 1 {
			t.Fatalf("%d successors on their way at once: %+v", coming, st.Servers)
		}
		if done && len(st.Servers) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("refresh not done within 60s: %+v", st.Servers)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !sawOutdated {
		t.Error("no server was ever shown outdated")
	}
	var events []Event
	h.get("/v1/events?limit=1000", &events)
	refreshed := 0
	for _, e := range events {
		if e.Kind == "refresh" && strings.Contains(e.Message, "commissioned to replace it") {
			refreshed++
		}
	}
	if refreshed != 2 {
		t.Errorf("%d refresh commissions, want 2: %+v", refreshed, events)
	}
	for _, s := range h.o.Status().Servers {
		if slices.Contains(old, s.Name) || s.Outdated {
			t.Errorf("after the refresh: %+v", s)
		}
	}
}

// TestFailedSuccessorLeavesTheOutdatedServer: a successor whose Provision
// fails is not replaced as a failed server would be: the outdated server
// keeps serving, and the refresh tries again after the backoff.
func TestFailedSuccessorLeavesTheOutdatedServer(t *testing.T) {
	// Room above min: a failed server's replacement could be commissioned.
	h, r := versionedPool(t, config.Count{Min: 1, Max: 3})

	h.stop()
	r.Config = cty.ObjectVal(map[string]cty.Value{"version": cty.StringVal("2")})
	h.role.mu.Lock()
	h.role.failProvision = true
	h.role.mu.Unlock()
	h.start()
	h.waitFor("two failed successors", 30*time.Second, func(st Status) bool {
		n := 0
		for _, e := range st.Events {
			if e.Kind == "failed" && strings.Contains(e.Message, "provision failed") {
				n++
			}
		}
		return n >= 2
	})
	st := h.o.Status()
	var events []Event
	h.get("/v1/events?limit=1000", &events)
	if countState(st, "web", ServerReady) != 1 || st.Servers[0].Name != "web-1" || !st.Servers[0].Outdated {
		t.Fatalf("web-1 should still serve, outdated: %+v", st.Servers)
	}
	for _, e := range events {
		if e.Kind == "commission" && strings.Contains(e.Message, "(replacing ") {
			t.Errorf("a failed successor was replaced like a failed server: %s", e.Message)
		}
	}
	h.role.mu.Lock()
	h.role.failProvision = false
	h.role.mu.Unlock()
	h.waitFor("web-1 refreshed", 30*time.Second, func(st Status) bool {
		return ready(1)(st) && st.Servers[0].Name != "web-1" && !st.Servers[0].Outdated
	})
}

// versionedPool runs a web role with config {version = "1"} and waits for
// count.min ready servers.
func versionedPool(t *testing.T, count config.Count) (*harness, *config.Role) {
	t.Helper()
	r := testRole()
	r.Count = count
	r.Config = cty.ObjectVal(map[string]cty.Value{"version": cty.StringVal("1")})
	h := newHarness(t, 0, r)
	h.waitFor("baseline", 20*time.Second, ready(count.Min))
	return h, r
}

// TestStatefulRoleIsNotRefreshed: a role whose plugin is stateful keeps its
// outdated servers (marked, with one event saying so) unless its role file
// says refresh = true; refresh = false holds any role.
func TestStatefulRoleIsNotRefreshed(t *testing.T) {
	for _, tc := range []struct {
		name     string
		stateful bool
		refresh  *bool
		why      string
	}{
		{"stateful", true, nil, "its plugin is stateful"},
		{"refresh off", false, new(false), "refresh = false"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, r := versionedPool(t, config.Count{Min: 1, Max: 2})
			h.stop()
			r.Config = cty.ObjectVal(map[string]cty.Value{"version": cty.StringVal("2")})
			r.Stateful, r.Refresh = tc.stateful, tc.refresh
			h.start()
			h.waitFor("the held refresh's event", 20*time.Second, func(st Status) bool {
				return hasEvent(st, "refresh", "outdated servers are not replaced ("+tc.why)
			})
			st := h.o.Status()
			if len(st.Servers) != 1 || st.Servers[0].Name != "web-1" || !st.Servers[0].Outdated || st.Servers[0].State != ServerReady {
				t.Fatalf("web-1 should serve on, outdated and alone: %+v", st.Servers)
			}
			if st.Roles[0].Outdated != 1 || st.Roles[0].Refresh {
				t.Errorf("role view: %d outdated, refresh %v; want 1, false", st.Roles[0].Outdated, st.Roles[0].Refresh)
			}

			// Saying refresh = true in a reload replaces it.
			r2 := *r
			r2.Refresh = new(true)
			if _, err := h.o.Reload(h.reloaded(0, &r2)); err != nil {
				t.Fatal(err)
			}
			h.waitFor("web-1 refreshed", 30*time.Second, func(st Status) bool {
				return ready(1)(st) && st.Servers[0].Name != "web-1" && !st.Servers[0].Outdated
			})
		})
	}
}
