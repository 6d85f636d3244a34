package orchestrator

import (
	"strings"
	"testing"
	"time"

	"github.com/zclconf/go-cty/cty"

	"github.com/rosterhq/roster/core/config"
)

// reloaded is a copy of the harness's config with other roles and spares,
// as a config decoded again.
func (h *harness) reloaded(spares int, roles ...*config.Role) *config.Orchestrator {
	c := *h.cfg
	c.Spares, c.Roles = spares, roles
	return &c
}

// TestReloadAppliesRolesAndSpares: a reload adds a role, resizes and
// refreshes another, and raises the spare target, without a restart (the
// epoch stays); removing the role again drains its servers.
func TestReloadAppliesRolesAndSpares(t *testing.T) {
	h, _ := versionedPool(t, config.Count{Min: 1, Max: 2})
	epoch := h.o.Epoch()

	web2 := testRole()
	web2.Count = config.Count{Min: 2, Max: 3}
	web2.Config = cty.ObjectVal(map[string]cty.Value{"version": cty.StringVal("2")})
	api := testRole()
	api.Name, api.Register = "api", nil
	api.Count = config.Count{Min: 1, Max: 1}
	changes, err := h.o.Reload(h.reloaded(1, web2, api))
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(changes, "\n")
	for _, want := range []string{"role api added (fake, count 1..1)", "role web: plugin or config: its servers are refreshed, count 1..2 → 2..3", "spares 0 → 1"} {
		if !strings.Contains(got, want) {
			t.Errorf("changes lack %q:\n%s", want, got)
		}
	}
	st := h.waitFor("web at 2 new servers, api at 1, one spare", 30*time.Second, func(st Status) bool {
		webNew := 0
		for _, s := range st.Servers {
			if s.Role == "web" && s.State == ServerReady && !s.Outdated && s.Name != "web-1" {
				webNew++
			}
		}
		return webNew == 2 && countState(st, "web", ServerReady) == 2 && countState(st, "api", ServerReady) == 1 &&
			len(st.Servers) == 3 && st.Spares.Idle == 1
	})
	if st.Epoch != epoch {
		t.Errorf("epoch %d → %d: a reload is not a restart", epoch, st.Epoch)
	}
	if !hasEventAPI(h, "reload", "role api added") {
		t.Error("no reload event")
	}

	// Without api: its server is drained and halted.
	if _, err := h.o.Reload(h.reloaded(1, web2)); err != nil {
		t.Fatal(err)
	}
	h.waitFor("api's server gone", 30*time.Second, func(st Status) bool {
		for _, s := range st.Servers {
			if s.Role == "api" {
				return false
			}
		}
		return len(st.Roles) == 1 && countState(st, "web", ServerReady) == 2
	})
	if changes, err := h.o.Reload(h.reloaded(1, web2)); err != nil || len(changes) != 1 || changes[0] != "nothing changed" {
		t.Errorf("the same config again: %q, %v", changes, err)
	}
}

// TestReloadRefusesWhatNeedsARestart: a role that registers with a balancer
// the orchestrator did not open, or another cluster, refuses the reload as
// a whole: nothing changes.
func TestReloadRefusesWhatNeedsARestart(t *testing.T) {
	h, _ := versionedPool(t, config.Count{Min: 1, Max: 1})

	bigger := testRole()
	bigger.Count = config.Count{Min: 3, Max: 3}
	other := testRole()
	other.Name, other.Register = "api", &config.Register{Balancer: "edge", Endpoint: "http"}
	if _, err := h.o.Reload(h.reloaded(2, bigger, other)); err == nil || !strings.Contains(err.Error(), `balancer "edge"`) {
		t.Fatalf("reload with a new balancer: %v", err)
	}
	c := h.reloaded(2, bigger)
	c.Cluster = "elsewhere"
	if _, err := h.o.Reload(c); err == nil || !strings.Contains(err.Error(), "cluster") {
		t.Fatalf("reload into another cluster: %v", err)
	}
	st := h.o.Status()
	if len(st.Roles) != 1 || st.Roles[0].Max != 1 || st.Spares.Target != 0 || hasEventAPI(h, "reload", "") {
		t.Fatalf("a refused reload changed something: roles %+v, spares %+v", st.Roles, st.Spares)
	}
}

func hasEventAPI(h *harness, kind, substr string) bool {
	var events []Event
	h.get("/v1/events?limit=1000", &events)
	return hasEvent(Status{Events: events}, kind, substr)
}

// TestReloadShorterLostAfterKeepsRunningServers: a reload shortens
// health.interval and lost_after together. The running servers' agents
// heartbeat at the interval of their commission, longer than the new
// lost_after: they are judged by the longer of the two windows, not lost.
func TestReloadShorterLostAfterKeepsRunningServers(t *testing.T) {
	r := testRole()
	r.Count = config.Count{Min: 1, Max: 1}
	r.Health.Interval, r.Health.LostAfter = time.Second, 3*time.Second
	h := newHarness(t, 0, r)
	h.waitFor("baseline", 20*time.Second, ready(1))

	fast := *r
	fast.Health.Interval, fast.Health.LostAfter = 100*time.Millisecond, 300*time.Millisecond
	if _, err := h.o.Reload(h.reloaded(0, &fast)); err != nil {
		t.Fatal(err)
	}
	// Three heartbeats of the running agent, each 1 s apart: every gap is
	// longer than the new lost_after.
	time.Sleep(3 * time.Second)
	st := h.o.Status()
	if hasEventAPI(h, "lost", "") || !ready(1)(st) || st.Servers[0].Name != "web-1" {
		t.Fatalf("after a reload with a shorter lost_after: %+v", st.Servers)
	}
}
