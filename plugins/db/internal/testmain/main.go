// Command testmain serves the db role as a stand-alone plugin binary, so
// that the db package's tests run it the way core runs a third-party
// plugin. The roster binary serves the built-in as `roster plugin-serve db`.
package main

import (
	"github.com/rosterhq/roster/plugins/db"
	"github.com/rosterhq/roster/sdk"
)

func main() { sdk.Serve(db.New()) }
