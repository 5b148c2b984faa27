// Command sluice is the PostgreSQL pooler and proxy. A custom build with compiled-in plugins is
// this same file plus blank imports of the plugin packages.
package main

import "github.com/sluicepg/sluice"

func main() { sluice.Main() }
