// Command sluice-custom is sluice with one more plugin compiled in: json_fk, which keeps an
// implicit foreign key inside a JSON column honest. It is sluice's own main plus a blank import.
package main

import (
	"github.com/sluicepg/sluice"

	_ "github.com/sluicepg/sluice/examples/custom-binary/jsonfk" // registers [plugins.json_fk]
)

func main() { sluice.Main() }
