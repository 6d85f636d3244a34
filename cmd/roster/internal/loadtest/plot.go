package loadtest

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"strings"
	"time"
)

// Sample is the pool as the load test saw it at one moment.
type Sample struct {
	At      time.Duration // since the run began
	Ready   int           // ready servers of the role
	Current int           // servers commissioning, provisioning or ready
	// Busy is the average busy_ratio of the ready servers' last reports
	// (NaN when none reported).
	Busy float64
	// Window is the orchestrator's average of the scale metric over its
	// window, the number the policy compares (NaN when it has none).
	Window float64
	// P99 is the probe's p99 latency over the interval that ends at At (0:
	// no request ended in it).
	P99 time.Duration
	// Failed counts the probe's failed requests in that interval.
	Failed int
}

// Phase is a stretch of the run with one load, shaded on the plot.
type Phase struct {
	Name     string
	From, To time.Duration
	// Shade is an SVG colour for the band; empty: no band.
	Shade string
}

// Chart is the plot of a load test run: three panels over one time axis.
type Chart struct {
	Title    string
	Subtitle string
	Samples  []Sample
	Phases   []Phase
	// Metric names the scaling metric; UpAbove and DownBelow are its
	// thresholds; Min and Max the pool's bounds.
	Metric             string
	UpAbove, DownBelow float64
	Min, Max           int
	// LatencyNote says how latency was measured (the panel's title).
	LatencyNote string
}

// Plot geometry, in SVG user units (pixels).
const (
	plotWidth   = 960
	marginLeft  = 72
	marginRight = 24
	marginTop   = 84
	panelHeight = 150
	panelGap    = 56
	marginBot   = 48
)

// Colours: the Okabe–Ito palette, readable by colour-blind readers.
const (
	colReady   = "#0072B2"
	colCurrent = "#56B4E9"
	colBusy    = "#D55E00"
	colWindow  = "#E69F00"
	colUp      = "#CC3311"
	colDown    = "#009E73"
	colP99     = "#000000"
	colFail    = "#CC3311"
	colGrid    = "#dddddd"
	colAxis    = "#444444"
)

