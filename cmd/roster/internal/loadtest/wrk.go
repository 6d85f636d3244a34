// Package loadtest holds what the lamp load test (cmd/roster/loadtest_test.go, build tag
// `loadtest`; `make loadtest`) needs besides roster itself: a wrk script
// that counts responses by status, a parser for wrk's summary, a latency
// recorder for the Go probe that runs beside wrk, the results table, and a
// small SVG renderer for the plot of pool size, busy ratio and p99 latency
// over time. It has no dependencies beyond the standard library, so that
// the plot is made by the project and readable anywhere.
package loadtest

import (
	"bufio"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// StatusScript is a wrk Lua script that counts responses by HTTP status
// across wrk's threads and prints them after wrk's summary as
// `statuses: 200=N 503=M`. wrk itself only says how many were not 2xx or
// 3xx.
const StatusScript = `-- Written by roster's load test: count responses by status.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    local s = t:get("statuses")
    if s then
      for code, n in pairs(s) do
        total[code] = (total[code] or 0) + n
      end
    end
  end
  local parts = {}
  for code, n in pairs(total) do
    table.insert(parts, code .. "=" .. n)
  end
  table.sort(parts)
  io.write("statuses: " .. table.concat(parts, " ") .. "\n")
end
`

// WrkResult is wrk's summary of one run.
type WrkResult struct {
	Threads, Connections int
	Requests             int64
	Duration             time.Duration
	// Latency percentiles from --latency (zero without it).
	P50, P75, P90, P99 time.Duration
	// Socket errors.
	Connect, Read, Write, Timeout int64
	// NotOK is wrk's "Non-2xx or 3xx responses".
	NotOK int64
	// Statuses are the counts StatusScript printed, by status code.
	Statuses map[int]int64
}

// Non2xx counts the responses whose status is not 2xx, from the script's
// counts when there are any (wrk's own count lets 3xx through).
func (r WrkResult) Non2xx() int64 {
	if r.Statuses == nil {
		return r.NotOK
	}
	var n int64
	for code, c := range r.Statuses {
		if code < 200 || code > 299 {
			n += c
		}
	}
	return n
}

// SocketErrors sums connect, read and write errors (timeouts apart).
func (r WrkResult) SocketErrors() int64 { return r.Connect + r.Read + r.Write }

// Add sums two runs' counts (percentiles are not added: they stay r's).
func (r WrkResult) Add(o WrkResult) WrkResult {
	r.Requests += o.Requests
	r.Duration += o.Duration
	r.Connect += o.Connect
	r.Read += o.Read
	r.Write += o.Write
	r.Timeout += o.Timeout
	r.NotOK += o.NotOK
	if o.Statuses != nil {
		m := map[int]int64{}
		for k, v := range r.Statuses {
			m[k] = v
		}
		for k, v := range o.Statuses {
			m[k] += v
		}
		r.Statuses = m
	}
	return r
}

var (
	reThreads  = regexp.MustCompile(`^(\d+) threads and (\d+) connections`)
	reRequests = regexp.MustCompile(`^(\d+) requests in ([0-9.]+\w+),`)
	rePct      = regexp.MustCompile(`^(50|75|90|99)%\s+([0-9.]+\w+)$`)
	reSocket   = regexp.MustCompile(`^Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	reNotOK    = regexp.MustCompile(`^Non-2xx or 3xx responses: (\d+)`)
)

// ParseWrk reads wrk's output (with --latency and StatusScript, both
// optional). It fails when the output has no request count, which is what
// wrk prints when it could not run at all.
func ParseWrk(out string) (WrkResult, error) {
	var r WrkResult
	seenRequests := false
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if m := reThreads.FindStringSubmatch(line); m != nil {
			r.Threads, _ = strconv.Atoi(m[1])
			r.Connections, _ = strconv.Atoi(m[2])
			continue
		}
		if m := reRequests.FindStringSubmatch(line); m != nil {
			r.Requests, _ = strconv.ParseInt(m[1], 10, 64)
			d, err := ParseWrkDuration(m[2])
			if err != nil {
				return r, err
			}
			r.Duration = d
			seenRequests = true
			continue
		}
		if m := rePct.FindStringSubmatch(line); m != nil {
			d, err := ParseWrkDuration(m[2])
			if err != nil {
				return r, err
			}
			switch m[1] {
			case "50":
				r.P50 = d
			case "75":
				r.P75 = d
			case "90":
				r.P90 = d
			case "99":
				r.P99 = d
			}
			continue
		}
		if m := reSocket.FindStringSubmatch(line); m != nil {
			r.Connect, _ = strconv.ParseInt(m[1], 10, 64)
			r.Read, _ = strconv.ParseInt(m[2], 10, 64)
			r.Write, _ = strconv.ParseInt(m[3], 10, 64)
			r.Timeout, _ = strconv.ParseInt(m[4], 10, 64)
			continue
		}
		if m := reNotOK.FindStringSubmatch(line); m != nil {
			r.NotOK, _ = strconv.ParseInt(m[1], 10, 64)
			continue
		}
		if rest, ok := strings.CutPrefix(line, "statuses:"); ok {
			r.Statuses = map[int]int64{}
			for _, f := range strings.Fields(rest) {
				k, v, ok := strings.Cut(f, "=")
				code, err1 := strconv.Atoi(k)
				n, err2 := strconv.ParseInt(v, 10, 64)
				if !ok || err1 != nil || err2 != nil {
					return r, fmt.Errorf("wrk status count %q: want code=count", f)
				}
				r.Statuses[code] += n
			}
		}
	}
	if !seenRequests {
		return r, fmt.Errorf("wrk printed no request count: %q", lastLines(out, 5))
	}
	return r, nil
}

// ParseWrkDuration reads wrk's durations: 633.00us, 1.72ms, 2.00s, 1.00m.
func ParseWrkDuration(s string) (time.Duration, error) {
	i := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if i <= 0 {
		return 0, fmt.Errorf("wrk duration %q: no unit", s)
	}
	v, err := strconv.ParseFloat(s[:i], 64)
	if err != nil {
		return 0, fmt.Errorf("wrk duration %q: %w", s, err)
	}
	unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second, "m": time.Minute, "h": time.Hour}[s[i:]]
	if unit == 0 {
		return 0, fmt.Errorf("wrk duration %q: unknown unit", s)
	}
	return time.Duration(v * float64(unit)), nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
