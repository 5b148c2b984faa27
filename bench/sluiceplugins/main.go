// Command sluiceplugins is sluice with the bench's three compiled-in plugins
// (bench/benchplugins): a custom binary as docs/plugins.md describes, built by the bench for
// its sluice-plugins target.
package main

import (
	"github.com/sluicepg/sluice"

	_ "github.com/sluicepg/sluice/bench/benchplugins"
)

func main() { sluice.Main() }
