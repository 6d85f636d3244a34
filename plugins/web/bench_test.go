package web

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rosterhq/roster/sdk"
	"github.com/rosterhq/roster/sdk/process"
	"github.com/rosterhq/roster/sdk/rolekit"
	"github.com/rosterhq/roster/sdk/roletest"
)

// shellStart is the baseline: a plain script that starts the same memcached
// and apache with the same configuration files and polls them ready the way
// the role does (memcached answers stats, then the health path answers
// 200), with bash's /dev/tcp so that no curl process is forked per poll.
const shellStart = `set -u
mc_ready() { exec 3<>/dev/tcp/127.0.0.1/$MC_PORT || return 1; printf 'stats\r\n' >&3; read -r -t 1 line <&3; exec 3>&-; [[ $line == STAT* ]]; }
http_ready() { exec 4<>/dev/tcp/127.0.0.1/$HTTP_PORT || return 1; printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$HEALTH_PATH" >&4; read -r -t 1 status <&4; exec 4>&-; [[ $status == *" 200 "* ]]; }
"$MEMCACHED" $MC_ARGS >>"$LOGS/memcached.log" 2>&1 &
until mc_ready 2>/dev/null; do sleep 0.005; done
"$APACHE" -f "$CONF" -DFOREGROUND >>"$LOGS/apache2.out.log" 2>&1 &
until http_ready 2>/dev/null; do sleep 0.005; done
`

// BenchmarkProvisionToHealthy measures, on this machine, the time from
// Provision to the first healthy HealthCheck of a PHP web server, next to
// the shell baseline starting the same daemons from the same configuration,
// interleaved in one run. overhead-p50-ms is what Roster adds (target: at
// most 50 ms).
func BenchmarkProvisionToHealthy(b *testing.B) {
	requireServices(b, true)
	const rounds = 12
	site := testSite(b)
	role := New()
	ctx := context.Background()
	srv := sdk.Server{Name: "web-1", WorkDir: roletest.WorkDir(b)}
	cfg := mustConfig(b, cfgMap(site, nil))
	l := layoutOf(srv.WorkDir)

	var rosterDur, shellDur []time.Duration
	for range b.N {
		for range rounds {
			// Roster: Provision, then HealthCheck until healthy.
			start := time.Now()
			prov, err := role.Provision(ctx, sdk.ProvisionRequest{Server: srv, Config: cfg})
			if err != nil {
				b.Fatal(err)
			}
			for {
				h, err := role.HealthCheck(ctx, sdk.HealthCheckRequest{Server: srv, Config: cfg, Endpoints: prov.Endpoints})
				if err != nil {
					b.Fatal(err)
				}
				if h.Healthy {
					break
				}
				if time.Since(start) > time.Minute {
					b.Fatalf("not healthy after a minute: %s", h.Reason)
				}
			}
			rosterDur = append(rosterDur, time.Since(start))
			mcArgs := memcachedSpec(l, mustDecode(b, cfg), portOf(b, prov.Endpoints["memcached"]), mcUser(b)).Args
			if _, err := role.Teardown(ctx, sdk.TeardownRequest{Server: srv, Config: cfg, Endpoints: prov.Endpoints}); err != nil {
				b.Fatal(err)
			}

			// The shell, with the configuration Provision wrote.
			shellDur = append(shellDur, runShell(b, l, prov.Endpoints, mcArgs))
		}
	}
	rp, sp := pct(rosterDur, 50), pct(shellDur, 50)
	b.ReportMetric(ms(rp), "roster-p50-ms")
	b.ReportMetric(ms(sp), "shell-p50-ms")
	b.ReportMetric(ms(rp-sp), "overhead-p50-ms")
	b.ReportMetric(ms(pct(rosterDur, 90)), "roster-p90-ms")
	b.ReportMetric(ms(pct(shellDur, 90)), "shell-p90-ms")
	b.ReportMetric(0, "ns/op")
}

