package orchestrator

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zclconf/go-cty/cty"

	"github.com/rosterhq/roster/core/config"
	"github.com/rosterhq/roster/sdk"
)

// peerRole is the fake role with endpoints named after the server (so that
// each db server has its own address) and a Configure that records its
// calls.
type peerRole struct {
	*fakeRole
	mu         sync.Mutex
	provisions map[string]sdk.ProvisionRequest
	configures map[string][]sdk.ConfigureRequest
}

func newPeerRole(f *fakeRole) *peerRole {
	return &peerRole{fakeRole: f, provisions: map[string]sdk.ProvisionRequest{}, configures: map[string][]sdk.ConfigureRequest{}}
}

func (r *peerRole) Provision(ctx context.Context, req sdk.ProvisionRequest) (sdk.ProvisionResponse, error) {
	r.mu.Lock()
	r.provisions[req.Server.Name] = req
	r.mu.Unlock()
	return sdk.ProvisionResponse{Endpoints: sdk.Endpoints{"http": "127.0.0.1:1", "postgres": req.Server.Name + ".test:5432"}}, nil
}

func (r *peerRole) Configure(_ context.Context, req sdk.ConfigureRequest) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.configures[req.Server.Name] = append(r.configures[req.Server.Name], req)
	return nil
}

func (r *peerRole) configured(server string) []sdk.ConfigureRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]sdk.ConfigureRequest(nil), r.configures[server]...)
}

func (r *peerRole) provisioned(server string) (sdk.ProvisionRequest, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.provisions[server]
	return p, ok
}

func peerNames(ps []sdk.Peer) string {
	var names []string
	for _, p := range ps {
		names = append(names, p.Name)
	}
	sort.Strings(names)
	return strings.Join(names, ",")
}

// loadPeerRoles decodes a db role and a web role whose config refers to the
// db's endpoint, as role files are decoded for `roster up`.
func loadPeerRoles(t *testing.T) (db, web *config.Role) {
	t.Helper()
	dir := t.TempDir()
	common := `
  health {
    interval        = "100ms"
    timeout         = "1s"
    unhealthy_after = 3
    lost_after      = "600ms"
  }
  provision { timeout = "10s" }
  drain     { timeout = "1s" }
`
	files := map[string]string{
		"db.hcl":  `role "db" {` + "\n  plugin = \"fakedb\"\n  count {\n    min = 1\n    max = 2\n  }" + common + "}\n",
		"web.hcl": `role "web" {` + "\n  plugin = \"fakeweb\"\n  count {\n    min = 2\n    max = 3\n  }" + common + "  config {\n    database = role.db.endpoints.postgres\n  }\n}\n",
	}
	var paths []string
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	schemas := config.SchemaMap{
		"fakedb":  sdk.Schema{},
		"fakeweb": sdk.Schema{Attributes: []sdk.Attribute{{Name: "database", Type: cty.String, Required: true}}},
	}
	roles, diags := config.LoadRoleFiles(context.Background(), paths, schemas)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	for _, r := range roles {
		switch r.Name {
		case "db":
			db = r
		case "web":
			web = r
		}
	}
	if db == nil || web == nil || len(web.References) != 1 || web.References[0] != "db" {
		t.Fatalf("roles: db %v, web %v", db, web)
	}
	return db, web
}

