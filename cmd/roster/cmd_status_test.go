package main

import (
	"strings"
	"testing"
	"time"

	"github.com/rosterhq/roster/core/orchestrator"
)

// TestRenderStatusShowsARefresh: an outdated server and the successor on
// its way to replace it are told apart in the view.
func TestRenderStatusShowsARefresh(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	st := orchestrator.Status{Cluster: "demo", Epoch: 2, StartedAt: now.Add(-time.Minute), Roles: []orchestrator.RoleView{
		{Name: "web", Plugin: "web", Min: 2, Max: 2, Ready: 2, Desired: 2, Outdated: 1, Refresh: true, States: map[string]int{"ready": 2, "provisioning": 1}},
		{Name: "db", Plugin: "db", Min: 1, Max: 1, Ready: 1, Desired: 1, Outdated: 1, States: map[string]int{"ready": 1}},
	}, Servers: []orchestrator.ServerView{
		{Name: "web-1", Role: "web", State: orchestrator.ServerReady, Healthy: true, Outdated: true, Endpoints: map[string]string{"http": "127.0.0.1:8001"}},
		{Name: "web-2", Role: "web", State: orchestrator.ServerReady, Healthy: true, Endpoints: map[string]string{"http": "127.0.0.1:8002"}},
		{Name: "web-3", Role: "web", State: orchestrator.ServerProvisioning, Replaces: "web-1", CreatedAt: now.Add(-5 * time.Second),
			Progress: &orchestrator.Progress{Step: "apache", Fraction: 0.5}},
	}}
	var b strings.Builder
	renderStatus(&b, st, now, 5)
	lines := map[string]string{}
	for _, l := range strings.Split(b.String(), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			lines[f[0]] = l
		}
	}
	if !strings.Contains(lines["web"], "1 provisioning, 1 outdated, refreshing") {
		t.Errorf("the web role's note: %q", lines["web"])
	}
	if !strings.Contains(lines["db"], "1 outdated, refresh off") {
		t.Errorf("the db role's note: %q", lines["db"])
	}
	if !strings.Contains(lines["web-1"], "(outdated: role changed)") {
		t.Errorf("web-1 not shown outdated: %q", lines["web-1"])
	}
	if strings.Contains(lines["web-2"], "outdated") {
		t.Errorf("web-2 shown outdated: %q", lines["web-2"])
	}
	if !strings.Contains(lines["web-3"], "to replace web-1") {
		t.Errorf("web-3 does not say whom it replaces: %q", lines["web-3"])
	}
}
