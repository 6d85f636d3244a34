// Command roster-role-echo serves the sdk's test role.
package main

import (
	"github.com/rosterhq/roster/sdk"
	"github.com/rosterhq/roster/sdk/internal/testrole"
)

func main() { sdk.Serve(&testrole.Echo{}) }
