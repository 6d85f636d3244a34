package rolekit

import (
	"context"
	"fmt"
	"io"
	"net/http"
)

// ProbeHeader marks a role's own requests (health checks, status pages), so
// that access logs and request counts can tell them from clients'.
const ProbeHeader = "X-Roster-Probe"

// maxBody is how much of a body HTTPGet reads.
const maxBody = 1 << 20

var probeClient = &http.Client{
	Transport: &http.Transport{
		// Probes must not hold keep-alive connections open: Drain counts
		// connections, and a probe's idle one would look like a client's.
		DisableKeepAlives: true,
		Proxy:             nil,
	},
	// Never follow a redirect: the expected status may well be 301.
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// ProbeClient returns the HTTP client of HTTPGet: no keep-alive, no
// proxy, no redirect followed. Tests of a role use it for their own
// requests, so as not to hold connections Drain would wait for.
func ProbeClient() *http.Client { return probeClient }

// HTTPGet GETs http://<addr><path> with ProbeHeader set and returns the
// status and up to 1 MiB of the body.
func HTTPGet(ctx context.Context, addr, path string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set(ProbeHeader, "1")
	resp, err := probeClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	return resp.StatusCode, body, err
}

// HTTPCheck GETs path at addr and wants status; the error says what came
// back instead ("GET /health: HTTP 503, want 200").
func HTTPCheck(ctx context.Context, addr, path string, status int) error {
	code, _, err := HTTPGet(ctx, addr, path)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	if code != status {
		return fmt.Errorf("GET %s: HTTP %d, want %d", path, code, status)
	}
	return nil
}
