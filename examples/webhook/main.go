// Command webhook is a small validation service for sluice's webhook plugin. Run it, then point
// sluice at it:
//
//	go run ./examples/webhook -addr 127.0.0.1:8089 -soft-delete accounts
//
//	[plugins.webhook]
//	url = "http://127.0.0.1:8089/check"
//	kinds = ["UpdateStmt", "DeleteStmt"]
//	timeout = 200
//	fail_open = false
//
// It refuses UPDATE and DELETE without WHERE, turns DELETE on the -soft-delete tables into an
// UPDATE of deleted_at, and allows the rest (see package validator).
package main

import (
	"flag"
	"log"
	"net/http"
	"strings"
	"time"

	"github.com/sluicepg/sluice/examples/webhook/validator"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8089", "listen address")
	soft := flag.String("soft-delete", "", "comma-separated tables whose DELETEs become UPDATE ... SET deleted_at = now()")
	flag.Parse()
	svc := &validator.Service{}
	for _, t := range strings.Split(*soft, ",") {
		if t = strings.TrimSpace(t); t != "" {
			svc.SoftDelete = append(svc.SoftDelete, strings.ToLower(t))
		}
	}
	mux := http.NewServeMux()
	mux.Handle("/check", svc)
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 2 * time.Minute}
	log.Printf("validation service on http://%s/check", *addr)
	log.Fatal(srv.ListenAndServe())
}
