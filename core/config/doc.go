// Package config decodes the files operators write: roster.hcl, which
// configures the orchestrator, and the role files it names. Every mistake
// comes back as an hcl.Diagnostic with a file, line and column, all of them
// together, before anything starts.
//
// Loading has two phases. The envelope of roster.hcl is decoded first
// (plugin_dir and the checksum pins come from there), then the caller's
// SchemasFunc gives the plugin schemas, and every role file is decoded,
// its `config` block against the schema of the plugin it names (each
// plugin is asked once per load). References between roles
// (`role.db.endpoints.postgres`) are unknown values at load time and are
// resolved by Role.ResolveConfig when a server is provisioned.
//
// docs/configuration.md describes every setting and its default.
package config
