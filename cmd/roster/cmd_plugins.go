package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2"
	"github.com/rosterhq/roster/core/config"
	"github.com/rosterhq/roster/core/pluginhost"
	"github.com/rosterhq/roster/sdk"
	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"
)

func init() {
	register(command{
		name:     "plugins",
		synopsis: "List the role plugins found, their versions and config schemas",
		run:      runPlugins,
	})
}

func runPlugins(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("plugins", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	cfgPath := fs.String("config", "", "roster.hcl whose plugin_dir and checksum pins apply (default: ./roster.hcl when it exists)")
	pluginDir := fs.String("plugin-dir", "", "look for roster-role-<name> executables here (overrides the config's plugin_dir)")
	setUsage(fs, stderr,
		"Usage: roster plugins [-json] [-config roster.hcl] [-plugin-dir DIR]",
		"",
		"Launches every role plugin found (the built-ins and those in plugin_dir),",
		"asks its version and config schema, and stops it. Exits 1 when a plugin fails.",
	)
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return 1
	}
	ctx := context.Background()

	path := *cfgPath
	if path == "" {
		if _, err := os.Stat("roster.hcl"); err == nil {
			path = "roster.hcl"
		}
	}
	var o *config.Orchestrator
	if path != "" {
		loader := config.NewLoader()
		var diags hcl.Diagnostics
		o, diags = loader.Load(ctx, path, nil)
		if diags.HasErrors() {
			w := hcl.NewDiagnosticTextWriter(stderr, loader.Files(), 100, false)
			_ = w.WriteDiagnostics(diags)
			if o == nil {
				return 1
			}
			fmt.Fprintln(stderr, "roster plugins: listing with what could be read of", path)
		}
	}
	logger := hclog.New(&hclog.LoggerOptions{Name: "roster", Level: hclog.Warn, Output: stderr})
	opts := pluginHostOptions(o, logger)
	if *pluginDir != "" {
		dir, err := filepath.Abs(*pluginDir)
		if err != nil {
			fmt.Fprintf(stderr, "roster plugins: -plugin-dir: %v\n", err)
			return 1
		}
		opts.PluginDir = dir
	}
	host, err := pluginhost.New(opts)
	if err != nil {
		fmt.Fprintf(stderr, "roster plugins: %v\n", err)
		return 1
	}
	list, err := host.List(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "roster plugins: %v\n", err)
		return 1
	}
	code := 0
	for _, p := range list {
		if p.Err != nil {
			code = 1
		}
	}
	if *asJSON {
		out := make([]pluginJSON, 0, len(list))
		for _, p := range list {
			out = append(out, toPluginJSON(p))
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(map[string]any{"plugin_dir": opts.PluginDir, "plugins": out}); err != nil {
			fmt.Fprintf(stderr, "roster plugins: %v\n", err)
			return 1
		}
		return code
	}
	printPlugins(stdout, opts.PluginDir, list)
	return code
}

func printPlugins(w io.Writer, dir string, list []pluginhost.PluginInfo) {
	if dir != "" {
		fmt.Fprintf(w, "plugin_dir: %s\n\n", dir)
	}
	for i, p := range list {
		if i > 0 {
			fmt.Fprintln(w)
		}
		kind := "plugin_dir"
		if p.Builtin {
			kind = "built-in"
		}
		if p.Err != nil {
			fmt.Fprintf(w, "%s (%s)\n  path:  %s\n  error: %v\n", p.Name, kind, p.Path, p.Err)
			continue
		}
		fmt.Fprintf(w, "%s %s (%s, protocol %d)\n", p.Name, p.Info.Version, kind, p.Info.ProtocolVersion)
		if p.Info.Description != "" {
			fmt.Fprintf(w, "  %s\n", p.Info.Description)
		}
		fmt.Fprintf(w, "  path:   %s\n  digest: %s", p.Path, p.Digest)
		if p.Pinned != "" {
			fmt.Fprint(w, " (pinned)")
		}
		fmt.Fprintln(w)
		if p.Info.Configurable {
			fmt.Fprintln(w, "  implements Configure")
		}
		if p.Info.Stateful {
			fmt.Fprintln(w, "  stateful: servers are refreshed only with refresh = true")
		}
		if len(p.Schema.Attributes) == 0 && len(p.Schema.Blocks) == 0 {
			fmt.Fprintln(w, "  config: (none)")
			continue
		}
		fmt.Fprintln(w, "  config:")
		printSchema(w, p.Schema, "    ")
	}
}

