package main

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/rosterhq/roster/sdk"
	"github.com/rosterhq/roster/sdk/roletest"
)

// helloCase provisions a server with a greeting of its own and checks,
// while it is up, that it answers with it.
func helloCase() roletest.Case {
	return roletest.Case{
		Config:        map[string]any{"greeting": "Hi there"},
		WantEndpoints: []string{"http"},
		Check: func(t testing.TB, r *roletest.Result) {
			resp, err := http.Get("http://" + r.Endpoints["http"] + "/")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if strings.TrimSpace(string(body)) != "Hi there" {
				t.Errorf("GET / = %q, want the greeting", body)
			}
		},
	}
}

func TestHelloInProcess(t *testing.T) {
	r := roletest.Run(t, &Hello{}, helloCase())
	if len(r.Progress) == 0 {
		t.Errorf("no progress reported")
	}
	if len(r.Teardown.Logs) != 1 {
		t.Errorf("teardown logs = %+v, want the access log", r.Teardown.Logs)
	}
}

// TestHelloBinary builds this plugin and runs it as Roster would.
func TestHelloBinary(t *testing.T) {
	roletest.RunBinary(t, roletest.Build(t, "."), helloCase())
}

func TestHelloConfigFromHCL(t *testing.T) {
	r := roletest.Run(t, &Hello{}, roletest.Case{ConfigHCL: `greeting = "Hey"`})
	if r.Config.Int("port") != 0 {
		t.Errorf("port default = %d, want 0", r.Config.Int("port"))
	}
}

func TestHelloBadConfig(t *testing.T) {
	t.Run("not a number", func(t *testing.T) {
		roletest.Run(t, &Hello{}, roletest.Case{Config: map[string]any{"port": "eighty"}, WantConfigError: "a number is required"})
	})
	t.Run("not a port", func(t *testing.T) {
		roletest.Run(t, &Hello{}, roletest.Case{Config: map[string]any{"port": 70000}, WantProvisionError: sdk.ErrInvalidConfig})
	})
	t.Run("port in use", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		port := ln.Addr().(*net.TCPAddr).Port
		roletest.Run(t, &Hello{}, roletest.Case{Config: map[string]any{"port": port}, WantProvisionError: sdk.ErrInvalidConfig})
	})
}
