package loadtest

import (
	"bytes"
	"context"
	"encoding/xml"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

const wrkOut = `Running 2s test @ http://127.0.0.1:18999/x
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.02ms    2.40ms  16.46ms   84.48%
    Req/Sec   729.47    271.89     1.40k    62.50%
  Latency Distribution
     50%  633.00us
     75%    3.98ms
     90%    6.33ms
     99%    1.20s
  2905 requests in 2.00s, 1.44MB read
  Socket errors: connect 1, read 2, write 3, timeout 4
  Non-2xx or 3xx responses: 7
Requests/sec:   1451.17
Transfer/sec:    737.01KB
statuses: 200=2890 302=8 503=7
`

func TestParseWrk(t *testing.T) {
	r, err := ParseWrk(wrkOut)
	if err != nil {
		t.Fatal(err)
	}
	if r.Threads != 2 || r.Connections != 16 || r.Requests != 2905 || r.Duration != 2*time.Second {
		t.Errorf("header: %+v", r)
	}
	if r.P50 != 633*time.Microsecond || r.P75 != 3980*time.Microsecond || r.P99 != 1200*time.Millisecond {
		t.Errorf("percentiles: %v %v %v", r.P50, r.P75, r.P99)
	}
	if r.Connect != 1 || r.Read != 2 || r.Write != 3 || r.Timeout != 4 || r.SocketErrors() != 6 {
		t.Errorf("socket errors: %+v", r)
	}
	if r.NotOK != 7 || r.Statuses[200] != 2890 || r.Statuses[302] != 8 {
		t.Errorf("statuses: %+v", r)
	}
	// 302 is no error to wrk, but it is not 2xx.
	if r.Non2xx() != 15 {
		t.Errorf("Non2xx = %d, want 15", r.Non2xx())
	}
	sum := r.Add(r)
	if sum.Requests != 5810 || sum.Statuses[503] != 14 || sum.Timeout != 8 || r.Statuses[503] != 7 {
		t.Errorf("Add: %+v (r %+v)", sum, r)
	}
}

func TestParseWrkRefusesOutputWithoutRequests(t *testing.T) {
	if _, err := ParseWrk("unable to connect to 127.0.0.1:1 Connection refused\n"); err == nil {
		t.Error("no error for wrk output without a request count")
	}
	if _, err := ParseWrkDuration("12.0xs"); err == nil {
		t.Error("no error for an unknown unit")
	}
}

// TestStatusScriptCountsWithWrk runs the script in the real wrk, when it is
// installed, against a server answering 200 and 503.
func TestStatusScriptCountsWithWrk(t *testing.T) {
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		t.Skip("wrk is not installed (make test-deps installs it)")
	}
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%10 == 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_, _ = io.WriteString(w, "ok\n")
	}))
	defer srv.Close()
	script := filepath.Join(t.TempDir(), "statuses.lua")
	if err := os.WriteFile(script, []byte(StatusScript), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(wrk, "-t1", "-c2", "-d1s", "--latency", "-s", script, srv.URL+"/").CombinedOutput()
	if err != nil {
		t.Fatalf("wrk: %v\n%s", err, out)
	}
	r, err := ParseWrk(string(out))
	if err != nil {
		t.Fatal(err)
	}
	got := r.Statuses[200] + r.Statuses[503]
	if got != r.Requests || r.Statuses[503] == 0 || r.Non2xx() != r.Statuses[503] || r.NotOK != r.Statuses[503] {
		t.Errorf("statuses %v for %d requests (wrk's non-2xx/3xx %d):\n%s", r.Statuses, r.Requests, r.NotOK, out)
	}
}

func TestProbeRecordsStatusesAndServers(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 3 {
			http.Error(w, "no", http.StatusBadGateway)
			return
		}
		_, _ = io.WriteString(w, "server: web-1\n")
	}))
	defer srv.Close()
	p := &Probe{URL: srv.URL, Concurrency: 2, Server: func(_ *http.Response, body []byte) string {
		_, after, _ := strings.Cut(string(body), "server: ")
		name, _, _ := strings.Cut(after, "\n")
		return name
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for len(p.Results()) < 20 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	rs := p.Results()
	st := Summarize(rs, time.Time{}, time.Time{})
	if st.Requests != len(rs) || st.Requests < 20 || st.Failed != 1 {
		t.Errorf("stats %+v over %d results, want one failure", st, len(rs))
	}
	if rs[0].Server != "web-1" && rs[1].Server != "web-1" {
		t.Errorf("server not read: %+v", rs[:2])
	}
	if st.P99 < st.P50 || st.Max < st.P99 {
		t.Errorf("percentiles out of order: %+v", st)
	}
	// A window that holds nothing.
	if s := Summarize(rs, time.Now().Add(time.Hour), time.Time{}); s.Requests != 0 || s.P99 != 0 {
		t.Errorf("empty window: %+v", s)
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i))
	}
	if Percentile(d, 0.5) != 50 || Percentile(d, 0.99) != 99 || Percentile(d[:1], 0.99) != 1 || Percentile(nil, 0.5) != 0 {
		t.Error("nearest-rank percentiles wrong")
	}
}

