package config

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/BurntSushi/toml"
)

// Decode reads the block into v, a plugin's configuration (a pointer to a struct with toml tags,
// or without tags: field names match keys case-insensitively, as BurntSushi/toml does). A key v
// has no field for is an error, as it is everywhere else in the file.
func (b *PluginBlock) Decode(v any) error {
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(b.Raw); err != nil {
		return fmt.Errorf("%s: %w", b.Where(), err)
	}
	md, err := toml.Decode(buf.String(), v)
	if err != nil {
		return fmt.Errorf("%s: %w", b.Where(), err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return fmt.Errorf("%s: unknown key(s) %s", b.Where(), strings.Join(keys, ", "))
	}
	return nil
}
