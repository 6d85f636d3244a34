package orchestrator

import (
	"encoding/json"
	"net/http"
	"sort"
	"strconv"
	"time"
)

// The HTTP API is read-only and served on loopback by default; its JSON
// shapes are the types below (docs/api.md lists them).

// Status is everything `roster status` and `roster up` show, in one
// document: GET /v1/status.
type Status struct {
	Cluster   string        `json:"cluster"`
	Epoch     uint64        `json:"epoch"`
	StartedAt time.Time     `json:"started_at"`
	Draining  bool          `json:"draining"`
	Spares    SparesView    `json:"spares"`
	Roles     []RoleView    `json:"roles"`
	Servers   []ServerView  `json:"servers"`
	Machines  []MachineView `json:"machines"`
	// Events are the last ones (20 by default; GET /v1/events for more).
	Events []Event `json:"events"`
}

// SparesView is the spare pool.
type SparesView struct {
	Target    int `json:"target"`
	Idle      int `json:"idle"`      // reported spare
	Launching int `json:"launching"` // asked of the provider, no hello yet
	// Waiting is how many commissions wait for a spare to claim them.
	Waiting int `json:"waiting"`
}

// RoleView is one role's pool: GET /v1/roles.
type RoleView struct {
	Name    string `json:"name"`
	Plugin  string `json:"plugin"`
	Min     int    `json:"min"`
	Max     int    `json:"max"`
	Current int    `json:"current"` // commissioning + provisioning + ready
	Ready   int    `json:"ready"`
	Desired int    `json:"desired"`
	// States counts the role's servers by state.
	States map[string]int `json:"states"`
	Metric string         `json:"metric,omitempty"`
	// Average is the scaling metric's average over the window; absent when
	// the window is not covered (the pool holds).
	Average *float64 `json:"average,omitempty"`
	Window  string   `json:"window,omitempty"`
	// Waiting says why a change the metric asks for is held back.
	Waiting string `json:"waiting,omitempty"`
	// Outdated counts the ready servers whose plugin or config changed
	// since they were commissioned; Refresh says whether they are being
	// replaced (false: they wait for the operator).
	Outdated   int       `json:"outdated,omitempty"`
	Refresh    bool      `json:"refresh"`
	LastChange time.Time `json:"last_change,omitempty"`
}

