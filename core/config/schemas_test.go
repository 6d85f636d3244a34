package config

import (
	"context"
	"errors"

	"github.com/rosterhq/roster/sdk"
)

// staticSchema is the schema the built-in static plugin declares.
var staticSchema = sdk.Schema{Attributes: []sdk.Attribute{
	{Name: "root", Type: sdk.String, Description: "a directory to serve"},
	{Name: "port", Type: sdk.Number, Default: sdk.NumberIntVal(0)},
	{Name: "metrics_file", Type: sdk.String},
	{Name: "provision_delay", Type: sdk.String, Default: sdk.StringVal("0s")},
}}

// testSchemas is a catalog of hand-written schemas: the static plugin's, a
// plugin with nested blocks of every nesting (lamp), a plugin that others
// refer to (db), and one whose host fails (broken).
func testSchemas() *countingSchemas {
	return &countingSchemas{m: SchemaMap{
		"static": staticSchema,
		"db": {Attributes: []sdk.Attribute{
			{Name: "port", Type: sdk.Number, Default: sdk.NumberIntVal(5432)},
		}},
		"lamp": {
			Attributes: []sdk.Attribute{
				{Name: "document_root", Type: sdk.String, Required: true},
				{Name: "memcached_mb", Type: sdk.Number, Default: sdk.NumberIntVal(64)},
				{Name: "admin_password", Type: sdk.String, Sensitive: true},
				{Name: "database", Type: sdk.String},
				{Name: "modules", Type: sdk.List(sdk.String), Default: sdk.ListVal(sdk.StringVal("rewrite"))},
			},
			Blocks: []sdk.Block{
				{Name: "vhost", Nesting: sdk.NestingSingle, Schema: sdk.Schema{Attributes: []sdk.Attribute{
					{Name: "server_name", Type: sdk.String, Required: true},
					{Name: "aliases", Type: sdk.List(sdk.String)},
				}}},
				{Name: "package", Nesting: sdk.NestingList, MaxItems: 3, Schema: sdk.Schema{Attributes: []sdk.Attribute{
					{Name: "name", Type: sdk.String, Required: true},
					{Name: "version", Type: sdk.String, Default: sdk.StringVal("latest")},
				}}},
				{Name: "backend", Nesting: sdk.NestingMap, MinItems: 1, MaxItems: 2, Schema: sdk.Schema{Attributes: []sdk.Attribute{
					{Name: "host", Type: sdk.String, Required: true},
					{Name: "password", Type: sdk.String, Sensitive: true},
				}}},
			},
		},
	}, calls: map[string]int{}}
}

// countingSchemas counts the questions asked of it, to show that each
// plugin is asked once per load.
type countingSchemas struct {
	m     SchemaMap
	calls map[string]int
}

func (c *countingSchemas) PluginSchema(ctx context.Context, name string) (sdk.Schema, error) {
	c.calls[name]++
	if name == "broken" {
		return sdk.Schema{}, errors.New("plugin exited during handshake")
	}
	return c.m.PluginSchema(ctx, name)
}

// RoleInfo answers as the plugin host does: the db plugin is stateful.
func (c *countingSchemas) RoleInfo(_ context.Context, name string) (sdk.Info, error) {
	return sdk.Info{Name: name, Stateful: name == "db"}, nil
}

func (c *countingSchemas) schemasFunc() SchemasFunc {
	return func(*Orchestrator) (PluginSchemas, error) { return c, nil }
}