func printSchema(w io.Writer, s sdk.Schema, indent string) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, a := range s.Attributes {
		fmt.Fprintf(tw, "%s%s\t%s\t%s\t%s\n", indent, a.Name, a.Type.FriendlyName(), attrUse(a), a.Description)
	}
	_ = tw.Flush()
	for _, b := range s.Blocks {
		limits := fmt.Sprintf("%d..", b.MinItems)
		if b.MaxItems > 0 {
			limits += fmt.Sprint(b.MaxItems)
		} else {
			limits += "*"
		}
		label := ""
		if b.Nesting == sdk.NestingMap {
			label = ` "<key>"`
		}
		fmt.Fprintf(w, "%sblock %s%s { } (%s, %s)", indent, b.Name, label, b.Nesting, limits)
		if b.Description != "" {
			fmt.Fprintf(w, "  %s", b.Description)
		}
		fmt.Fprintln(w)
		printSchema(w, b.Schema, indent+"  ")
	}
}

func attrUse(a sdk.Attribute) string {
	var parts []string
	switch {
	case a.Required:
		parts = append(parts, "required")
	case a.Default != sdk.NoValue && !a.Default.IsNull():
		parts = append(parts, "default "+renderValue(a.Default, a.Sensitive))
	default:
		parts = append(parts, "optional")
	}
	if a.Sensitive {
		parts = append(parts, "sensitive")
	}
	return strings.Join(parts, ", ")
}

func renderValue(v cty.Value, sensitive bool) string {
	if sensitive {
		return "(sensitive)"
	}
	b, err := ctyjson.Marshal(v, v.Type())
	if err != nil {
		return v.GoString()
	}
	return string(b)
}

// pluginJSON is one plugin in `roster plugins -json`.
type pluginJSON struct {
	Name            string      `json:"name"`
	Path            string      `json:"path"`
	Builtin         bool        `json:"builtin"`
	Version         string      `json:"version,omitempty"`
	ProtocolVersion int         `json:"protocol_version,omitempty"`
	Description     string      `json:"description,omitempty"`
	Configurable    bool        `json:"configurable"`
	Stateful        bool        `json:"stateful"`
	Digest          string      `json:"digest,omitempty"`
	Pinned          string      `json:"pinned,omitempty"`
	Error           string      `json:"error,omitempty"`
	Schema          *schemaJSON `json:"schema,omitempty"`
}

type schemaJSON struct {
	Attributes []attrJSON  `json:"attributes"`
	Blocks     []blockJSON `json:"blocks"`
}

type attrJSON struct {
	Name        string          `json:"name"`
	Type        json.RawMessage `json:"type"`
	Required    bool            `json:"required"`
	Default     json.RawMessage `json:"default,omitempty"`
	Description string          `json:"description,omitempty"`
	Sensitive   bool            `json:"sensitive,omitempty"`
}

type blockJSON struct {
	Name        string     `json:"name"`
	Nesting     string     `json:"nesting"`
	MinItems    int        `json:"min_items"`
	MaxItems    int        `json:"max_items"`
	Description string     `json:"description,omitempty"`
	Schema      schemaJSON `json:"schema"`
}

func toPluginJSON(p pluginhost.PluginInfo) pluginJSON {
	out := pluginJSON{Name: p.Name, Path: p.Path, Builtin: p.Builtin, Digest: p.Digest, Pinned: p.Pinned}
	if p.Err != nil {
		out.Error = p.Err.Error()
		return out
	}
	out.Version, out.ProtocolVersion = p.Info.Version, p.Info.ProtocolVersion
	out.Description, out.Configurable, out.Stateful = p.Info.Description, p.Info.Configurable, p.Info.Stateful
	s := toSchemaJSON(p.Schema)
	out.Schema = &s
	return out
}

func toSchemaJSON(s sdk.Schema) schemaJSON {
	out := schemaJSON{Attributes: []attrJSON{}, Blocks: []blockJSON{}}
	for _, a := range s.Attributes {
		aj := attrJSON{Name: a.Name, Required: a.Required, Description: a.Description, Sensitive: a.Sensitive}
		if t, err := ctyjson.MarshalType(a.Type); err == nil {
			aj.Type = t
		}
		if a.Default != sdk.NoValue && !a.Default.IsNull() {
			if a.Sensitive {
				aj.Default = json.RawMessage(`"(sensitive)"`)
			} else if d, err := ctyjson.Marshal(a.Default, a.Default.Type()); err == nil {
				aj.Default = d
			}
		}
		out.Attributes = append(out.Attributes, aj)
	}
	for _, b := range s.Blocks {
		out.Blocks = append(out.Blocks, blockJSON{Name: b.Name, Nesting: b.Nesting.String(), MinItems: b.MinItems,
			MaxItems: b.MaxItems, Description: b.Description, Schema: toSchemaJSON(b.Schema)})
	}
	return out
}
