package main

import (
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/hashicorp/go-hclog"
	"github.com/rosterhq/roster/core/config"
	"github.com/rosterhq/roster/core/pluginhost"
	"github.com/rosterhq/roster/plugins/db"
	"github.com/rosterhq/roster/plugins/static"
	"github.com/rosterhq/roster/plugins/tomcat"
	"github.com/rosterhq/roster/plugins/web"
	"github.com/rosterhq/roster/sdk"
)

// builtinRoles are the role plugins the roster binary serves itself, by
// re-executing itself as `roster plugin-serve <name>`: one binary to ship,
// and still one process per plugin. Core never imports plugins; this table
// hands them in.
var builtinRoles = map[string]func() sdk.Role{
	db.Name:     db.New,
	static.Name: static.New,
	tomcat.Name: tomcat.New,
	web.Name:    web.New,
}

// builtinNames lists builtinRoles, sorted.
func builtinNames() []string {
	names := make([]string, 0, len(builtinRoles))
	for n := range builtinRoles {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func init() {
	register(command{
		name:     pluginhost.DefaultSelfArgs[0],
		synopsis: "Serve a built-in role plugin (run by roster itself)",
		hidden:   true,
		run:      runPluginServe,
	})
}

// runPluginServe serves one built-in role over the plugin protocol. Run by
// hand, without the host's handshake, go-plugin explains and exits 1.
func runPluginServe(args []string, _, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintf(stderr, "Usage: roster %s <name>\n\nBuilt-in role plugins: %v\n", pluginhost.DefaultSelfArgs[0], builtinNames())
		return 1
	}
	newRole, ok := builtinRoles[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "roster %s: no built-in role plugin %q (built-ins: %v)\n", pluginhost.DefaultSelfArgs[0], args[0], builtinNames())
		return 1
	}
	sdk.Serve(newRole())
	return 0
}

// pluginHostOptions are the plugin host's options for an orchestrator
// config (nil: built-ins only). Pins that do not parse are left out:
// config reports them as diagnostics of its own, and nothing starts then.
func pluginHostOptions(o *config.Orchestrator, logger hclog.Logger) pluginhost.Options {
	opts := pluginhost.Options{Builtins: builtinNames(), Logger: logger, Pins: map[string]string{}}
	if o == nil {
		return opts
	}
	opts.PluginDir = o.PluginDir
	for _, p := range o.Plugins {
		if c, err := pluginhost.ParseChecksum(p.Checksum); err == nil {
			opts.Pins[p.Name] = c
		}
	}
	return opts
}

// pluginSchemasFor answers the config schemas of the plugins o can use:
// the built-ins and those in its plugin_dir, checked against its pins. It
// is config.SchemasFunc.
func pluginSchemasFor(o *config.Orchestrator) (config.PluginSchemas, error) {
	logger := hclog.New(&hclog.LoggerOptions{Name: "roster", Level: hclog.Warn, Output: os.Stderr})
	return pluginhost.New(pluginHostOptions(o, logger))
}

var _ config.SchemasFunc = pluginSchemasFor