func testChart() Chart {
	var ss []Sample
	for i := 0; i <= 120; i++ {
		busy := 0.1
		if i > 20 && i < 70 {
			busy = 0.8
		}
		w := busy
		if i < 10 {
			w = math.NaN()
		}
		ss = append(ss, Sample{At: time.Duration(i) * time.Second, Ready: 2 + i/40%2, Current: 2 + i/35%2, Busy: busy, Window: w, P99: time.Duration(50+i) * time.Millisecond, Failed: map[bool]int{true: 1}[i == 60]})
	}
	return Chart{Title: "lamp <load> test", Subtitle: "wrk & probe", Samples: ss, Metric: "busy_ratio", UpAbove: 0.6, DownBelow: 0.25, Min: 2, Max: 5,
		Phases: []Phase{{Name: "load", From: 20 * time.Second, To: 70 * time.Second, Shade: "#fdeee0"}}}
}

func TestChartIsWellFormedSVG(t *testing.T) {
	var b bytes.Buffer
	if err := testChart().WriteSVG(&b); err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(bytes.NewReader(b.Bytes()))
	polylines, texts := 0, 0
	var all strings.Builder
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, b.String())
		}
		switch el := tok.(type) {
		case xml.StartElement:
			switch el.Name.Local {
			case "polyline":
				polylines++
			case "text":
				texts++
			}
		case xml.CharData:
			all.Write(el)
		}
	}
	// Pool (ready, current), busy (now, window; the window's NaN start
	// breaks nothing), p99.
	if polylines < 5 {
		t.Errorf("%d polylines, want at least 5", polylines)
	}
	for _, want := range []string{"lamp <load> test", "up_above 0.60", "down_below 0.25", "max 5", "min 2", "busy_ratio", "failed requests", "load"} {
		if !strings.Contains(all.String(), want) {
			t.Errorf("the plot lacks the text %q", want)
		}
	}
	if bytes.Contains(b.Bytes(), []byte("NaN")) {
		t.Error("NaN written into the SVG")
	}
}

func TestReportAndReplaceSection(t *testing.T) {
	c := testChart()
	r := Report{Command: "make loadtest", When: time.Date(2025, 1, 2, 3, 4, 0, 0, time.UTC), Machine: "2 cores",
		ProbeConnections: 2, Samples: c.Samples, SeriesEvery: 30 * time.Second, Image: "loadtest.svg",
		Events: []Event{{At: 25 * time.Second, Message: "web: 2 → 3"}},
		Phases: []PhaseResult{
			{Name: "load", Duration: time.Minute, Connections: 16, Wrk: WrkResult{Requests: 600, Duration: time.Minute, P50: 50 * time.Millisecond, P99: 90 * time.Millisecond, Statuses: map[int]int64{200: 600}}, PoolStart: 2, PoolPeak: 4, PoolEnd: 4},
			{Name: "cool-down", Duration: time.Minute, Connections: 1, Wrk: WrkResult{Requests: 60, Duration: time.Minute, Statuses: map[int]int64{200: 59, 502: 1}}, Probe: Stats{Requests: 10, Failed: 1}, PoolStart: 4, PoolPeak: 4, PoolEnd: 2},
		}}
	var b bytes.Buffer
	if err := r.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{"| load | 1m0s | 16 | 600 | 10 | 50 ms | 90 ms | 0 | 0 | 0 |", "| **whole run** | 2m0s | 16 | 660 |", "| 1 | 0 | 0 | 10 | 1 |", "2 → 4 → 2", "+25s web: 2 → 3", "](loadtest.svg)", "| 30s | 2 |"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	page := filepath.Join(t.TempDir(), "page.md")
	if err := os.WriteFile(page, []byte("# Title\n\nbefore\n"+BeginMarker+"\nold\n"+EndMarker+"\nafter\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := ReplaceSection(page, b.Bytes()); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(page)
	if !strings.HasPrefix(string(got), "# Title\n\nbefore\n"+BeginMarker) || !strings.HasSuffix(string(got), EndMarker+"\nafter\n") || strings.Contains(string(got), "old") || !strings.Contains(string(got), "whole run") {
		t.Errorf("page after replace:\n%s", got)
	}
	if err := ReplaceSection(filepath.Join(t.TempDir(), "none.md"), nil); err == nil {
		t.Error("no error for a missing page")
	}
}
