package wasmguest_test

import (
	"strings"

	"github.com/sluicepg/sluice/plugin/wasmguest"
)

// A guest that refuses DELETE without WHERE, logs writes to a configured table, and sends the
// reporting application to its own database. It is a main package built with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o guard.wasm .
//
// whose init function is the body of this example; sluice runs it when it creates an instance.
func Example() {
	var cfg struct {
		Audit string `json:"audit"` // a table whose writes are logged
	}
	if err := wasmguest.DecodeConfig(&cfg); err != nil {
		wasmguest.Log(wasmguest.LevelError, "guard: bad config: "+err.Error())
	}

	wasmguest.OnQuery(func(q *wasmguest.Query) wasmguest.Action {
		text := strings.ToUpper(strings.TrimSpace(q.Text()))
		if strings.HasPrefix(text, "DELETE") && !strings.Contains(text, "WHERE") {
			return wasmguest.Reject("21000", "DELETE without WHERE is refused by guard")
		}
		if cfg.Audit != "" && q.Write() {
			for _, t := range q.Writes() {
				if t == cfg.Audit {
					wasmguest.Log(wasmguest.LevelInfo, q.Client().User()+" writes "+t+": "+q.Text())
				}
			}
		}
		return wasmguest.Continue()
	})

	wasmguest.OnStartup(func(s *wasmguest.Startup) wasmguest.Action {
		if s.ApplicationName() == "reporting" {
			s.SetDatabase("reporting")
		}
		return wasmguest.Continue()
	})
}
