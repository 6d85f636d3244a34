// Package testrole is a role for the sdk's own tests: its schema uses every
// kind of type and block, its HealthCheck echoes the config values it got
// (so that tests see them after a trip through a real plugin process), and a
// config attribute makes Provision fail with any typed error or wait for its
// context to end.
package testrole

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/rosterhq/roster/sdk"
	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"
)

// Kinds maps the names the `fail` attribute accepts to the errors
// Provision then returns.
var Kinds = map[string]error{
	"invalid_config":      sdk.ErrInvalidConfig,
	"not_found":           sdk.ErrNotFound,
	"failed_precondition": sdk.ErrFailedPrecondition,
	"unavailable":         sdk.ErrUnavailable,
	"timeout":             sdk.ErrTimeout,
	"unimplemented":       sdk.ErrUnimplemented,
	"checksum_mismatch":   sdk.ErrChecksumMismatch,
}

// Echo is the test role. It implements sdk.Configurer.
type Echo struct {
	checks     atomic.Int64
	configured atomic.Int64
}

// Info names the role "echo".
func (e *Echo) Info(context.Context) (sdk.Info, error) {
	return sdk.Info{Name: "echo", Version: "0.1.0", Description: "echoes its config, for the sdk's tests"}, nil
}

// Schema is the echo role's schema.
func Schema() sdk.Schema {
	return sdk.Schema{
		Attributes: []sdk.Attribute{
			{Name: "greeting", Type: sdk.String, Default: sdk.StringVal("hello"), Description: "what to say"},
			{Name: "count", Type: sdk.Number, Default: sdk.NumberIntVal(1)},
			{Name: "enabled", Type: sdk.Bool, Default: sdk.BoolVal(true)},
			{Name: "tags", Type: sdk.List(sdk.String), Default: sdk.ListValEmpty(sdk.String)},
			{Name: "ports", Type: sdk.Set(sdk.Number)},
			{Name: "labels", Type: sdk.Map(sdk.String)},
			{Name: "limits", Type: sdk.Object(map[string]sdk.Type{"cpu": sdk.Number, "mem": sdk.String})},
			{Name: "anything", Type: sdk.Any},
			{Name: "secret", Type: sdk.String, Sensitive: true},
			{Name: "fail", Type: sdk.String, Description: "a typed error for Provision to return: " + "invalid_config, not_found, …, plain, or wait (until the context ends)"},
		},
		Blocks: []sdk.Block{
			{Name: "listener", Nesting: sdk.NestingList, MaxItems: 3, Schema: sdk.Schema{Attributes: []sdk.Attribute{
				{Name: "port", Type: sdk.Number, Required: true},
				{Name: "host", Type: sdk.String, Default: sdk.StringVal("127.0.0.1")},
			}}},
			{Name: "tls", Nesting: sdk.NestingSingle, Schema: sdk.Schema{Attributes: []sdk.Attribute{
				{Name: "cert", Type: sdk.String, Required: true},
			}}},
			{Name: "vhost", Nesting: sdk.NestingMap, Schema: sdk.Schema{Attributes: []sdk.Attribute{
				{Name: "root", Type: sdk.String, Required: true},
			}}},
		},
	}
}

// ConfigSchema returns Schema().
func (e *Echo) ConfigSchema(context.Context) (sdk.Schema, error) { return Schema(), nil }

// Provision reports three steps, writes a log file into the work directory
// and serves the endpoint "echo".
func (e *Echo) Provision(ctx context.Context, req sdk.ProvisionRequest) (sdk.ProvisionResponse, error) {
	switch f := req.Config.String("fail"); f {
	case "":
	case "plain":
		return sdk.ProvisionResponse{}, errors.New("plain failure")
	case "wait":
		<-ctx.Done()
		return sdk.ProvisionResponse{}, ctx.Err()
	default:
		kind, ok := Kinds[f]
		if !ok {
			return sdk.ProvisionResponse{}, sdk.Errorf(sdk.ErrInvalidConfig, "unknown fail kind %q", f)
		}
		return sdk.ProvisionResponse{}, sdk.Errorf(kind, "asked to fail with %s", f)
	}
	sdk.Logger(ctx).Info("provisioning", "greeting", req.Config.String("greeting"))
	req.Report("prepare", "preparing", 0)
	if err := os.WriteFile(filepath.Join(req.Server.WorkDir, "echo.log"), []byte(req.Config.String("greeting")+"\n"), 0o600); err != nil {
		return sdk.ProvisionResponse{}, fmt.Errorf("writing the log: %w", err)
	}
	req.Report("write", "log written", 0.5)
	req.Report("done", "ready", 1)
	return sdk.ProvisionResponse{Endpoints: sdk.Endpoints{"echo": "127.0.0.1:7"}}, nil
}

// HealthCheck is healthy; its reason is the config as JSON (with its type),
// and its metrics count the checks and Configure calls.
func (e *Echo) HealthCheck(_ context.Context, req sdk.HealthCheckRequest) (sdk.HealthCheckResponse, error) {
	n := e.checks.Add(1)
	reason, err := EncodeConfig(req.Config.Value())
	if err != nil {
		return sdk.HealthCheckResponse{}, err
	}
	return sdk.HealthCheckResponse{
		Healthy: true,
		Reason:  reason,
		Metrics: map[string]float64{"checks": float64(n), "configured": float64(e.configured.Load())},
	}, nil
}

// Drain says 7 connections are open when given a deadline, 0 otherwise.
func (e *Echo) Drain(_ context.Context, req sdk.DrainRequest) (sdk.DrainResponse, error) {
	if req.Deadline.IsZero() {
		return sdk.DrainResponse{}, nil
	}
	return sdk.DrainResponse{OpenConnections: 7}, nil
}

// Teardown names the log Provision wrote, when it exists.
func (e *Echo) Teardown(_ context.Context, req sdk.TeardownRequest) (sdk.TeardownResponse, error) {
	p := filepath.Join(req.Server.WorkDir, "echo.log")
	if _, err := os.Stat(p); err != nil {
		return sdk.TeardownResponse{}, nil
	}
	return sdk.TeardownResponse{Logs: []sdk.LogFile{{Name: "echo.log", Path: p}}}, nil
}

// Configure counts its calls.
func (e *Echo) Configure(context.Context, sdk.ConfigureRequest) error {
	e.configured.Add(1)
	return nil
}

// EncodeConfig writes v with its type as JSON; DecodeConfig reads it back.
func EncodeConfig(v cty.Value) (string, error) {
	b, err := ctyjson.Marshal(v, cty.DynamicPseudoType)
	return string(b), err
}

// DecodeConfig reads what EncodeConfig wrote.
func DecodeConfig(s string) (cty.Value, error) {
	return ctyjson.Unmarshal([]byte(s), cty.DynamicPseudoType)
}