// WriteSVG renders the chart as a standalone SVG document.
func (c Chart) WriteSVG(w io.Writer) error {
	bw := bufio.NewWriter(w)
	s := &svg{w: bw}
	height := marginTop + 3*panelHeight + 2*panelGap + marginBot
	s.printf(`<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">
<rect width="100%%" height="100%%" fill="#ffffff"/>
`, plotWidth, height, plotWidth, height)
	s.text(marginLeft, 22, "start", 16, "bold", "#000", c.Title)
	if c.Subtitle != "" {
		s.text(marginLeft, 42, "start", 12, "normal", "#444", c.Subtitle)
	}

	tmax := 1.0
	for _, sm := range c.Samples {
		tmax = math.Max(tmax, sm.At.Seconds())
	}
	for _, p := range c.Phases {
		tmax = math.Max(tmax, p.To.Seconds())
	}
	xstep := niceStep(tmax, 12, []float64{5, 10, 15, 30, 60, 120, 300, 600})
	tmax = math.Ceil(tmax/xstep) * xstep
	x0, x1 := float64(marginLeft), float64(plotWidth-marginRight)
	xof := func(sec float64) float64 { return x0 + (x1-x0)*sec/tmax }

	panelTop := func(i int) float64 { return float64(marginTop + i*(panelHeight+panelGap)) }

	// Phases: a band behind every panel, named above the first.
	for _, p := range c.Phases {
		if p.Shade == "" {
			continue
		}
		for i := range 3 {
			top := panelTop(i)
			s.printf(`<rect x="%.1f" y="%.1f" width="%.1f" height="%d" fill="%s"/>`+"\n",
				xof(p.From.Seconds()), top, math.Max(0, xof(p.To.Seconds())-xof(p.From.Seconds())), panelHeight, p.Shade)
		}
		s.text((xof(p.From.Seconds())+xof(p.To.Seconds()))/2, panelTop(0)+12, "middle", 11, "normal", "#555", p.Name)
	}

	// Panel 1: pool size.
	maxPool := c.Max
	for _, sm := range c.Samples {
		maxPool = max(maxPool, sm.Current, sm.Ready)
	}
	ptop := panelTop(0)
	poolY := linear(0, float64(maxPool+1), ptop+panelHeight, ptop)
	s.panel(ptop, "Servers in the pool", xof, tmax, xstep, poolY, intTicks(maxPool+1), func(v float64) string { return fmt.Sprintf("%.0f", v) })
	if c.Max > 0 {
		s.hline(x0, x1, poolY(float64(c.Max)), "#999", "2,3", fmt.Sprintf("max %d", c.Max))
	}
	if c.Min > 0 {
		s.hline(x0, x1, poolY(float64(c.Min)), "#999", "2,3", fmt.Sprintf("min %d", c.Min))
	}
	s.step(c.Samples, xof, poolY, func(sm Sample) float64 { return float64(sm.Current) }, colCurrent, "5,3", 1.5)
	s.step(c.Samples, xof, poolY, func(sm Sample) float64 { return float64(sm.Ready) }, colReady, "", 2.5)
	s.legend(x1, ptop-8, []legendItem{{colReady, "", "ready"}, {colCurrent, "5,3", "ready + provisioning"}})

	// Panel 2: the scaling metric.
	ptop = panelTop(1)
	top := 1.0
	for _, sm := range c.Samples {
		if !math.IsNaN(sm.Busy) {
			top = math.Max(top, sm.Busy)
		}
	}
	busyY := linear(0, top, ptop+panelHeight, ptop)
	metric := c.Metric
	if metric == "" {
		metric = "metric"
	}
	s.panel(ptop, fmt.Sprintf("%s (average of the ready servers)", metric), xof, tmax, xstep, busyY, []float64{0, 0.25, 0.5, 0.75, 1}, func(v float64) string { return fmt.Sprintf("%.2f", v) })
	if c.UpAbove > 0 {
		s.hline(x0, x1, busyY(c.UpAbove), colUp, "6,3", fmt.Sprintf("up_above %.2f", c.UpAbove))
	}
	if c.DownBelow > 0 {
		s.hline(x0, x1, busyY(c.DownBelow), colDown, "6,3", fmt.Sprintf("down_below %.2f", c.DownBelow))
	}
	s.line(c.Samples, xof, busyY, func(sm Sample) float64 { return sm.Window }, colWindow, "4,2", 1.5)
	s.line(c.Samples, xof, busyY, func(sm Sample) float64 { return sm.Busy }, colBusy, "", 2)
	s.legend(x1, ptop-8, []legendItem{{colBusy, "", "now"}, {colWindow, "4,2", "over the scale window (what the policy compares)"}})

	// Panel 3: latency.
	ptop = panelTop(2)
	maxMS := 1.0
	for _, sm := range c.Samples {
		maxMS = math.Max(maxMS, float64(sm.P99)/float64(time.Millisecond))
	}
	ystep := niceStep(maxMS, 5, nil)
	maxMS = math.Ceil(maxMS/ystep) * ystep
	latY := linear(0, maxMS, ptop+panelHeight, ptop)
	var lticks []float64
	for v := 0.0; v <= maxMS+ystep/2; v += ystep {
		lticks = append(lticks, v)
	}
	note := c.LatencyNote
	if note == "" {
		note = "p99 latency, ms"
	}
	s.panel(ptop, note, xof, tmax, xstep, latY, lticks, func(v float64) string { return trimFloat(v) })
	s.line(c.Samples, xof, latY, func(sm Sample) float64 {
		if sm.P99 <= 0 {
			return math.NaN()
		}
		return float64(sm.P99) / float64(time.Millisecond)
	}, colP99, "", 2)
	failed := false
	for _, sm := range c.Samples {
		if sm.Failed > 0 {
			failed = true
			s.printf(`<circle cx="%.1f" cy="%.1f" r="4" fill="%s"><title>%d failed</title></circle>`+"\n", xof(sm.At.Seconds()), ptop+panelHeight-4, colFail, sm.Failed)
		}
	}
	items := []legendItem{{colP99, "", "p99"}}
	if failed {
		items = append(items, legendItem{colFail, "", "failed requests"})
	}
	s.legend(x1, ptop-8, items)

	s.text((x0+x1)/2, float64(height)-10, "middle", 12, "normal", colAxis, "time since the start of the run, s")
	s.printf("</svg>\n")
	if s.err != nil {
		return s.err
	}
	return bw.Flush()
}

type svg struct {
	w   *bufio.Writer
	err error
}

func (s *svg) printf(format string, args ...any) {
	if s.err == nil {
		_, s.err = fmt.Fprintf(s.w, format, args...)
	}
}

func (s *svg) text(x, y float64, anchor string, size int, weight, fill, txt string) {
	s.printf(`<text x="%.1f" y="%.1f" text-anchor="%s" font-size="%d" font-weight="%s" fill="%s">%s</text>`+"\n", x, y, anchor, size, weight, fill, escape(txt))
}

