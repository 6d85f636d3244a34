package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/rosterhq/roster/sdk"
)

// Version is the release version; set with -ldflags "-X main.Version=…".
var Version = "0.1.0-dev"

func init() {
	register(command{
		name:     "version",
		synopsis: "Print the version of roster and of its role protocol",
		run: func(args []string, stdout, stderr io.Writer) int {
			rev := ""
			if bi, ok := debug.ReadBuildInfo(); ok {
				for _, s := range bi.Settings {
					if s.Key == "vcs.revision" && len(s.Value) >= 12 {
						rev = " (" + s.Value[:12] + ")"
					}
				}
			}
			fmt.Fprintf(stdout, "roster %s%s\nrole protocol %d\n%s %s/%s\n", Version, rev, sdk.ProtocolVersion, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return 0
		},
	})
}
