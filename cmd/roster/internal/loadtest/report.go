package loadtest

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"time"
)

// PhaseResult is what one phase of the run measured.
type PhaseResult struct {
	Name        string
	Duration    time.Duration
	Connections int // wrk's connections
	Wrk         WrkResult
	Probe       Stats
	// Pool is the ready servers at the phase's start, its peak, and at its
	// end.
	PoolStart, PoolPeak, PoolEnd int
}

// Event is a pool change worth listing, at its time in the run.
type Event struct {
	At      time.Duration
	Message string
}

// Report is a run's results, written as markdown.
type Report struct {
	Command string
	When    time.Time
	Machine string
	Phases  []PhaseResult
	// ProbeConnections is how many connections the probe used.
	ProbeConnections int
	Events           []Event
	Samples          []Sample
	// SeriesEvery is the spacing of the time series table's rows.
	SeriesEvery time.Duration
	// Image is the plot's file name, relative to the markdown.
	Image string
	// Probe is the probe's stats over the whole run, for the totals row
	// (percentiles cannot be summed from the phases').
	Probe *Stats
}

// Totals sums the phases.
func (r Report) Totals() PhaseResult {
	t := PhaseResult{Name: "whole run"}
	for i, p := range r.Phases {
		t.Duration += p.Duration
		t.Wrk = t.Wrk.Add(p.Wrk)
		t.Probe.Requests += p.Probe.Requests
		t.Probe.Failed += p.Probe.Failed
		t.Probe.Max = max(t.Probe.Max, p.Probe.Max)
		t.PoolPeak = max(t.PoolPeak, p.PoolPeak)
		if i == 0 {
			t.PoolStart = p.PoolStart
		}
		t.PoolEnd = p.PoolEnd
		t.Connections = max(t.Connections, p.Connections)
	}
	if r.Probe != nil {
		t.Probe = *r.Probe
	}
	return t
}

// WriteMarkdown writes the results section.
func (r Report) WriteMarkdown(w io.Writer) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "Run `%s` on %s, %s.\n\n", r.Command, r.When.UTC().Format("2006-01-02 15:04 MST"), r.Machine)
	b.WriteString("| phase | length | wrk connections | requests | req/s | wrk p50 | wrk p99 | non-2xx | socket errors | timeouts | probe requests | probe failed | probe p99 | ready servers (start → peak → end) |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	rows := append(append([]PhaseResult(nil), r.Phases...), r.Totals())
	for i, p := range rows {
		name := p.Name
		if i == len(rows)-1 {
			name = "**" + name + "**"
		}
		rps := 0.0
		if p.Wrk.Duration > 0 {
			rps = float64(p.Wrk.Requests) / p.Wrk.Duration.Seconds()
		}
		p50, p99, pp99 := fmtMS(p.Wrk.P50), fmtMS(p.Wrk.P99), fmtMS(p.Probe.P99)
		if i == len(rows)-1 {
			p50, p99 = "", ""
			if r.Probe == nil {
				pp99 = ""
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %d | %.0f | %s | %s | %d | %d | %d | %d | %d | %s | %d → %d → %d |\n",
			name, p.Duration.Round(time.Second), p.Connections, p.Wrk.Requests, rps, p50, p99,
			p.Wrk.Non2xx(), p.Wrk.SocketErrors(), p.Wrk.Timeout, p.Probe.Requests, p.Probe.Failed, pp99,
			p.PoolStart, p.PoolPeak, p.PoolEnd)
	}
	fmt.Fprintf(&b, "\nThe probe is a Go client on %d connections beside wrk, requesting the same page one request at a time on each; its latencies give the p99 over time.\n", r.ProbeConnections)
	if len(r.Events) > 0 {
		b.WriteString("\nThe pool's changes, as the orchestrator logged them:\n\n")
		for _, e := range r.Events {
			fmt.Fprintf(&b, "- +%s %s\n", e.At.Round(time.Second), e.Message)
		}
	}
	if r.Image != "" {
		fmt.Fprintf(&b, "\n![pool size, busy ratio and p99 latency over the run](%s)\n", r.Image)
	}
	if every := r.SeriesEvery; every > 0 && len(r.Samples) > 0 {
		fmt.Fprintf(&b, "\n<details><summary>The samples, every %s</summary>\n\n", every)
		b.WriteString("| t | ready | provisioning | busy now | busy over window | probe p99 |\n|---:|---:|---:|---:|---:|---:|\n")
		next := time.Duration(0)
		for _, s := range r.Samples {
			if s.At < next {
				continue
			}
			next = s.At.Truncate(every) + every
			fmt.Fprintf(&b, "| %s | %d | %d | %s | %s | %s |\n", s.At.Round(time.Second), s.Ready, s.Current-s.Ready, fmtRatio(s.Busy), fmtRatio(s.Window), fmtMS(s.P99))
		}
		b.WriteString("\n</details>\n")
	}
	_, err := w.Write(b.Bytes())
	return err
}

func fmtMS(d time.Duration) string {
	if d <= 0 {
		return "–"
	}
	ms := float64(d) / float64(time.Millisecond)
	if ms < 10 {
		return fmt.Sprintf("%.1f ms", ms)
	}
	return fmt.Sprintf("%.0f ms", ms)
}

func fmtRatio(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf("%.2f", v)
}

// Markers delimit the generated part of a markdown page.
const (
	BeginMarker = "<!-- loadtest:results:begin (written by the load test; edits are lost) -->"
	EndMarker   = "<!-- loadtest:results:end -->"
)

// ReplaceSection rewrites the part of the file at path between
// BeginMarker and EndMarker with section, keeping the rest of the page. The
// file must hold both markers.
func ReplaceSection(path string, section []byte) error {
	old, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(old)
	i := strings.Index(s, BeginMarker)
	j := strings.Index(s, EndMarker)
	if i < 0 || j < i {
		return fmt.Errorf("%s: no %q … %q section to replace", path, BeginMarker, EndMarker)
	}
	out := s[:i+len(BeginMarker)] + "\n\n" + strings.TrimSpace(string(section)) + "\n\n" + s[j:]
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(out), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
