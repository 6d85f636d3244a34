package orchestrator

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/zclconf/go-cty/cty"
	ctymsgpack "github.com/zclconf/go-cty/cty/msgpack"

	"github.com/rosterhq/roster/core/config"
)

// A role's servers are refreshed — replaced one at a time — when what they
// were provisioned from changes: the role's plugin or its `config` block,
// as an operator edits a role file and restarts the orchestrator (EC2 Auto
// Scaling's instance refresh, a Deployment's rolling update). Each server
// records the spec of its role when it is commissioned (Server.Spec); a
// ready server whose spec differs from its role's now is outdated.
//
// One server at a time, successor first: once the pool is steady (nothing
// of the role commissioning or provisioning, no failure backoff), the
// oldest outdated server gets a successor (Server.Replaces names it); the
// outdated server counts as its successor for the policy, so the pool
// runs one above its size — above count.max, if it is at it — while the
// successor provisions; once the successor is ready the outdated server is
// drained like any scale-in. A successor that fails is not replaced: the
// outdated server still serves, and the refresh starts again after the
// role's failure backoff. A role whose plugin says it is stateful (a
// database primary: a new server lacks the rows written since) is refreshed
// only when its role file says `refresh = true`; `refresh = false` holds
// any role. Its outdated servers are marked and one event says they wait
// for the operator. Count, scale, health, drain and register
// settings are the orchestrator's own and apply at once; they never
// refresh a server. References to other roles are part of the spec as
// written (role.db.endpoints.postgres), not as resolved: a change of the
// referenced pool is a Configure, not a refresh.

// roleSpec digests what a role's servers are provisioned from: the plugin
// and the config block's values, references left unresolved. cty's msgpack
// encoding writes object attributes and map keys sorted and encodes
// unknown values, so equal configs give equal specs.
func roleSpec(role *config.Role) string {
	h := sha256.New()
	h.Write([]byte(role.Plugin))
	h.Write([]byte{0})
	if v := role.Config; v != cty.NilVal {
		v, _ = v.UnmarkDeep()
		b, err := ctymsgpack.Marshal(v, v.Type())
		if err != nil {
			return "" // no spec: never refreshed
		}
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// spec returns the role's spec, computed once: roles do not change while
// the orchestrator runs.
func (o *Orchestrator) spec(role *config.Role) string {
	lr := o.rt.role(role.Name)
	if !lr.specDone {
		lr.spec, lr.specDone = roleSpec(role), true
	}
	return lr.spec
}

// outdated reports whether s was provisioned from another spec than its
// role's now. Servers recorded without a spec are left alone.
func (o *Orchestrator) outdated(s *Server) bool {
	role := o.byRol[s.Role]
	return role != nil && s.Spec != "" && s.Spec != o.spec(role)
}

// successors maps the servers of a role that are being refreshed to their
// live successors (commissioning, provisioning or ready), in one pass over
// the servers: reconcile asks for every server of a pool of thousands.
func (o *Orchestrator) successors(role string) map[string]*Server {
	var out map[string]*Server
	for _, n := range o.st.Servers {
		if n.Role != role || n.Replaces == "" {
			continue
		}
		switch n.State {
		case ServerCommissioning, ServerProvisioning, ServerReady:
			if out == nil {
				out = map[string]*Server{}
			}
			out[n.Replaces] = n
		}
	}
	return out
}

// beingRefreshed reports whether s is a ready server whose successor is on
// its way (succ from successors): it counts as that successor for the
// policy and is not picked for a scale-in.
func beingRefreshed(s *Server, succ map[string]*Server) bool {
	return s.State == ServerReady && succ[s.Name] != nil
}

// replaceLater has reconcile commission a replacement for s, a server
// given up as failed, before anything else happens to its pool — unless s
// was a refresh's successor: the server it was to replace still serves.
func (o *Orchestrator) replaceLater(s *Server) {
	if old := o.st.Servers[s.Replaces]; old != nil && old.State == ServerReady {
		return
	}
	lr := o.rt.role(s.Role)
	lr.pendingReplace = append(lr.pendingReplace, s.Name)
}

// refreshHandOver drains the outdated servers whose successors are ready.
// It runs before the role's pool is counted, so the policy never sees both.
func (o *Orchestrator) refreshHandOver(ctx context.Context, role *config.Role) {
	succ := o.successors(role.Name)
	if len(succ) == 0 {
		return
	}
	for _, s := range sortedServers(o.st.Servers) {
		if s.Role != role.Name || s.State != ServerReady {
			continue
		}
		if n := succ[s.Name]; n != nil && n.State == ServerReady {
			o.event("refresh", role.Name, s.Name, s.Machine, "%s: replaced by %s, draining", s.Name, n.Name)
			o.drain(ctx, s, "refreshed: replaced by "+n.Name)
		}
	}
}

// refreshNext commissions a successor for the oldest outdated server of a
// steady pool, if there is one and no refresh of the role is under way.
func (o *Orchestrator) refreshNext(ctx context.Context, role *config.Role) {
	var next *Server
	for _, s := range o.st.Servers {
		if s.Role != role.Name {
			continue
		}
		switch s.State {
		case ServerCommissioning, ServerProvisioning:
			return // not steady, or a successor on its way
		case ServerReady:
			if !o.outdated(s) {
				continue
			}
			if next == nil || s.ReadyAt.Before(next.ReadyAt) || (s.ReadyAt.Equal(next.ReadyAt) && serverLess(s.Name, next.Name)) {
				next = s
			}
		}
	}
	if next == nil {
		return
	}
	if !role.Refreshes() {
		lr := o.rt.role(role.Name)
		if !lr.refreshHeld {
			lr.refreshHeld = true
			why := "refresh = false"
			if role.Refresh == nil {
				why = "its plugin is stateful and the role file does not say refresh = true"
			}
			o.event("refresh", role.Name, next.Name, next.Machine, "%s: outdated servers are not replaced (%s): replace them yourself, or set refresh = true", role.Name, why)
		}
		return
	}
	n, err := o.commission(ctx, role, next.Name, fmt.Sprintf("refreshing %s: role %s changed", next.Name, role.Name))
	if err != nil {
		o.log.Warn("cannot commission a successor; will retry", "role", role.Name, "server", next.Name, "error", err)
		return
	}
	o.met.refreshed(role.Name)
	o.event("refresh", role.Name, next.Name, next.Machine, "%s: outdated (plugin or config changed): %s commissioned to replace it", next.Name, n.Name)
}
