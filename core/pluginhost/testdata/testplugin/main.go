// Command testplugin is a role plugin for the plugin host's tests. It
// imports only the sdk. Its HealthCheck reveals its environment and pid
// through metrics, and its config makes it misbehave on purpose:
//
//	mode = "biglog"  write a 200 KiB line to stderr (raw), through its
//	                 logger (JSON) and to os.Stdout/os.Stderr after Serve
//	mode = "child"   start `sleep 300` in its process group, report its pid
package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/rosterhq/roster/sdk"
)

// realStderr is fd 2 as the host gave it: sdk.Serve points os.Stderr at
// the gRPC stdio stream once it serves.
var realStderr = os.Stderr

type role struct{}

func (role) Info(context.Context) (sdk.Info, error) {
	return sdk.Info{Name: "testplugin", Version: "1.2.3", Description: "plugin host test plugin", Stateful: true}, nil
}

func (role) ConfigSchema(context.Context) (sdk.Schema, error) {
	return sdk.Schema{
		Attributes: []sdk.Attribute{{Name: "mode", Type: sdk.String, Description: "what to do wrong"}},
		Blocks: []sdk.Block{{Name: "extra", Nesting: sdk.NestingList, MaxItems: 2,
			Schema: sdk.Schema{Attributes: []sdk.Attribute{{Name: "n", Type: sdk.Number, Required: true}}}}},
	}, nil
}

func (role) Provision(ctx context.Context, req sdk.ProvisionRequest) (sdk.ProvisionResponse, error) {
	return sdk.ProvisionResponse{Endpoints: sdk.Endpoints{"test": "127.0.0.1:1"}}, nil
}

func flag(name string) float64 {
	if _, ok := os.LookupEnv(name); ok {
		return 1
	}
	return 0
}

func (role) HealthCheck(ctx context.Context, req sdk.HealthCheckRequest) (sdk.HealthCheckResponse, error) {
	m := map[string]float64{
		"pid":               float64(os.Getpid()),
		"env_aws_secret":    flag("AWS_SECRET_ACCESS_KEY"),
		"env_roster_secret": flag("ROSTER_TEST_SECRET"),
		"env_path":          flag("PATH"),
		"env_lc_all":        flag("LC_ALL"),
		"env_extra":         flag("TEST_EXTRA"),
		"env_log_level":     flag(sdk.LogLevelEnv),
		"env_count":         float64(len(os.Environ())),
	}
	switch req.Config.String("mode") {
	case "biglog":
		big := strings.Repeat("x", 200<<10)
		fmt.Fprintln(realStderr, "raw-begin "+big+" raw-end")
		sdk.Logger(ctx).Info("json-begin " + big + " json-end")
		fmt.Fprintln(os.Stderr, "stdio-begin "+big+" stdio-end")
		fmt.Fprintln(os.Stdout, "stdout-begin "+big+" stdout-end")
		fmt.Fprint(os.Stderr, strings.Repeat("y", 3<<20)) // no newline at all
		fmt.Fprintln(os.Stderr)
	case "child":
		cmd := exec.Command("sleep", "300")
		if err := cmd.Start(); err != nil {
			return sdk.HealthCheckResponse{}, err
		}
		m["child_pid"] = float64(cmd.Process.Pid)
	}
	return sdk.HealthCheckResponse{Healthy: true, Metrics: m}, nil
}

func (role) Drain(context.Context, sdk.DrainRequest) (sdk.DrainResponse, error) {
	return sdk.DrainResponse{}, nil
}

func (role) Teardown(context.Context, sdk.TeardownRequest) (sdk.TeardownResponse, error) {
	return sdk.TeardownResponse{}, nil
}

func main() { sdk.Serve(role{}) }
