// Command roster-role-hello is a Roster role plugin written by a third
// party: a role whose servers answer HTTP requests with a greeting. It
// imports github.com/rosterhq/roster/sdk and nothing else of Roster.
//
// Build it as roster-role-hello, put it in the agent's plugin_dir, and name
// it in a role file with plugin = "hello". See README.md.
package main

import "github.com/rosterhq/roster/sdk"

func main() { sdk.Serve(&Hello{}) }
