package orchestrator

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/zclconf/go-cty/cty"

	"github.com/rosterhq/roster/core/config"
	"github.com/rosterhq/roster/core/protocol"
)

// A role whose config refers to other roles (`database =
// role.db.endpoints.postgres`) is resolved against the ready servers of
// those roles when a server is commissioned. When those pools change — a
// server gets ready, halts or is replaced — every ready server of the
// referring role is sent a Configure with its config resolved again and the
// new peers. Level-triggered: every reconcile pass compares what each server
// was last given (Server.ConfigSum) with what it would be given now, so a
// Configure that could not be sent is sent by the next pass, and a restart
// sends nothing that did not change.

// ResolveConfig resolves a role's references to other roles with the
// endpoints of the first ready server of each (peers lists them sorted by
// name, as peersFor does): the default of Options.ResolveConfig.
func ResolveConfig(role *config.Role, peers map[string][]protocol.Peer) (cty.Value, error) {
	eps := map[string]map[string]string{}
	for name, ps := range peers {
		if len(ps) > 0 {
			eps[name] = ps[0].Endpoints
		}
	}
	v, diags := role.ResolveConfig(eps)
	if diags.HasErrors() {
		return cty.NilVal, diags
	}
	return v, nil
}

// resolve returns role's config, resolved against peers, in its wire form.
func (o *Orchestrator) resolve(role *config.Role, peers map[string][]protocol.Peer) (protocol.Value, error) {
	resolve := o.opts.ResolveConfig
	if resolve == nil {
		resolve = ResolveConfig
	}
	v, err := resolve(role, peers)
	if err != nil {
		return protocol.Value{}, fmt.Errorf("role %s: resolve config: %w", role.Name, err)
	}
	if v == cty.NilVal || v.IsNull() {
		return protocol.Value{}, nil
	}
	w, err := protocol.EncodeValue(v)
	if err != nil {
		return protocol.Value{}, fmt.Errorf("role %s: config: %w", role.Name, err)
	}
	return w, nil
}

// referencedPeers keeps the pools of the roles that role's config refers
// to: its own pool changing is no reason to configure it.
func referencedPeers(role *config.Role, peers map[string][]protocol.Peer) map[string][]protocol.Peer {
	if role == nil || len(role.References) == 0 {
		return nil
	}
	out := make(map[string][]protocol.Peer, len(role.References))
	for _, ref := range role.References {
		out[ref] = peers[ref]
	}
	return out
}

// configSum identifies a config and the referenced pools it was resolved
// from. encoding/json writes map keys sorted and go-cty's JSON writes
// object attributes sorted, so equal inputs give equal sums.
func configSum(cfg protocol.Value, refs map[string][]protocol.Peer) string {
	if len(refs) == 0 {
		return ""
	}
	b, err := json.Marshal(struct {
		Config protocol.Value             `json:"config"`
		Peers  map[string][]protocol.Peer `json:"peers"`
	}{cfg, refs})
	if err != nil {
		return ""
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:16])
}

// configureServers sends a Configure to every ready server whose role's
// config refers to other roles and whose config or referenced pools changed
// since it was last told. The lock is held.
func (o *Orchestrator) configureServers(ctx context.Context) {
	if o.draining {
		return
	}
	for _, role := range o.roles {
		if len(role.References) == 0 {
			continue
		}
		var stale []*Server
		var peers map[string][]protocol.Peer
		var sum string
		for _, s := range sortedServers(o.st.Servers) {
			if s.Role != role.Name || s.State != ServerReady || s.Machine == "" {
				continue
			}
			if peers == nil {
				if missing := o.missingReferences(role); missing != "" {
					// Nothing to resolve against until a server of the
					// referenced role is ready: keep what they have.
					break
				}
				peers = o.peersFor(role)
				w, ok := o.roleConfig(role, peers)
				if !ok {
					break
				}
				sum = configSum(w, referencedPeers(role, peers))
			}
			if s.ConfigSum != sum {
				stale = append(stale, s)
			}
		}
		if len(stale) == 0 {
			continue
		}
		lr := o.rt.role(role.Name)
		var sent []string
		for _, s := range stale {
			o.rt.configSeq++
			gen := o.st.Epoch<<32 | o.rt.configSeq&0xffffffff
			id := o.sendOrder(ctx, s.Queue, protocol.KindConfigure, s.Machine, protocol.Configure{
				Server: s.Name, Config: lr.config, Peers: peers, Generation: gen,
			})
			if id == "" {
				continue // the next pass tries again
			}
			s.ConfigSum, s.ConfigGeneration = sum, gen
			o.changed()
			sent = append(sent, s.Name)
		}
		if len(sent) > 0 {
			o.met.configured(role.Name, len(sent))
			o.event("configure", role.Name, "", "", "%s: %s changed: configuring %s", role.Name, describePeers(role, peers), strings.Join(sent, ", "))
		}
	}
}

// roleConfig resolves role's config against peers, once per change of the
// referenced pools.
func (o *Orchestrator) roleConfig(role *config.Role, peers map[string][]protocol.Peer) (protocol.Value, bool) {
	lr := o.rt.role(role.Name)
	key := configSum(protocol.Value{}, referencedPeers(role, peers))
	if key != lr.peersSum || lr.peersSum == "" {
		w, err := o.resolve(role, peers)
		if err != nil && (lr.configErr == nil || lr.configErr.Error() != err.Error()) {
			o.log.Warn("cannot resolve config; servers keep their config", "role", role.Name, "error", err)
		}
		lr.config, lr.configErr, lr.peersSum = w, err, key
	}
	return lr.config, lr.configErr == nil
}

// describePeers says what a referring role is resolved against now:
// "db (db-2)".
func describePeers(role *config.Role, peers map[string][]protocol.Peer) string {
	var parts []string
	for _, ref := range role.References {
		var names []string
		for _, p := range peers[ref] {
			names = append(names, p.Name)
		}
		parts = append(parts, fmt.Sprintf("%s (%s)", ref, strings.Join(names, ", ")))
	}
	return strings.Join(parts, ", ")
}