// TestConfigureOnMembershipChange: the web role's config refers to the db
// role's endpoint. Web servers are provisioned with db-1's; when db-1 is
// replaced, every web server is configured with its successor's endpoint,
// once (a server commissioned after the change is not configured at all);
// when the db pool grows, they are told the new peers.
func TestConfigureOnMembershipChange(t *testing.T) {
	db, web := loadPeerRoles(t)
	dbRole := newPeerRole(&fakeRole{metrics: map[string]float64{}, healthy: true, release: make(chan struct{})})
	webRole := newPeerRole(&fakeRole{metrics: map[string]float64{}, healthy: true, release: make(chan struct{})})
	h := newPluginHarness(t, map[string]sdk.Role{"fakedb": dbRole, "fakeweb": webRole}, 0, db, web)

	both := func(dbReady, webReady int) func(Status) bool {
		return func(st Status) bool {
			return countState(st, "db", ServerReady) == dbReady && countState(st, "web", ServerReady) == webReady
		}
	}
	st := h.waitFor("db-1 and two web servers", 20*time.Second, both(1, 2))
	for _, w := range []string{"web-1", "web-2"} {
		p, ok := webRole.provisioned(w)
		if !ok || p.Config.String("database") != "db-1.test:5432" {
			t.Fatalf("%s provisioned with %+v", w, p.Config.Value())
		}
		if peerNames(p.Peers["db"]) != "db-1" {
			t.Errorf("%s provisioned with db peers %q", w, peerNames(p.Peers["db"]))
		}
	}
	// The db role's own pool is among a db server's peers (empty, for the
	// first one).
	if p, ok := dbRole.provisioned("db-1"); !ok || p.Peers["db"] == nil || len(p.Peers["db"]) != 0 {
		t.Errorf("db-1 provisioned without its own role's (empty) pool: %+v", p.Peers)
	}

	// db-1 is lost and replaced by db-2: every web server is configured
	// with db-2's endpoint.
	var dbMachine string
	for _, s := range st.Servers {
		if s.Name == "db-1" {
			dbMachine = s.Machine
		}
	}
	h.prov.kill(dbMachine)
	h.waitFor("web servers configured with db-2", 20*time.Second, func(st Status) bool {
		for _, w := range []string{"web-1", "web-2"} {
			c := webRole.configured(w)
			if len(c) == 0 || c[len(c)-1].Config.String("database") != "db-2.test:5432" {
				return false
			}
		}
		return true
	})
	// Many reconcile passes later (a third web server commissioned and
	// ready), nothing was sent again, and web-3 started with db-2 itself.
	if err := h.o.SetCount("web", 3, 3); err != nil {
		t.Fatal(err)
	}
	h.waitFor("web-3 ready", 20*time.Second, both(1, 3))
	for _, w := range []string{"web-1", "web-2"} {
		c := webRole.configured(w)
		if len(c) != 1 {
			t.Fatalf("%s configured %d times, want once: %+v", w, len(c), c)
		}
		if got := peerNames(c[0].Peers["db"]); got != "db-2" {
			t.Errorf("%s configured with db peers %q, want db-2", w, got)
		}
		if c[0].Server.Name != w || c[0].Endpoints["http"] == "" {
			t.Errorf("%s: configure request %+v", w, c[0])
		}
	}
	if p, _ := webRole.provisioned("web-3"); p.Config.String("database") != "db-2.test:5432" {
		t.Errorf("web-3 provisioned with %+v", p.Config.Value())
	}
	if c := webRole.configured("web-3"); len(c) != 0 {
		t.Errorf("web-3 configured although it was commissioned with the current config: %+v", c)
	}
	if c := dbRole.configured("db-2"); len(c) != 0 {
		t.Errorf("db-2 configured, but its config refers to nothing: %+v", c)
	}

	// The db pool grows: the web servers learn the new peers; the chosen
	// endpoint stays db-2's (the first by name).
	if err := h.o.SetCount("db", 2, 2); err != nil {
		t.Fatal(err)
	}
	h.waitFor("web servers told of db-3", 20*time.Second, func(st Status) bool {
		for _, w := range []string{"web-1", "web-2", "web-3"} {
			c := webRole.configured(w)
			if len(c) == 0 || peerNames(c[len(c)-1].Peers["db"]) != "db-2,db-3" {
				return false
			}
		}
		return true
	})
	for _, w := range []string{"web-1", "web-2", "web-3"} {
		c := webRole.configured(w)
		if got := c[len(c)-1].Config.String("database"); got != "db-2.test:5432" {
			t.Errorf("%s: database %q after db-3 joined, want db-2's", w, got)
		}
	}
	// A replica finds its primary: db-3 was given its own role's pool.
	if p, ok := dbRole.provisioned("db-3"); !ok || peerNames(p.Peers["db"]) != "db-2" {
		t.Errorf("db-3 provisioned with db peers %+v, want db-2", p.Peers)
	}
	h.o.mu.Lock()
	for _, w := range []string{"web-1", "web-2"} {
		if s := h.o.st.Servers[w]; s == nil || s.ConfigGeneration>>32 != h.o.st.Epoch || s.ConfigGeneration&0xffffffff == 0 {
			t.Errorf("%s: configure generation %#x in epoch %d", w, s.ConfigGeneration, h.o.st.Epoch)
		}
	}
	h.o.mu.Unlock()
	if st := h.o.Status(); !hasEvent(st, "configure", "web: db (db-2) changed: configuring web-1, web-2") {
		t.Errorf("no configure event: %+v", st.Events)
	}
}
