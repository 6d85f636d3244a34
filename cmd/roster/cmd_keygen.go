package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"

	"github.com/rosterhq/roster/core/protocol"
)

// defaultKeyDir is <data_dir>/keys for the default data_dir.
const defaultKeyDir = ".roster/keys"

func init() {
	register(command{
		name:     "keygen",
		synopsis: "Generate the order signing key and the fleet key",
		run:      runKeygen,
	})
}

func runKeygen(args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("keygen", flag.ContinueOnError)
	fl.SetOutput(stderr)
	dir := fl.String("dir", defaultKeyDir, "directory to write the keys into (created with mode 0700)")
	force := fl.Bool("force", false, "replace existing keys: every agent then needs the new order.pub and fleet.key")
	setUsage(fl, stderr,
		"Usage: roster keygen [-dir DIR] [-force]",
		"",
		"Writes order.key (the orchestrator's Ed25519 signing key, 0600), order.pub",
		"(its public key, 0644) and fleet.key (the shared key agents authenticate",
		"their reports with, 0600). Agents get order.pub and fleet.key, never order.key.",
	)
	if code, done := parseFlags(fl, args); done {
		return code
	}
	if fl.NArg() != 0 {
		fmt.Fprintf(stderr, "roster keygen: unexpected argument %q\n", fl.Arg(0))
		fl.Usage()
		return 1
	}
	keys, err := protocol.GenerateKeys()
	if err != nil {
		fmt.Fprintf(stderr, "roster keygen: %v\n", err)
		return 1
	}
	if err := protocol.WriteKeysWith(*dir, keys, protocol.WriteOptions{Force: *force}); err != nil {
		fmt.Fprintf(stderr, "roster keygen: %v\n", err)
		if errors.Is(err, fs.ErrExist) {
			fmt.Fprintln(stderr, "roster keygen: keep the existing keys, or pass -force to replace them (agents then need the new ones)")
		}
		return 1
	}
	fmt.Fprintf(stdout, "wrote %s (orchestrator only, mode 0600)\n", filepath.Join(*dir, protocol.OrderKeyFile))
	fmt.Fprintf(stdout, "wrote %s (mode 0644)\n", filepath.Join(*dir, protocol.OrderPubFile))
	fmt.Fprintf(stdout, "wrote %s (mode 0600)\n", filepath.Join(*dir, protocol.FleetKeyFile))
	fmt.Fprintf(stdout, "order key id: %s\n", keys.OrderKeyID())
	fmt.Fprintf(stdout, "fleet key id: %s\n", keys.FleetKeyID())
	fmt.Fprintf(stdout, "agents need %s and %s; keep %s on the orchestrator's host only\n", protocol.OrderPubFile, protocol.FleetKeyFile, protocol.OrderKeyFile)
	return 0
}
