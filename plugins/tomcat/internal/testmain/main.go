// Command testmain serves the tomcat role as a stand-alone plugin binary,
// so that the role's tests run it across a real process boundary, as core
// does.
package main

import (
	"github.com/rosterhq/roster/plugins/tomcat"
	"github.com/rosterhq/roster/sdk"
)

func main() { sdk.Serve(tomcat.New()) }
