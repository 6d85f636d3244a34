package rolekit

import (
	"context"
	"fmt"
	"net"
	"strings"

	"github.com/rosterhq/roster/sdk"
	"github.com/rosterhq/roster/sdk/packages"
)

// PackagesAttributes returns the `packages` and `install_missing`
// attributes; besides completes "Debian packages needed besides …" with what
// the role installs itself.
func PackagesAttributes(besides string) []sdk.Attribute {
	return []sdk.Attribute{
		{Name: "packages", Type: sdk.List(sdk.String), Default: sdk.ListValEmpty(sdk.String),
			Description: "Debian packages needed besides " + besides},
		{Name: "install_missing", Type: sdk.Bool, Default: sdk.BoolVal(false),
			Description: "install missing packages with apt-get (needs root); otherwise a missing package fails Provision, naming it"},
	}
}

// EnsurePackages makes sure the packages are installed (see
// packages.Installer.Ensure), reporting the check and apt's output as the
// "packages" step of Provision.
func EnsurePackages(ctx context.Context, req sdk.ProvisionRequest, in packages.Installer, names []string, installMissing bool) error {
	req.Report("packages", "checking Debian packages: "+strings.Join(names, " "), 0)
	return in.Ensure(ctx, names, installMissing, func(line string) {
		req.Report("packages", line, 0.05)
	})
}

// HealthAttributes returns the `health_path` and `health_status`
// attributes of a role whose HealthCheck GETs a path.
func HealthAttributes() []sdk.Attribute {
	return []sdk.Attribute{
		{Name: "health_path", Type: sdk.String, Default: sdk.StringVal("/"),
			Description: "path HealthCheck GETs, through the http endpoint"},
		{Name: "health_status", Type: sdk.Number, Default: sdk.NumberIntVal(200),
			Description: "HTTP status HealthCheck expects"},
	}
}

// HTTPHealth is what `health_path` and `health_status` say. A role's
// settings embed it.
type HTTPHealth struct {
	HealthPath   string
	HealthStatus int
}

// DecodeHTTPHealth reads health_path and health_status, with their defaults
// when absent (a Config built by hand), and checks them. The error names
// the attribute; the role wraps it as its sdk.ErrInvalidConfig.
func DecodeHTTPHealth(c sdk.Config) (HTTPHealth, error) {
	h := HTTPHealth{HealthPath: c.String("health_path"), HealthStatus: int(c.Int("health_status"))}
	if h.HealthPath == "" {
		h.HealthPath = "/"
	}
	if !c.Has("health_status") {
		h.HealthStatus = 200
	}
	switch {
	case !strings.HasPrefix(h.HealthPath, "/"):
		return HTTPHealth{}, fmt.Errorf("health_path %q: want a path starting with /", h.HealthPath)
	case h.HealthStatus < 100 || h.HealthStatus > 599:
		return HTTPHealth{}, fmt.Errorf("health_status %d: want an HTTP status 100..599", h.HealthStatus)
	}
	return h, nil
}

// Check GETs the health path at addr and wants the health status.
func (h HTTPHealth) Check(ctx context.Context, addr string) error {
	return HTTPCheck(ctx, addr, h.HealthPath, h.HealthStatus)
}

// EndpointHost is the host an endpoint names for a listen address:
// 127.0.0.1 for an unspecified one (0.0.0.0, ::), which no client can dial.
func EndpointHost(listen string) string {
	if ip := net.ParseIP(listen); ip != nil && ip.IsUnspecified() {
		return "127.0.0.1"
	}
	return listen
}

// FetchProgress returns a progress function for artifact.Options that
// reports a fetch as Provision's "fetch" step ("war: 1024 of 4096 bytes"),
// its fraction going from from to from+span as the bytes arrive.
func FetchProgress(req sdk.ProvisionRequest, what string, from, span float64) func(done, total int64) {
	return func(done, total int64) {
		f := from
		if total > 0 {
			f += span * float64(done) / float64(total)
		}
		req.Report("fetch", fmt.Sprintf("%s: %d of %d bytes", what, done, total), f)
	}
}
