package web

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/rosterhq/roster/sdk/rolekit"
)

// apacheStatus is what mod_status says in its ?auto form.
type apacheStatus struct {
	BusyWorkers   float64
	IdleWorkers   float64
	TotalAccesses float64
	ReqPerSec     float64
	// Generation is the configuration generation of the process that
	// answered: a worker started after a graceful reload answers the new
	// one.
	Generation float64
}

func fetchApacheStatus(ctx context.Context, addr string) (apacheStatus, error) {
	code, body, err := rolekit.HTTPGet(ctx, addr, StatusPath+"?auto")
	if err != nil {
		return apacheStatus{}, fmt.Errorf("mod_status: %w", err)
	}
	if code != http.StatusOK {
		return apacheStatus{}, fmt.Errorf("mod_status: HTTP %d", code)
	}
	return parseApacheStatus(string(body)), nil
}

func parseApacheStatus(body string) apacheStatus {
	var s apacheStatus
	for _, line := range strings.Split(body, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			continue
		}
		switch strings.TrimSpace(k) {
		case "BusyWorkers":
			s.BusyWorkers = f
		case "IdleWorkers":
			s.IdleWorkers = f
		case "Total Accesses":
			s.TotalAccesses = f
		case "ReqPerSec":
			s.ReqPerSec = f
		case "ParentServerConfigGeneration":
			s.Generation = f
		}
	}
	return s
}

// memcachedStats sends `stats` and returns the numeric statistics.
func memcachedStats(ctx context.Context, addr string) (map[string]float64, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("memcached: %w", err)
	}
	defer c.Close()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(5 * time.Second)
	}
	_ = c.SetDeadline(deadline)
	if _, err := io.WriteString(c, "stats\r\n"); err != nil {
		return nil, fmt.Errorf("memcached: %w", err)
	}
	stats := make(map[string]float64)
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "END" {
			return stats, nil
		}
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == "STAT" {
			if v, err := strconv.ParseFloat(f[2], 64); err == nil {
				stats[f[1]] = v
			}
			continue
		}
		if strings.Contains(line, "ERROR") {
			return nil, fmt.Errorf("memcached: stats: %s", line)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("memcached: stats: %w", err)
	}
	return nil, fmt.Errorf("memcached: stats: connection closed before END")
}
