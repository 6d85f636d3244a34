package pluginhost

import (
	"os"
	"sort"
	"strings"
)

// allowedEnv names the host variables a plugin inherits. Everything else the
// agent has (AWS_* credentials, ROSTER_* secrets, tokens of any kind) stays
// out of the plugin: a role plugin is third-party code that needs a shell-like
// environment to run packages, not the agent's keys.
var allowedEnv = []string{"PATH", "HOME", "LANG", "TMPDIR", "TZ", "USER"}

// allowedEnvPrefixes are the families of variables passed through whole.
var allowedEnvPrefixes = []string{"LC_"}

// pluginEnv builds a plugin's environment from host (os.Environ's form): the
// allow-listed variables, then extra, then fixed. An entry of extra written
// NAME=value sets NAME; one written NAME alone passes the host's NAME through
// when it is set. Later entries win, so fixed (go-plugin's handshake, mTLS and
// log level variables) cannot be overridden by the operator.
func pluginEnv(host, extra, fixed []string) []string {
	hostVals := make(map[string]string, len(host))
	for _, kv := range host {
		if k, v, ok := strings.Cut(kv, "="); ok {
			hostVals[k] = v
		}
	}
	out := map[string]string{}
	for k, v := range hostVals {
		if allowedName(k) {
			out[k] = v
		}
	}
	for _, e := range extra {
		if k, v, ok := strings.Cut(e, "="); ok {
			out[k] = v
		} else if v, ok := hostVals[e]; ok {
			out[e] = v
		}
	}
	for _, kv := range fixed {
		if k, v, ok := strings.Cut(kv, "="); ok {
			out[k] = v
		}
	}
	env := make([]string, 0, len(out))
	for k, v := range out {
		env = append(env, k+"="+v)
	}
	sort.Strings(env)
	return env
}

func allowedName(k string) bool {
	for _, a := range allowedEnv {
		if k == a {
			return true
		}
	}
	for _, p := range allowedEnvPrefixes {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	return false
}

// hostEnviron is os.Environ, replaceable in tests.
var hostEnviron = os.Environ
