// Package standard registers the plugins that ship with sluice. sluice.Main imports it; a custom
// binary that calls sluice.Main gets them too, and adds its own with plugin.Register.
//
// Each plugin has its own file here holding one blank import, so that adding a plugin touches
// no other plugin's line.
package standard
