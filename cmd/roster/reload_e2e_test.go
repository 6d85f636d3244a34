package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rosterhq/roster/core/orchestrator"
)

// TestE2EReloadOnHangup: a running `roster orchestrator` reloads its role
// files on SIGHUP. A role file with a mistake is refused with a diagnostic
// naming the file, line and field, and nothing changes; a good one resizes
// the pool and refreshes the servers whose config changed, without a
// restart.
func TestE2EReloadOnHangup(t *testing.T) {
	e := newE2E(t, 0, "0s", e2eRole{Min: 1, Max: 1})
	e.start()
	st := e.waitFor("baseline: 1 ready server", 60*time.Second, pool(1, 0))
	first, epoch := st.Servers[0].Name, st.Epoch
	rolePath := filepath.Join(e.dir, "roles", "web.hcl")
	orig, err := os.ReadFile(rolePath)
	must(t, err)
	hangup := func() { must(t, e.cmd.Process.Signal(syscall.SIGHUP)) }

	// A mistake: refused, reported with where it is, nothing changes.
	bad := strings.Replace(string(orig), "min = 1", `min = "one"`, 1)
	must(t, os.WriteFile(rolePath, []byte(bad), 0o644))
	hangup()
	waitUntil(t, "the refused reload in the log", 30*time.Second, func() bool {
		return strings.Contains(e.log(), "reload refused")
	})
	log := e.log()
	if !strings.Contains(log, "web.hcl line 5") || !strings.Contains(log, `min = "one"`) || !strings.Contains(log, "a number is required") {
		t.Errorf("the refusal does not name web.hcl line 5, the field and its problem:\n%s", log)
	}
	if !e.hasEvent("reload_refused", "has errors") {
		t.Errorf("no reload_refused event: %+v", e.events())
	}
	if st := e.status(); !pool(1, 0)(st) || st.Servers[0].Name != first || st.Roles[0].Min != 1 {
		t.Fatalf("a refused reload changed the pool: %+v", st.Roles)
	}

	// Two servers, and a changed config: web-1 is refreshed.
	good := strings.Replace(strings.Replace(string(orig), "min = 1", "min = 2", 1), "max = 1", "max = 2", 1)
	good = strings.Replace(good, `provision_delay = "0s"`, `provision_delay = "10ms"`, 1)
	must(t, os.WriteFile(rolePath, []byte(good), 0o644))
	hangup()
	st = e.waitFor("2 ready servers, both of the new config", 90*time.Second, func(st orchestrator.Status) bool {
		if !pool(2, 0)(st) {
			return false
		}
		for _, s := range st.Servers {
			if s.Outdated || s.Name == first {
				return false
			}
		}
		return true
	})
	if st.Epoch != epoch {
		t.Errorf("epoch %d → %d: the reload restarted the orchestrator", epoch, st.Epoch)
	}
	if !e.hasEvent("reload", "role web: plugin or config: its servers are refreshed, count 1..1 → 2..2") {
		t.Errorf("no reload event saying what changed: %+v", e.events())
	}
	if !e.hasEvent("refresh", first+": replaced by") {
		t.Errorf("%s was not refreshed: %+v", first, e.events())
	}
}

// TestE2ERefreshBehindHaproxyFailsNoRequest: a reload changes the web
// role's config while a client keeps asking haproxy's frontend for pages.
// Both servers are refreshed one at a time, each successor taking traffic
// before its outdated server is drained, and no request fails.
func TestE2ERefreshBehindHaproxyFailsNoRequest(t *testing.T) {
	e := newE2E(t, 0, "0s", e2eRole{Min: 2, Max: 2})
	front := e.useHaproxy()
	e.start()
	st := e.waitFor("two servers registered", 60*time.Second, registeredN(2))
	old := map[string]bool{}
	for _, s := range st.Servers {
		old[s.Name] = true
	}
	waitUntil(t, "both servers answering through haproxy", 30*time.Second, func() bool {
		name, err := getServer(front)
		return err == nil && old[name]
	})

	// A client asks for pages, one after another, for the whole refresh.
	var mu sync.Mutex
	answered, failures := map[string]int{}, []string{}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			name, err := getServer(front)
			mu.Lock()
			if err != nil {
				failures = append(failures, err.Error())
			} else {
				answered[name]++
			}
			mu.Unlock()
			time.Sleep(5 * time.Millisecond)
		}
	}()

	rolePath := filepath.Join(e.dir, "roles", "web.hcl")
	role, err := os.ReadFile(rolePath)
	must(t, err)
	must(t, os.WriteFile(rolePath, bytes.Replace(role, []byte(`provision_delay = "0s"`), []byte(`provision_delay = "10ms"`), 1), 0o644))
	must(t, e.cmd.Process.Signal(syscall.SIGHUP))
	st = e.waitFor("two new servers, registered", 120*time.Second, func(st orchestrator.Status) bool {
		if !pool(2, 0)(st) {
			return false
		}
		for _, s := range st.Servers {
			if old[s.Name] || s.Outdated || !s.Registered {
				return false
			}
		}
		return true
	})
	// Until both new servers have answered.
	waitUntil(t, "both new servers answering through haproxy", 30*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, s := range st.Servers {
			if answered[s.Name] == 0 {
				return false
			}
		}
		return true
	})
	close(stop)
	<-done
	mu.Lock()
	defer mu.Unlock()
	total := 0
	for _, n := range answered {
		total += n
	}
	if len(failures) > 0 {
		t.Errorf("%d of %d requests failed during the refresh: %q", len(failures), total+len(failures), failures[:min(5, len(failures))])
	}
	for name := range old {
		if !e.hasEvent("refresh", name+": replaced by") {
			t.Errorf("%s was not refreshed: %+v", name, e.events())
		}
	}
	t.Logf("%d requests through haproxy during the refresh, answered by %v", total, answered)
}
