// Package sdk is everything a role plugin author imports to write a Roster role
// plugin: the Role interface, the request and response types, the HCL schema a
// role declares for its `config` block, typed errors, and Serve, which hides
// the plugin transport (hashicorp/go-plugin over gRPC) entirely.
//
// A plugin is a plain Go value that implements Role. Its main function is one
// line:
//
//	func main() { sdk.Serve(&myRole{}) }
//
// Core decodes the operator's `config` block against the Schema the role
// declares and hands every call the typed values as a Config. Every call also
// carries the Server it concerns (role, name, machine id and work directory),
// so that a plugin process that was relaunched can find its own state again in
// the work directory: plugins should keep nothing in memory that they cannot
// rebuild from there.
//
// Inside a call, Logger(ctx) is the plugin's logger for that call; Errorf
// with one of the Err values tells core what kind of failure it was. Test a
// role with sdk/roletest, in-process and as the built binary. The host end
// of the protocol is sdk/rolehost; docs/plugins.md is the guide.
package sdk
