// Command guest is the test guest of plugins/wasm and test/e2e: what it does depends on the
// query text, so one build serves every case.
package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/sluicepg/sluice/plugin/wasmguest"
)

// version is set with -ldflags=-X main.version=... to make builds that differ; version "noop"
// continues at once, to measure the cost of a call.
var version = "1"

var hoard [][]byte

// prefix starts the words the guest acts on; its config may change it, so that two modules
// built from this guest act on different words.
var prefix = "guest_"

func init() {
	var cfg struct{ Prefix string }
	if err := wasmguest.DecodeConfig(&cfg); err == nil && cfg.Prefix != "" {
		prefix = cfg.Prefix
	}
	wasmguest.OnQuery(onQuery)
	wasmguest.OnStartup(func(s *wasmguest.Startup) wasmguest.Action {
		switch s.User() {
		case "blocked":
			return wasmguest.Reject("", "blocked by the guest")
		case "alias":
			s.SetUser("app")
		}
		return wasmguest.Continue()
	})
	wasmguest.OnAuth(func(c wasmguest.Client) wasmguest.Action {
		if c.ApplicationName() == "noauth" {
			return wasmguest.Reject("28P01", "the guest refuses application noauth")
		}
		return wasmguest.Continue()
	})
}

func onQuery(q *wasmguest.Query) wasmguest.Action {
	if version == "noop" {
		return wasmguest.Continue()
	}
	text := q.Text()
	switch {
	case strings.Contains(text, prefix+"loop"):
		for {
		}
	case strings.Contains(text, prefix+"alloc"):
		for {
			hoard = append(hoard, make([]byte, 1<<20))
		}
	case strings.Contains(text, prefix+"sleep"):
		time.Sleep(time.Hour)
	case strings.Contains(text, prefix+"panic"):
		panic("the guest was told to panic")
	case strings.Contains(text, prefix+"badaction"):
		return wasmguest.Action(7)
	case strings.Contains(text, prefix+"badcode"):
		return wasmguest.Reject("nope", "x")
	case strings.Contains(text, prefix+"reject"):
		return wasmguest.Reject("42501", "the guest rejects guest_reject")
	case strings.Contains(text, prefix+"version"):
		return wasmguest.Rewrite("SELECT 'guest v" + version + "'")
	case strings.Contains(text, prefix+"big"):
		return wasmguest.Rewrite("SELECT '" + strings.Repeat("x", 100000) + "'")
	case strings.Contains(text, prefix+"echo"):
		var params []string
		for i := 0; i < q.NumParams(); i++ {
			v, ok := q.Param(i)
			p := string(v)
			if !ok {
				p = "NULL"
			}
			if q.ParamBinary(i) {
				p = "bin:" + p
			}
			params = append(params, p)
		}
		c := q.Client()
		wasmguest.Log(wasmguest.LevelInfo, "echo from the guest")
		return wasmguest.Rewrite(fmt.Sprintf("user=%s db=%s app=%s proto=%d tx=%t kind=%s reads=%v params=%v config=%s",
			c.User(), c.Database(), c.ApplicationName(), q.Protocol(), q.InTransaction(), q.Kind(),
			q.Reads(), params, wasmguest.Config()))
	}
	return wasmguest.Continue()
}

func main() {}
