package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/rosterhq/roster/core/config"
	"github.com/rosterhq/roster/core/orchestrator"
)

func init() {
	register(command{
		name:     "status",
		synopsis: "Show pools, servers, spares and recent events of a running orchestrator",
		run:      runStatus,
	})
}

func runStatus(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("address", config.DefaultAPIAddress, "the orchestrator's API address (host:port or URL)")
	asJSON := fs.Bool("json", false, "print the API's JSON document instead of the table")
	setUsage(fs, stderr,
		"Usage: roster status [-address 127.0.0.1:7070] [-json]",
		"",
		"Prints what `roster up` shows, from a running orchestrator's API (GET /v1/status).",
	)
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return 1
	}
	url := *addr
	if !strings.HasPrefix(url, "http://") && !strings.HasPrefix(url, "https://") {
		url = "http://" + url
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(url, "/")+"/v1/status", nil)
	if err != nil {
		fmt.Fprintf(stderr, "roster status: %v\n", err)
		return 1
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "roster status: no orchestrator answers at %s: %v\n", *addr, err)
		return 1
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		fmt.Fprintf(stderr, "roster status: %v\n", err)
		return 1
	}
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "roster status: %s: %s\n", resp.Status, strings.TrimSpace(string(body)))
		return 1
	}
	if *asJSON {
		_, _ = stdout.Write(body)
		return 0
	}
	var st orchestrator.Status
	if err := json.Unmarshal(body, &st); err != nil {
		fmt.Fprintf(stderr, "roster status: the answer of %s is not a status: %v\n", *addr, err)
		return 1
	}
	renderStatus(stdout, st, time.Now(), 10)
	return 0
}

// renderStatus writes the view `roster up` and `roster status` show: the
// pools, the servers with their state and provisioning progress, the
// spares and the last events.
func renderStatus(w io.Writer, st orchestrator.Status, now time.Time, events int) {
	var b strings.Builder
	state := "running"
	if st.Draining {
		state = "shutting down"
	}
	fmt.Fprintf(&b, "cluster %s  epoch %d  %s  up %s\n\n", st.Cluster, st.Epoch, state, since(now, st.StartedAt))

	fmt.Fprintf(&b, "%-14s %-8s %5s %7s %6s  %-22s %s\n", "ROLE", "PLUGIN", "READY", "DESIRED", "MIN-MAX", "METRIC", "NOTE")
	for _, r := range st.Roles {
		metric := "-"
		if r.Metric != "" {
			metric = r.Metric + " (no data)"
			if r.Average != nil {
				metric = fmt.Sprintf("%s %.2f/%s", r.Metric, *r.Average, r.Window)
			}
		}
		var others []string
		for _, s := range stateNames(r.States) {
			if s != orchestrator.ServerReady {
				others = append(others, fmt.Sprintf("%d %s", r.States[s], s))
			}
		}
		if r.Outdated > 0 {
			if r.Refresh {
				others = append(others, fmt.Sprintf("%d outdated, refreshing", r.Outdated))
			} else {
				others = append(others, fmt.Sprintf("%d outdated, refresh off", r.Outdated))
			}
		}
		note := strings.Join(others, ", ")
		if r.Waiting != "" {
			note = strings.TrimPrefix(strings.Join([]string{note, r.Waiting}, "; "), "; ")
		}
		fmt.Fprintf(&b, "%-14s %-8s %5d %7d %6s  %-22s %s\n", r.Name, r.Plugin, r.Ready, r.Desired, fmt.Sprintf("%d-%d", r.Min, r.Max), metric, note)
	}

	fmt.Fprintf(&b, "\n%-14s %-14s %-28s %-22s %s\n", "SERVER", "STATE", "MACHINE", "ENDPOINT", "HEALTH / PROGRESS")
	for _, s := range st.Servers {
		ep := "-"
		keys := make([]string, 0, len(s.Endpoints))
		for k := range s.Endpoints {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		if len(keys) > 0 {
			ep = s.Endpoints[keys[0]]
		}
		var detail string
		switch s.State {
		case orchestrator.ServerCommissioning, orchestrator.ServerProvisioning:
			if p := s.Progress; p != nil {
				detail = progressBar(p.Fraction) + " " + p.Step
				if p.Message != "" && p.Message != p.Step {
					detail += ": " + p.Message
				}
			}
			detail += fmt.Sprintf(" (%s)", since(now, s.CreatedAt))
			if s.Replaces != "" {
				detail += " to replace " + s.Replaces
			}
		case orchestrator.ServerReady:
			if s.Healthy {
				detail = "healthy"
			} else {
				detail = "UNHEALTHY"
				if s.HealthReason != "" {
					detail += ": " + s.HealthReason
				}
			}
			detail += fmt.Sprintf("  load %.2f", s.Load)
			for _, k := range sortedMetricNames(s.Metrics) {
				detail += fmt.Sprintf("  %s %.2f", k, s.Metrics[k])
			}
			if s.Outdated {
				detail += "  (outdated: role changed)"
			}
		default:
			detail = s.Reason
		}
		fmt.Fprintf(&b, "%-14s %-14s %-28s %-22s %s\n", s.Name, s.State, orDash(s.Machine), ep, strings.TrimSpace(detail))
	}
	if len(st.Servers) == 0 {
		fmt.Fprintln(&b, "(no servers)")
	}

	fmt.Fprintf(&b, "\nspares: %d idle, %d launching, target %d", st.Spares.Idle, st.Spares.Launching, st.Spares.Target)
	if st.Spares.Waiting > 0 {
		fmt.Fprintf(&b, "; %d commissions wait for a machine", st.Spares.Waiting)
	}
	fmt.Fprintf(&b, "   machines: %d\n", len(st.Machines))

	evs := st.Events
	if len(evs) > events {
		evs = evs[len(evs)-events:]
	}
	if len(evs) > 0 {
		fmt.Fprintln(&b, "\nrecent events:")
		for _, e := range evs {
			fmt.Fprintf(&b, "  %s  %s\n", e.Time.Local().Format("15:04:05"), e.Message)
		}
	}
	_, _ = io.WriteString(w, b.String())
}

func progressBar(f float64) string {
	if f < 0 || f > 1 {
		return "[  ?  ]"
	}
	n := int(f*5 + 0.5)
	return "[" + strings.Repeat("#", n) + strings.Repeat(".", 5-n) + "]"
}

func since(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	default:
		return d.Round(time.Minute).String()
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func sortedMetricNames(m map[string]float64) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
