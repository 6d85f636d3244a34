package file

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"

	"github.com/rosterhq/roster/core/balancer"
	"github.com/rosterhq/roster/core/config"
)

func parseBody(t *testing.T, dir, src string) hcl.Body {
	t.Helper()
	f, diags := hclparse.NewParser().ParseHCL([]byte(src), filepath.Join(dir, "roster.hcl"))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	return f.Body
}

// open opens the file balancer "nginx" declared in dir/roster.hcl with the
// block body src; its data directory is dir/data.
func open(t *testing.T, dir, src string) (*Balancer, error) {
	t.Helper()
	b, err := balancer.Open(context.Background(),
		config.Balancer{Type: Type, Name: "nginx", Body: parseBody(t, dir, src), Range: hcl.Range{Filename: filepath.Join(dir, "roster.hcl")}},
		balancer.Options{DataDir: filepath.Join(dir, "data"), Logger: hclog.NewNullLogger()})
	if err != nil {
		return nil, err
	}
	return b.(*Balancer), nil
}

func mustOpen(t *testing.T, dir, src string) *Balancer {
	t.Helper()
	b, err := open(t, dir, src)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func read(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestDefaultTemplateAndReload(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	// The reload command keeps a copy of the file as it was when it ran,
	// and counts its runs; it runs in roster.hcl's directory.
	b := mustOpen(t, dir, `
path   = "upstreams.conf"
reload = "cp \"$ROSTER_BALANCER_FILE\" seen.conf && echo x >> reloads"
`)
	conf := filepath.Join(dir, "upstreams.conf")
	if got := read(t, conf); !strings.HasPrefix(got, `# Rendered by roster (balancer "nginx")`) || strings.Contains(got, "upstream") {
		t.Fatalf("empty file = %q", got)
	}
	// The file as it was, held open by a reader, must survive the rewrite.
	before, err := os.Open(conf)
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()

	if err := b.Register(ctx, "web", "web-2", "127.0.0.1:8002"); err != nil {
		t.Fatal(err)
	}
	if err := b.Register(ctx, "web", "web-1", "127.0.0.1:8001"); err != nil {
		t.Fatal(err)
	}
	want := `# Rendered by roster (balancer "nginx"); roster rewrites this file.

upstream web {
    server 127.0.0.1:8001;  # web-1
    server 127.0.0.1:8002;  # web-2
}
`
	if got := read(t, conf); got != want {
		t.Fatalf("file =\n%s\nwant\n%s", got, want)
	}
	if got := read(t, filepath.Join(dir, "seen.conf")); got != want {
		t.Fatalf("the reload saw\n%s", got)
	}
	old := make([]byte, 100)
	n, _ := before.Read(old)
	if strings.Contains(string(old[:n]), "upstream") {
		t.Fatal("the file was rewritten in place, not replaced")
	}
	// Open rendered and reloaded once, each Register once; registering
	// again changes nothing, so nothing is reloaded.
	if err := b.Register(ctx, "web", "web-1", "127.0.0.1:8001"); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(read(t, filepath.Join(dir, "reloads")), "x"); got != 3 {
		t.Fatalf("%d reloads, want 3", got)
	}

	if err := b.Drain(ctx, "web", "web-1"); err != nil {
		t.Fatal(err)
	}
	if got := read(t, conf); strings.Contains(got, "web-1") || !strings.Contains(got, "web-2") {
		t.Fatalf("after draining web-1:\n%s", got)
	}
	l, _ := b.List(ctx, "web")
	if len(l) != 2 || !l[0].Draining || l[0].Server != "web-1" || l[1].Draining || l[1].Sessions != -1 {
		t.Fatalf("List = %+v", l)
	}
	if err := b.Deregister(ctx, "web", "web-2"); err != nil {
		t.Fatal(err)
	}
	if err := b.Deregister(ctx, "web", "web-2"); err != nil {
		t.Fatal(err)
	}
	if got := read(t, conf); !strings.Contains(got, "server 127.0.0.1:9 down;  # no ready server") {
		t.Fatalf("an empty pool:\n%s", got)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Fatalf("a temporary file is left: %s", e.Name())
		}
	}

	// Reopened (the orchestrator restarting), the list is still there.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b2 := mustOpen(t, dir, `path = "upstreams.conf"`)
	l, err = b2.List(ctx, "web")
	if err != nil || len(l) != 1 || l[0].Server != "web-1" || !l[0].Draining || l[0].Endpoint != "127.0.0.1:8001" {
		t.Fatalf("List after reopening = %+v, %v", l, err)
	}
}

func TestCustomTemplate(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	tmpl := `{{range .Roles}}{{.Name}}:{{range .Servers}} {{.Server}}={{.Endpoint}}{{end}}
{{end}}api={{len (.Role "api").Servers}}
`
	if err := os.WriteFile(filepath.Join(dir, "list.tmpl"), []byte(tmpl), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "out"), 0o755); err != nil {
		t.Fatal(err)
	}
	b := mustOpen(t, dir, `
path     = "out/list.txt"
template = "list.tmpl"
reload   = ["true"]
`)
	for _, r := range [][3]string{{"web", "web-1", "10.0.0.1:80"}, {"db", "db-1", "10.0.0.2:5432"}, {"web", "web-2", "10.0.0.3:80"}} {
		if err := b.Register(ctx, r[0], r[1], r[2]); err != nil {
			t.Fatal(err)
		}
	}
	want := "db: db-1=10.0.0.2:5432\nweb: web-1=10.0.0.1:80 web-2=10.0.0.3:80\napi=0\n"
	if got := read(t, filepath.Join(dir, "out", "list.txt")); got != want {
		t.Fatalf("file = %q, want %q", got, want)
	}
	// Registering a server at a new endpoint moves it.
	if err := b.Register(ctx, "db", "db-1", "10.0.0.9:5432"); err != nil {
		t.Fatal(err)
	}
	if got := read(t, filepath.Join(dir, "out", "list.txt")); !strings.Contains(got, "db-1=10.0.0.9:5432") {
		t.Fatalf("after the move: %q", got)
	}

	if err := os.WriteFile(filepath.Join(dir, "bad.tmpl"), []byte("{{range .Roles}"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := open(t, t.TempDir(), `
path     = "x"
template = "`+filepath.Join(dir, "bad.tmpl")+`"`)
	if err == nil || !strings.Contains(err.Error(), "bad.tmpl:1") {
		t.Fatalf("a broken template: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "field.tmpl"), []byte("{{range .Roles}}{{.Nope}}{{end}}"), 0o644); err != nil {
		t.Fatal(err)
	}
	b3 := mustOpen(t, t.TempDir(), `
path     = "x"
template = "`+filepath.Join(dir, "field.tmpl")+`"`)
	if err := b3.Register(ctx, "web", "web-1", "10.0.0.1:80"); err == nil || !strings.Contains(err.Error(), "Nope") {
		t.Fatalf("a template that fails when it runs: %v", err)
	}
}

func TestReloadFailure(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	// Fails once, then succeeds.
	b := mustOpen(t, dir, `
path   = "up.conf"
reload = "if [ -e armed ] && [ ! -e failed ]; then touch failed; echo 'nginx: [emerg] bad thing' >&2; exit 3; fi; echo x >> reloads"
`)
	if err := os.WriteFile(filepath.Join(dir, "armed"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	err := b.Register(ctx, "web", "web-1", "127.0.0.1:8001")
	if err == nil || !strings.Contains(err.Error(), "reload command") || !strings.Contains(err.Error(), "[emerg] bad thing") ||
		!strings.Contains(err.Error(), "exit status 3") {
		t.Fatalf("a failing reload: %v", err)
	}
	// The orchestrator retries the same Register: the file is the same,
	// but the reload that failed runs again.
	if err := b.Register(ctx, "web", "web-1", "127.0.0.1:8001"); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(read(t, filepath.Join(dir, "reloads")), "x"); got != 2 {
		t.Fatalf("%d successful reloads, want 2 (open, retry)", got)
	}

	b2 := mustOpen(t, t.TempDir(), `
path           = "up.conf"
reload         = ["sh", "-c", "sleep 60"]
reload_timeout = "100ms"
`+"\n")
	// Open tolerated the hung reload (logged); Register reports it.
	err = b2.Register(ctx, "web", "web-1", "127.0.0.1:8001")
	if err == nil || !strings.Contains(err.Error(), "timed out after 100ms") || !strings.Contains(err.Error(), "sh -c sleep 60") {
		t.Fatalf("a hung reload: %v", err)
	}
}

func TestDrainWait(t *testing.T) {
	dir := t.TempDir()
	b := mustOpen(t, dir, `
path       = "up.conf"
drain_wait = "1h"
`)
	ctx := context.Background()
	if err := b.Register(ctx, "web", "web-1", "127.0.0.1:8001"); err != nil {
		t.Fatal(err)
	}
	// An unknown server does not wait.
	if err := b.Drain(ctx, "web", "web-9"); err != nil {
		t.Fatal(err)
	}
	dctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := b.Drain(dctx, "web", "web-1"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Drain = %v, want the deadline", err)
	}
	if got := read(t, filepath.Join(dir, "up.conf")); strings.Contains(got, "web-1") {
		t.Fatalf("web-1 is still in the file while it drains:\n%s", got)
	}
}

func TestDecodeConfig(t *testing.T) {
	cfg, diags := DecodeConfig(parseBody(t, "/etc/roster", `
path           = "/etc/nginx/conf.d/roster.conf"
reload         = ["nginx", "-s", "reload"]
reload_timeout = "5s"
drain_wait     = "10s"
`))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if cfg.Path != "/etc/nginx/conf.d/roster.conf" || strings.Join(cfg.Reload, " ") != "nginx -s reload" ||
		cfg.ReloadTimeout != 5*time.Second || cfg.DrainWait != 10*time.Second || cfg.Template != "" {
		t.Fatalf("cfg = %+v", cfg)
	}
	cfg, diags = DecodeConfig(parseBody(t, "/", "path = \"x\"\nreload = \"nginx -s reload\""))
	if diags.HasErrors() || strings.Join(cfg.Reload, "|") != "/bin/sh|-c|nginx -s reload" || cfg.ReloadTimeout != DefaultReloadTimeout {
		t.Fatalf("cfg = %+v, %v", cfg, diags)
	}

	for _, tc := range []struct {
		src, summary string
		line         int
	}{
		{`reload = "x"`, "Missing required argument", 1},
		{`path = ""`, "Invalid path", 1},
		{"path = \"x\"\nreload = 3", "Invalid reload command", 2},
		{"path = \"x\"\nreload = []", "Invalid reload command", 2},
		{"path = \"x\"\nreload = \"\"", "Invalid reload command", 2},
		{"path = \"x\"\ndrain_wait = \"soon\"", "Invalid duration", 2},
		{"path = \"x\"\nreload = \"true\"\nreload_timeout = \"0s\"", "Invalid duration", 3},
		{"path = \"x\"\nreload_timeout = \"5s\"", "Reload timeout without reload", 2},
		{"path = \"x\"\ntemplate = \"\"", "Invalid template", 2},
		{"path = \"x\"\nreloads = \"true\"", "Unsupported argument", 2},
	} {
		_, diags := DecodeConfig(parseBody(t, "/", tc.src))
		found := false
		for _, d := range diags {
			found = found || (d.Summary == tc.summary && d.Subject != nil && d.Subject.Start.Line == tc.line)
		}
		if !found {
			t.Errorf("%q: diagnostics %v, want %q on line %d", tc.src, diags, tc.summary, tc.line)
		}
	}
}