// ServerView is one server: GET /v1/servers.
type ServerView struct {
	Name          string             `json:"name"`
	Role          string             `json:"role"`
	State         string             `json:"state"`
	Machine       string             `json:"machine,omitempty"`
	Queue         string             `json:"queue"`
	Endpoints     map[string]string  `json:"endpoints,omitempty"`
	Registered    bool               `json:"registered"`
	Healthy       bool               `json:"healthy"`
	HealthReason  string             `json:"health_reason,omitempty"`
	Unhealthy     int                `json:"unhealthy_streak,omitempty"`
	Load          float64            `json:"load"`
	Metrics       map[string]float64 `json:"metrics,omitempty"`
	LastHeartbeat *time.Time         `json:"last_heartbeat,omitempty"`
	Progress      *Progress          `json:"progress,omitempty"`
	Replaces      string             `json:"replaces,omitempty"`
	// Outdated is true when the server's role changed (plugin or config)
	// since it was commissioned: it is refreshed, one server at a time.
	Outdated  bool       `json:"outdated,omitempty"`
	Reason    string     `json:"reason,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	ReadyAt   *time.Time `json:"ready_at,omitempty"`
}

// MachineView is one machine: GET /v1/machines.
type MachineView struct {
	ID           string     `json:"id"`
	State        string     `json:"state"`
	Server       string     `json:"server,omitempty"`
	ProviderID   string     `json:"provider_id,omitempty"`
	Launched     bool       `json:"launched"`
	AgentState   string     `json:"agent_state,omitempty"`
	AgentVersion string     `json:"agent_version,omitempty"`
	Hostname     string     `json:"hostname,omitempty"`
	LaunchedAt   time.Time  `json:"launched_at"`
	LastSeen     *time.Time `json:"last_seen,omitempty"`
}

// Status returns the current view of the orchestrator.
func (o *Orchestrator) Status() Status {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.status(20)
}

// Changed returns a channel closed at the next change of state (or
// provisioning progress), for live views.
func (o *Orchestrator) Changed() <-chan struct{} {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.notify
}

func (o *Orchestrator) status(events int) Status {
	st := Status{Cluster: o.cfg.Cluster, StartedAt: o.started.UTC(), Draining: o.draining}
	if o.st == nil {
		return st
	}
	st.Epoch = o.st.Epoch
	st.Roles = o.roleViews()
	st.Servers = o.serverViews()
	st.Machines = o.machineViews()
	st.Spares.Target = o.cfg.Spares
	if o.draining {
		st.Spares.Target = 0
	}
	for _, m := range o.st.Machines {
		switch m.State {
		case MachineSpare:
			st.Spares.Idle++
		case MachineLaunching:
			st.Spares.Launching++
		}
	}
	for _, s := range o.st.Servers {
		if s.State == ServerCommissioning {
			st.Spares.Waiting++
		}
	}
	st.Events = o.events(0, events)
	return st
}

func (o *Orchestrator) roleViews() []RoleView {
	out := []RoleView{}
	for _, r := range o.roles {
		v := RoleView{Name: r.Name, Plugin: r.Plugin, Min: r.Count.Min, Max: r.Count.Max, States: map[string]int{}, LastChange: o.st.LastChange[r.Name]}
		v.Current, v.Ready = o.poolSize(r.Name)
		for _, s := range o.st.Servers {
			if s.Role == r.Name {
				v.States[s.State]++
				if s.State == ServerReady && o.outdated(s) {
					v.Outdated++
				}
			}
		}
		v.Refresh = r.Refreshes()
		lr := o.rt.role(r.Name)
		v.Desired = lr.decision.Desired
		if !lr.decided {
			v.Desired = v.Current
		}
		v.Waiting = lr.decision.Waiting
		if r.Scale != nil {
			v.Metric = orDefault(r.Scale.Metric, "load")
			v.Window = fmtDur(r.Scale.Window)
			if lr.haveAvg {
				a := lr.avg
				v.Average = &a
			}
		}
		out = append(out, v)
	}
	return out
}

func (o *Orchestrator) serverViews() []ServerView {
	out := []ServerView{}
	for _, s := range sortedServers(o.st.Servers) {
		ls := o.rt.server(s.Name)
		v := ServerView{Name: s.Name, Role: s.Role, State: s.State, Machine: s.Machine, Queue: s.Queue, Endpoints: s.Endpoints,
			Registered: s.Registered, Healthy: ls.healthy, HealthReason: ls.reason, Unhealthy: ls.unhealthyStreak,
			Load: ls.load, Metrics: ls.metrics, Progress: ls.progress, Replaces: s.Replaces, Outdated: o.outdated(s), Reason: s.Reason, CreatedAt: s.CreatedAt}
		if ls.heartbeats {
			t := ls.lastSeen.UTC()
			v.LastHeartbeat = &t
		}
		if !s.ReadyAt.IsZero() {
			t := s.ReadyAt
			v.ReadyAt = &t
		}
		out = append(out, v)
	}
	return out
}

func (o *Orchestrator) machineViews() []MachineView {
	out := []MachineView{}
	for _, id := range sortedKeys(o.st.Machines) {
		m := o.st.Machines[id]
		lm := o.rt.machine(id)
		v := MachineView{ID: m.ID, State: m.State, Server: m.Server, ProviderID: m.ProviderID, Launched: m.Launched,
			AgentState: lm.agentState, AgentVersion: lm.agentVersion, Hostname: lm.hostname, LaunchedAt: m.LaunchedAt}
		if !lm.lastSeen.IsZero() {
			t := lm.lastSeen.UTC()
			v.LastSeen = &t
		}
		out = append(out, v)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].LaunchedAt.Before(out[j].LaunchedAt) })
	return out
}

// events returns the events after seq, at most limit (the last ones).
func (o *Orchestrator) events(after uint64, limit int) []Event {
	out := []Event{}
	for _, e := range o.st.Events {
		if e.Seq > after {
			out = append(out, e)
		}
	}
	if limit > 0 && len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out
}

// Handler serves the API: /v1/status, /v1/roles, /v1/servers,
// /v1/machines, /v1/events (?after=<seq>&limit=<n>) and /metrics.
func (o *Orchestrator) Handler() http.Handler {
	mux := http.NewServeMux()
	get := func(path string, f func(r *http.Request) (any, int)) {
		mux.HandleFunc("GET "+path, func(w http.ResponseWriter, r *http.Request) {
			v, code := f(r)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			_ = enc.Encode(v)
		})
	}
	locked := func(f func() any) func(*http.Request) (any, int) {
		return func(*http.Request) (any, int) {
			o.mu.Lock()
			defer o.mu.Unlock()
			if o.st == nil {
				return map[string]string{"error": "starting: waiting for the data_dir lock"}, http.StatusServiceUnavailable
			}
			return f(), http.StatusOK
		}
	}
	get("/v1/status", locked(func() any { return o.status(20) }))
	get("/v1/roles", locked(func() any { return o.roleViews() }))
	get("/v1/servers", locked(func() any { return o.serverViews() }))
	get("/v1/machines", locked(func() any { return o.machineViews() }))
	get("/v1/events", func(r *http.Request) (any, int) {
		after, _ := strconv.ParseUint(r.URL.Query().Get("after"), 10, 64)
		limit, err := strconv.Atoi(r.URL.Query().Get("limit"))
		if err != nil || limit <= 0 {
			limit = 100
		}
		return locked(func() any { return o.events(after, limit) })(r)
	})
	mux.Handle("GET /metrics", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		if o.st != nil {
			o.met.observe(o)
		}
		o.mu.Unlock()
		o.met.handler().ServeHTTP(w, r)
	}))
	return mux
}