func runShell(b *testing.B, l layout, eps sdk.Endpoints, mcArgs []string) time.Duration {
	b.Helper()
	sup, err := process.NewSupervisor(filepath.Join(filepath.Dir(l.Dir), "shell"), nil)
	if err != nil {
		b.Fatal(err)
	}
	script := filepath.Join(sup.Dir(), "start.sh")
	if err := os.WriteFile(script, []byte(shellStart), 0o755); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	start := time.Now()
	p, err := sup.Start(ctx, process.Spec{
		Name: "shell", Path: "bash", Args: []string{script},
		Env: []string{
			"MEMCACHED=" + memcachedBinary, "APACHE=" + apacheBinary, "CONF=" + l.Conf, "LOGS=" + l.Logs,
			"MC_ARGS=" + strings.Join(mcArgs, " "), "MC_PORT=" + fmt.Sprint(portOf(b, eps["memcached"])),
			"HTTP_PORT=" + fmt.Sprint(portOf(b, eps["http"])), "HEALTH_PATH=/health.php",
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped { // a failed run must not leave daemons behind
			_ = syscall.Kill(-p.Pid, syscall.SIGKILL)
		}
	}()
	// The script exits once both answer; its daemons stay in its group.
	for p.Alive() {
		time.Sleep(time.Millisecond)
		if time.Since(start) > time.Minute {
			b.Fatal("shell baseline not ready after a minute")
		}
	}
	d := time.Since(start)
	if err := p.ExitError(); err != nil {
		b.Fatalf("shell baseline: %v: %s", err, process.Tail(p.Stderr, 1024))
	}
	_ = syscall.Kill(-p.Pid, syscall.SIGTERM)
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if left, err := p.WaitExited(wctx); err != nil || len(left) > 0 {
		_ = syscall.Kill(-p.Pid, syscall.SIGKILL)
		b.Fatalf("shell baseline daemons %v did not stop: %v", left, err)
	}
	stopped = true
	_ = p.Stop(ctx, time.Second)
	return d
}

func mustDecode(b *testing.B, c sdk.Config) settings {
	s, err := decode(c)
	if err != nil {
		b.Fatal(err)
	}
	return s
}

func mcUser(b *testing.B) string {
	u, err := rolekit.RunAs("memcache")
	if err != nil {
		b.Fatal(err)
	}
	return userName(u)
}

func portOf(b *testing.B, addr string) int {
	_, p, ok := strings.Cut(addr, ":")
	var n int
	if _, err := fmt.Sscan(p, &n); !ok || err != nil {
		b.Fatalf("endpoint %q", addr)
	}
	return n
}

func pct(d []time.Duration, p int) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[(len(s)-1)*p/100]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// BenchmarkConfigureReload measures Configure of a running PHP web server
// whose env changes (apache2 -t, the graceful reload, until a worker of the
// new generation answers and the old workers are gone), alternating two
// values, and Configure with unchanged values (rendering and comparing
// httpd.conf only).
func BenchmarkConfigureReload(b *testing.B) {
	requireServices(b, true)
	const rounds = 20
	role := New().(*Role)
	ctx := context.Background()
	srv := sdk.Server{Name: "web-1", WorkDir: roletest.WorkDir(b)}
	site := testSite(b)
	cfgs := []sdk.Config{
		mustConfig(b, cfgMap(site, map[string]any{"env": map[string]any{"DB": "127.0.0.1:5432"}})),
		mustConfig(b, cfgMap(site, map[string]any{"env": map[string]any{"DB": "127.0.0.1:6543"}})),
	}
	prov, err := role.Provision(ctx, sdk.ProvisionRequest{Server: srv, Config: cfgs[0]})
	b.Cleanup(func() { role.Teardown(context.Background(), sdk.TeardownRequest{Server: srv, Config: cfgs[0]}) })
	if err != nil {
		b.Fatal(err)
	}
	var reloads, noops []time.Duration
	for range b.N {
		for i := range rounds {
			cfg := cfgs[(i+1)%2]
			start := time.Now()
			if err := role.Configure(ctx, sdk.ConfigureRequest{Server: srv, Config: cfg, Endpoints: prov.Endpoints}); err != nil {
				b.Fatal(err)
			}
			reloads = append(reloads, time.Since(start))
			start = time.Now()
			if err := role.Configure(ctx, sdk.ConfigureRequest{Server: srv, Config: cfg, Endpoints: prov.Endpoints}); err != nil {
				b.Fatal(err)
			}
			noops = append(noops, time.Since(start))
		}
	}
	b.ReportMetric(ms(pct(reloads, 50)), "reload-p50-ms")
	b.ReportMetric(ms(pct(reloads, 90)), "reload-p90-ms")
	b.ReportMetric(float64(pct(noops, 50).Microseconds()), "unchanged-p50-µs")
	b.ReportMetric(0, "ns/op")
}
