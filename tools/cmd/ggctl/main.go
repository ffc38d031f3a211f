// Command ggctl controls an Evergreen core through its daemons' gRPC
// sockets. See tools/README.md or `ggctl help`.
package main

import (
	"io"
	"os"

	"github.com/evergreen-edge/evergreen/tools/ggctl/cli"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is the whole program; tests call it in-process.
func run(args []string, stdout, stderr io.Writer) int {
	return cli.Run(args, stdout, stderr)
}