// panel draws a panel's frame, grid, ticks and title.
func (s *svg) panel(top float64, title string, xof func(float64) float64, tmax, xstep float64, y func(float64) float64, yticks []float64, ylabel func(float64) string) {
	x0, x1 := xof(0), xof(tmax)
	bottom := top + panelHeight
	s.text(x0, top-8, "start", 13, "bold", "#000", title)
	for _, v := range yticks {
		yy := y(v)
		s.printf(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="1"/>`+"\n", x0, yy, x1, yy, colGrid)
		s.text(x0-6, yy+4, "end", 11, "normal", colAxis, ylabel(v))
	}
	for t := 0.0; t <= tmax+xstep/2; t += xstep {
		xx := xof(t)
		s.printf(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="1"/>`+"\n", xx, top, xx, bottom, colGrid)
		s.text(xx, bottom+15, "middle", 11, "normal", colAxis, trimFloat(t))
	}
	s.printf(`<rect x="%.1f" y="%.1f" width="%.1f" height="%d" fill="none" stroke="%s" stroke-width="1"/>`+"\n", x0, top, x1-x0, panelHeight, colAxis)
}

func (s *svg) hline(x0, x1, y float64, color, dash, label string) {
	s.printf(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="1.2" stroke-dasharray="%s"/>`+"\n", x0, y, x1, y, color, dash)
	s.text(x1-4, y-4, "end", 10, "normal", color, label)
}

// line draws a series as polylines, broken where the value is NaN.
func (s *svg) line(samples []Sample, xof func(float64) float64, y func(float64) float64, val func(Sample) float64, color, dash string, width float64) {
	var pts []string
	flush := func() {
		if len(pts) > 1 {
			s.poly(pts, color, dash, width)
		} else if len(pts) == 1 {
			var px, py float64
			_, _ = fmt.Sscanf(pts[0], "%f,%f", &px, &py)
			s.printf(`<circle cx="%.1f" cy="%.1f" r="%.1f" fill="%s"/>`+"\n", px, py, width, color)
		}
		pts = pts[:0]
	}
	for _, sm := range samples {
		v := val(sm)
		if math.IsNaN(v) {
			flush()
			continue
		}
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", xof(sm.At.Seconds()), y(v)))
	}
	flush()
}

// step draws a series that holds its value until the next sample.
func (s *svg) step(samples []Sample, xof func(float64) float64, y func(float64) float64, val func(Sample) float64, color, dash string, width float64) {
	var pts []string
	for i, sm := range samples {
		xx := xof(sm.At.Seconds())
		if i > 0 {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", xx, y(val(samples[i-1]))))
		}
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", xx, y(val(sm))))
	}
	if len(pts) > 1 {
		s.poly(pts, color, dash, width)
	}
}

func (s *svg) poly(pts []string, color, dash string, width float64) {
	d := ""
	if dash != "" {
		d = fmt.Sprintf(` stroke-dasharray="%s"`, dash)
	}
	s.printf(`<polyline fill="none" stroke="%s" stroke-width="%.1f" stroke-linejoin="round"%s points="%s"/>`+"\n", color, width, d, strings.Join(pts, " "))
}

type legendItem struct{ color, dash, label string }

// legend draws items right-aligned, ending at x.
func (s *svg) legend(x, y float64, items []legendItem) {
	for i := len(items) - 1; i >= 0; i-- {
		it := items[i]
		w := float64(len([]rune(it.label)))*6.4 + 42
		x -= w
		d := ""
		if it.dash != "" {
			d = fmt.Sprintf(` stroke-dasharray="%s"`, it.dash)
		}
		s.printf(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2.5"%s/>`+"\n", x, y-4, x+20, y-4, it.color, d)
		s.text(x+24, y, "start", 11, "normal", "#222", it.label)
	}
}

// linear maps [d0, d1] onto [r0, r1].
func linear(d0, d1, r0, r1 float64) func(float64) float64 {
	return func(v float64) float64 {
		if d1 == d0 {
			return r0
		}
		return r0 + (r1-r0)*(v-d0)/(d1-d0)
	}
}

// niceStep picks a tick step that gives at most n ticks over [0, span]:
// from steps when given, else 1, 2 or 5 times a power of ten.
func niceStep(span float64, n int, steps []float64) float64 {
	if span <= 0 {
		return 1
	}
	for _, st := range steps {
		if span/st <= float64(n) {
			return st
		}
	}
	raw := span / float64(n)
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

func intTicks(top int) []float64 {
	step := max(1, top/6)
	var out []float64
	for v := 0; v <= top; v += step {
		out = append(out, float64(v))
	}
	return out
}

func trimFloat(v float64) string {
	s := fmt.Sprintf("%.2f", v)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s
}

func escape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace(s)
}
