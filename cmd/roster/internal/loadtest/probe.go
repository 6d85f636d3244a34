package loadtest

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sort"
	"sync"
	"time"
)

// Result is one request of the probe.
type Result struct {
	At      time.Time // when the request was sent
	Latency time.Duration
	Status  int    // 0 when there was no response
	Err     string // the transport error, if any
	Server  string // who answered, as Probe.Server tells
}

// OK says whether the request got a 2xx answer.
func (r Result) OK() bool { return r.Err == "" && r.Status >= 200 && r.Status <= 299 }

// Probe sends requests to one URL from a few connections, one request at a
// time on each, and records every answer: the latency a client saw over
// time (wrk gives only a whole run's), and a second count of failures that
// does not depend on wrk.
type Probe struct {
	URL         string
	Concurrency int           // default 1
	Timeout     time.Duration // per request, default 5s
	// Server names the server that answered (nil: none).
	Server func(resp *http.Response, body []byte) string

	mu      sync.Mutex
	results []Result
}

// Run probes until ctx is done.
func (p *Probe) Run(ctx context.Context) {
	n := max(p.Concurrency, 1)
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// One connection per worker, kept alive, as a browser would.
			c := &http.Client{Timeout: timeout, Transport: &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}}
			defer c.CloseIdleConnections()
			for ctx.Err() == nil {
				p.one(ctx, c)
			}
		}()
	}
	wg.Wait()
}

func (p *Probe) one(ctx context.Context, c *http.Client) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL, nil)
	if err != nil {
		p.add(Result{At: time.Now(), Err: err.Error()})
		return
	}
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			return // the probe stopped, the request did not fail
		}
		p.add(Result{At: start, Latency: time.Since(start), Err: err.Error()})
		// Do not spin on a refused connection.
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
		return
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	r := Result{At: start, Latency: time.Since(start), Status: resp.StatusCode}
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		r.Err = err.Error()
	}
	if p.Server != nil {
		r.Server = p.Server(resp, body)
	}
	p.add(r)
}

func (p *Probe) add(r Result) {
	p.mu.Lock()
	p.results = append(p.results, r)
	p.mu.Unlock()
}

// Results returns a copy of every result so far, in the order they ended.
func (p *Probe) Results() []Result {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Result(nil), p.results...)
}

// Stats summarise results.
type Stats struct {
	Requests, Failed int
	P50, P99, Max    time.Duration
}

// Summarize computes the stats of the results sent in [from, to); a zero
// time is open.
func Summarize(rs []Result, from, to time.Time) Stats {
	var st Stats
	var lat []time.Duration
	for _, r := range rs {
		if (!from.IsZero() && r.At.Before(from)) || (!to.IsZero() && !r.At.Before(to)) {
			continue
		}
		st.Requests++
		if !r.OK() {
			st.Failed++
		}
		lat = append(lat, r.Latency)
	}
	if len(lat) == 0 {
		return st
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	st.P50 = Percentile(lat, 0.50)
	st.P99 = Percentile(lat, 0.99)
	st.Max = lat[len(lat)-1]
	return st
}

// Percentile of sorted durations, nearest rank.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.5) - 1
	i = min(max(i, 0), len(sorted)-1)
	return sorted[i]
}
