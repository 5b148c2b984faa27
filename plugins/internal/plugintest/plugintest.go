// Package plugintest sets plugins up for unit tests as sluice does: the block decoded strictly,
// then Provision and Validate.
package plugintest

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/sluicepg/sluice/plugin"
)

// Setup decodes src (the body of a [plugins.<name>] block) into p and provisions and
// validates it, as sluice does.
func Setup(p plugin.Plugin, src string, log *slog.Logger) error {
	md, err := toml.Decode(src, p)
	if err != nil {
		return err
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return fmt.Errorf("unknown key(s) %s", strings.Join(keys, ", "))
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if pv, ok := p.(plugin.Provisioner); ok {
		if err := pv.Provision(plugin.Context{Context: context.Background(), Name: "test", Logger: log}); err != nil {
			return err
		}
	}
	if v, ok := p.(plugin.Validator); ok {
		return v.Validate()
	}
	return nil
}

// Client is the client the queries of Query come from.
var Client = plugin.Client{ID: 1, User: "app", Database: "appdb", ApplicationName: "psql",
	Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}}

// Query returns a simple-protocol query of text from a copy of Client.
func Query(text string) *plugin.Query {
	c := Client
	return &plugin.Query{Client: &c, Protocol: plugin.Simple, Text: text}
}

// Describe says what an action does, for test failures and table comparisons: "continue",
// "rewrite: <text>", "reject <code>: <message>", "answer", "route <role>".
func Describe(a plugin.Action) string {
	switch {
	case a.Kind == plugin.Reject:
		return "reject " + a.Code + ": " + a.Message
	case a.Kind == plugin.Answer:
		return "answer"
	case a.Rewrite != "":
		return "rewrite: " + a.Rewrite
	case a.Role != "":
		return "route " + a.Role
	}
	return "continue"
}
