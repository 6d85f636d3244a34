package orchestrator

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rosterhq/roster/core/config"
)

func ready(n int) func(Status) bool {
	return func(st Status) bool { return countState(st, "web", ServerReady) == n && len(st.Servers) == n }
}

func TestBaselineSparesAndAPI(t *testing.T) {
	h := newHarness(t, 1, testRole())
	st := h.waitFor("2 ready servers and 1 spare", 20*time.Second, func(st Status) bool {
		return ready(2)(st) && st.Spares.Idle == 1 && st.Spares.Launching == 0
	})
	if !hasEvent(st, "scale", "web: 0 → 2, 0 below count.min 2") {
		t.Errorf("no scale event with its reason: %+v", st.Events)
	}
	var roles []RoleView
	h.get("/v1/roles", &roles)
	if len(roles) != 1 || roles[0].Ready != 2 || roles[0].Desired != 2 {
		t.Errorf("roles = %+v", roles)
	}
	var servers []ServerView
	h.get("/v1/servers", &servers)
	if len(servers) != 2 || servers[0].Name != "web-1" || !servers[0].Registered || servers[0].Endpoints["http"] == "" {
		t.Errorf("servers = %+v", servers)
	}
	var machines []MachineView
	h.get("/v1/machines", &machines)
	if len(machines) != 3 {
		t.Errorf("machines = %+v", machines)
	}
	var events []Event
	h.get("/v1/events?limit=5", &events)
	if len(events) == 0 || len(events) > 5 {
		t.Errorf("events = %+v", events)
	}
	resp, err := http.Get(h.api.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`roster_servers{role="web",state="ready"} 2`, `roster_spares 1`, `roster_commissions_total{role="web"} 2`, `roster_messages_rejected_total{reason="bad_signature"} 0`, `roster_queue_latency_seconds_bucket`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestScaleUpAndDownWithDrain(t *testing.T) {
	r := testRole()
	r.Scale = &config.Scale{Metric: "load", UpAbove: 0.75, DownBelow: 0.25, Window: 300 * time.Millisecond, CooldownUp: 200 * time.Millisecond, CooldownDown: 200 * time.Millisecond}
	h := newHarness(t, 0, r)
	h.role.set("load", 0.5)
	h.waitFor("baseline", 20*time.Second, ready(2))
	h.role.set("load", 0.9)
	st := h.waitFor("scale up to max", 20*time.Second, ready(3))
	// The window's average may still hold a sample of 0.5: the reason
	// names whatever it was, above up_above.
	if !hasEventMatching(st, "scale", `^web: 2 → 3, load 0\.(7[6-9]|[89]\d) > 0\.75 over 300ms$`) {
		t.Errorf("no scale-up event: %+v", st.Events)
	}
	h.role.set("load", 0.1)
	st = h.waitFor("scale down to min", 20*time.Second, func(st Status) bool { return ready(2)(st) && len(h.prov.running()) == 2 })
	if !hasEvent(st, "scale", "web: 3 → 2, load 0.") || !hasEvent(st, "halted", "") {
		t.Errorf("no scale-down or halted event: %+v", st.Events)
	}
}

func TestLostServerIsReplaced(t *testing.T) {
	h := newHarness(t, 0, testRole())
	st := h.waitFor("baseline", 20*time.Second, ready(2))
	victim := st.Servers[0]
	h.prov.kill(victim.Machine)
	st = h.waitFor("replacement", 20*time.Second, func(st Status) bool {
		if !ready(2)(st) {
			return false
		}
		for _, s := range st.Servers {
			if s.Name == victim.Name {
				return false
			}
		}
		return true
	})
	if !hasEvent(st, "lost", "no heartbeat") || !hasEvent(st, "commission", "replacing "+victim.Name) {
		t.Errorf("events: %+v", st.Events)
	}
}

func TestUnhealthyServerIsReplaced(t *testing.T) {
	h := newHarness(t, 0, testRole())
	h.waitFor("baseline", 20*time.Second, ready(2))
	h.role.mu.Lock()
	h.role.healthy = false
	h.role.mu.Unlock()
	h.waitFor("an unhealthy replacement", 20*time.Second, func(st Status) bool { return hasEvent(st, "unhealthy", "failed health checks in a row") })
}

func TestRestartCarriesOn(t *testing.T) {
	r := testRole()
	r.Count = config.Count{Min: 1, Max: 1}
	h := newHarness(t, 0, r)
	h.waitFor("baseline", 20*time.Second, ready(1))
	epoch := h.o.Epoch()
	h.stop()
	// Mid-flight: a second role instance would be a duplicate.
	h.start()
	st := h.waitFor("same server after restart", 20*time.Second, func(st Status) bool { return ready(1)(st) && st.Epoch == epoch+1 })
	if st.Servers[0].Name != "web-1" {
		t.Errorf("server after restart = %s, want web-1", st.Servers[0].Name)
	}
	// A grace period: no server is declared lost for lack of heartbeats.
	time.Sleep(2 * r.Health.LostAfter)
	st = h.o.Status()
	if hasEvent(st, "lost", "") || len(st.Servers) != 1 || st.Servers[0].Name != "web-1" {
		t.Errorf("after restart: %+v", st)
	}
}

func TestProvisionTimeoutIsAbandoned(t *testing.T) {
	r := testRole()
	r.Count = config.Count{Min: 1, Max: 1}
	r.Provision.Timeout = 500 * time.Millisecond
	h := newHarness(t, 0, r)
	h.role.mu.Lock()
	h.role.hang = true
	h.role.mu.Unlock()
	st := h.waitFor("an abandoned commission", 20*time.Second, func(st Status) bool {
		return hasEvent(st, "abandon", "not ready within provision.timeout") && hasEvent(st, "commission", "replacing web-1")
	})
	for _, e := range st.Events {
		if e.Kind == "abandon" && e.Server == "web-1" && e.Machine == "" {
			t.Errorf("abandoned web-1 without its machine: %+v", e)
		}
	}
	h.waitFor("the stuck machine terminated", 20*time.Second, func(st Status) bool { return hasEvent(st, "terminate", "abandon web-1") })
}

func TestProvisionFailureCommissionsAnother(t *testing.T) {
	r := testRole()
	r.Count = config.Count{Min: 1, Max: 1}
	h := newHarness(t, 0, r)
	h.role.failProvision = true
	h.waitFor("a failed provision", 20*time.Second, func(st Status) bool { return hasEvent(st, "failed", "provision failed") })
	h.role.mu.Lock()
	h.role.failProvision = false
	h.role.mu.Unlock()
	h.waitFor("a server after the failure", 20*time.Second, ready(1))
}

func TestReuseReturnsMachineToSpares(t *testing.T) {
	r := testRole()
	r.Reuse = true
	r.Scale = &config.Scale{Metric: "load", UpAbove: 0.75, DownBelow: 0.25, Window: 300 * time.Millisecond, CooldownUp: 100 * time.Millisecond, CooldownDown: 100 * time.Millisecond}
	r.Count = config.Count{Min: 1, Max: 2}
	h := newHarness(t, 1, r)
	h.role.set("load", 0.9)
	h.waitFor("scaled up", 20*time.Second, ready(2))
	h.role.set("load", 0.1)
	h.waitFor("reused", 20*time.Second, func(st Status) bool { return hasEvent(st, "reuse", "is a spare again") && ready(1)(st) })
	launches := h.prov.launchCount()
	h.waitFor("spare pool back to 1", 20*time.Second, func(st Status) bool { return st.Spares.Idle == 1 })
	if h.prov.launchCount() != launches {
		t.Errorf("a machine was launched although the reused one could be a spare")
	}
}

// TestSlowProvisionIsNotLost: a Provision that takes longer than lost_after
// is alive as long as its agent heartbeats beside it.
func TestSlowProvisionIsNotLost(t *testing.T) {
	r := testRole()
	h := newHarness(t, 0, r)
	h.role.mu.Lock()
	h.role.provisionDelay = 3 * r.Health.LostAfter
	h.role.mu.Unlock()
	st := h.waitFor("baseline", 20*time.Second, ready(2))
	if hasEvent(st, "lost", "") {
		t.Errorf("a provisioning server was declared lost: %+v", st.Events)
	}
}

// TestSilentProvisioningServerIsLost: a machine that goes silent while it
// provisions (its agent died with it) is replaced after lost_after, not
// after provision.timeout.
func TestSilentProvisioningServerIsLost(t *testing.T) {
	r := testRole()
	r.Count = config.Count{Min: 1, Max: 1}
	r.Provision.Timeout = time.Minute
	h := newHarness(t, 0, r)
	h.role.mu.Lock()
	h.role.hang = true
	h.role.mu.Unlock()
	st := h.waitFor("web-1 provisioning", 20*time.Second, func(st Status) bool {
		return countState(st, "web", ServerProvisioning) == 1
	})
	h.prov.cutOff(st.Servers[0].Machine)
	st = h.waitFor("web-1 lost and replaced", 20*time.Second, func(st Status) bool {
		return hasEvent(st, "lost", "while provisioning") && hasEvent(st, "commission", "replacing web-1")
	})
	if hasEvent(st, "abandon", "") {
		t.Errorf("abandoned rather than lost: %+v", st.Events)
	}
}
