package orchestrator

import (
	"fmt"
	"strings"

	"github.com/rosterhq/roster/core/config"
	"github.com/rosterhq/roster/core/protocol"
)

// Reload applies a config decoded again (`roster orchestrator` does so on
// SIGHUP) without a restart: its roles and its spare target. Roles that are
// new get their pools, roles that are gone are drained, and a role whose
// plugin or config block changed is refreshed (refresh.go); counts, scaling,
// health, drain and register settings apply from the next pass. The rest of
// roster.hcl (cluster, data_dir, queue, provider, balancers, logs, api) is
// what the orchestrator was built with and changes at a restart: a role
// that registers with a balancer this orchestrator did not open refuses the
// whole reload, and so does another cluster or data_dir. Nothing changes
// when Reload returns an error. It returns what changed, one line each.
func (o *Orchestrator) Reload(cfg *config.Orchestrator) ([]string, error) {
	if cfg == nil {
		return nil, fmt.Errorf("orchestrator: reload: no config")
	}
	if cfg.Cluster != o.cfg.Cluster || cfg.DataDir != o.cfg.DataDir {
		return nil, fmt.Errorf("orchestrator: reload: cluster or data_dir changed (%s in %s, was %s in %s): restart to move the orchestrator",
			cfg.Cluster, cfg.DataDir, o.cfg.Cluster, o.cfg.DataDir)
	}
	roles := make([]*config.Role, 0, len(cfg.Roles))
	for _, r := range cfg.Roles {
		if r.Register != nil && o.bals[r.Register.Balancer] == nil {
			return nil, fmt.Errorf("orchestrator: reload: role %s registers with balancer %q, which this orchestrator has not opened: restart to add a balancer", r.Name, r.Register.Balancer)
		}
		rc := *r
		roles = append(roles, &rc)
	}

	o.mu.Lock()
	defer o.mu.Unlock()
	if o.st == nil {
		return nil, fmt.Errorf("orchestrator: reload: not running yet")
	}
	var changes []string
	byName := map[string]*config.Role{}
	for _, r := range roles {
		byName[r.Name] = r
		old := o.byRol[r.Name]
		if old == nil {
			changes = append(changes, fmt.Sprintf("role %s added (%s, count %d..%d)", r.Name, r.Plugin, r.Count.Min, r.Count.Max))
			o.met.addRole(r.Name)
			continue
		}
		var what []string
		if roleSpec(r) != roleSpec(old) {
			if r.Refreshes() {
				what = append(what, "plugin or config: its servers are refreshed")
			} else {
				what = append(what, "plugin or config: its servers are outdated, not replaced (refresh off)")
			}
		}
		if r.Count != old.Count {
			what = append(what, fmt.Sprintf("count %d..%d → %d..%d", old.Count.Min, old.Count.Max, r.Count.Min, r.Count.Max))
		}
		if !equalPtr(r.Scale, old.Scale) || r.Health != old.Health || r.Provision != old.Provision || r.Drain != old.Drain ||
			!equalPtr(r.Register, old.Register) || r.Reuse != old.Reuse || r.Refreshes() != old.Refreshes() {
			what = append(what, "settings")
		}
		if len(what) > 0 {
			changes = append(changes, fmt.Sprintf("role %s: %s", r.Name, strings.Join(what, ", ")))
		}
	}
	for _, r := range o.roles {
		if byName[r.Name] == nil {
			changes = append(changes, fmt.Sprintf("role %s removed: its servers are drained", r.Name))
		}
	}
	if cfg.Spares != o.cfg.Spares {
		changes = append(changes, fmt.Sprintf("spares %d → %d", o.cfg.Spares, cfg.Spares))
		o.cfg.Spares = cfg.Spares
	}
	o.roles, o.byRol = roles, byName
	for _, r := range roles {
		// What was computed from the role before: its spec and its
		// resolved config.
		lr := o.rt.role(r.Name)
		lr.spec, lr.specDone, lr.refreshHeld = "", false, false
		lr.config, lr.peersSum, lr.configErr = protocol.Value{}, "", nil
	}
	if len(changes) == 0 {
		changes = []string{"nothing changed"}
	} else {
		o.event("reload", "", "", "", "config reloaded: %s", strings.Join(changes, "; "))
	}
	o.poke()
	return changes, nil
}

// ReloadRefused records, as a `reload_refused` event, why a config decoded
// again was not applied (its errors, or a Reload error), so that `roster
// status` and the API show it beside the running config.
func (o *Orchestrator) ReloadRefused(err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.st == nil {
		return
	}
	o.event("reload_refused", "", "", "", "config not reloaded, the running one is unchanged: %v", err)
}

// equalPtr compares two optional blocks by value.
func equalPtr[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}
