package webhook_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicepg/sluice/examples/webhook/validator"
	"github.com/sluicepg/sluice/plugin"
	"github.com/sluicepg/sluice/plugins/internal/plugintest"
	"github.com/sluicepg/sluice/plugins/webhook"
)

func setup(t *testing.T, src string) *webhook.Webhook {
	t.Helper()
	p := new(webhook.Webhook)
	if err := plugintest.Setup(p, src, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Cleanup() })
	return p
}

func TestWebhookWithTheExampleService(t *testing.T) {
	svc := &validator.Service{SoftDelete: []string{"accounts"}}
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(svc)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	p := setup(t, fmt.Sprintf("url = %q\nkinds = [\"UpdateStmt\", \"DeleteStmt\"]\ntimeout = 2000", srv.URL))
	for _, tc := range []struct {
		name, query string
		want        string
		asked       bool
	}{
		{"select is not sent", "SELECT * FROM accounts", "continue", false},
		{"insert is not sent", "INSERT INTO accounts VALUES (1)", "continue", false},
		{"allow", "UPDATE accounts SET name = 'x' WHERE id = 1", "continue", true},
		{"reject", "DELETE FROM orders", "reject P0001: the validation service refuses an UPDATE or DELETE without WHERE on orders", true},
		{"rewrite", "DELETE FROM accounts WHERE id = 7", "rewrite: UPDATE accounts SET deleted_at = now() WHERE id = 7", true},
		{"nested delete is sent", "WITH d AS (DELETE FROM orders RETURNING *) SELECT count(*) FROM d", "reject P0001: the validation service refuses an UPDATE or DELETE without WHERE on orders", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := svc.Requests()
			act, err := p.OnQuery(context.Background(), plugintest.Query(tc.query))
			if got := plugintest.Describe(act); err != nil || got != tc.want {
				t.Errorf("got %q, %v; want %q", got, err, tc.want)
			}
			if asked := svc.Requests() > before; asked != tc.asked {
				t.Errorf("service asked: %v; want %v", asked, tc.asked)
			}
		})
	}
	for range 20 {
		p.OnQuery(context.Background(), plugintest.Query("UPDATE t SET a = 1 WHERE b = 2"))
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections to the service for sequential requests; want 1 (keep-alive)", n)
	}
}

func TestWebhookTables(t *testing.T) {
	var got atomic.Pointer[webhook.Request]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req webhook.Request
		json.NewDecoder(r.Body).Decode(&req)
		got.Store(&req)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	p := setup(t, fmt.Sprintf("url = %q\ntables = [\"payments\", \"billing.*\"]\nbind = true", srv.URL))
	for _, tc := range []struct {
		query string
		sent  bool
	}{
		{"SELECT * FROM payments", true},
		{"SELECT * FROM billing.invoices", true},
		{"SELECT * FROM users", false},
		{"SELECT 'payments'", false},
	} {
		got.Store(nil)
		act, _ := p.OnQuery(context.Background(), plugintest.Query(tc.query))
		if act.Kind != plugin.Continue || (got.Load() != nil) != tc.sent {
			t.Errorf("%q: %s, sent %v; want sent %v", tc.query, plugintest.Describe(act), got.Load() != nil, tc.sent)
		}
	}
	q := plugintest.Query("UPDATE payments SET amount = $1 WHERE id = $2")
	q.Protocol, q.Params = plugin.Bind, []plugin.Param{{Value: []byte("10.50")}, {Value: nil}, {Value: []byte{0, 1}, Binary: true}}
	p.OnQuery(context.Background(), q)
	req := got.Load()
	if req == nil || req.Protocol != "bind" || len(req.Params) != 3 || req.Params[0].Value != "10.50" || req.Params[1] != nil ||
		req.Params[2].Value != "AAE=" || !req.Params[2].Binary || req.Client.User != "app" || req.Tables[0] != "payments" {
		t.Errorf("bind request %+v", req)
	}
}

func TestWebhookFailures(t *testing.T) {
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(time.Second):
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/500":
			http.Error(w, "boom", 500)
		case "/json":
			w.Write([]byte("{not json"))
		case "/action":
			w.Write([]byte(`{"action": "maybe"}`))
		}
	}))
	defer broken.Close()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	down := "http://" + ln.Addr().String()
	ln.Close()

	for _, tc := range []struct {
		name, url string
		failOpen  bool
		want      string // prefix
	}{
		{"down, fail closed", down, false, "reject 58000: webhook " + down + " failed, so the statement was refused (fail_open = false): dial tcp"},
		{"down, fail open", down, true, "continue"},
		{"late, fail closed", slow.URL, false, "reject 58000: webhook " + slow.URL + " failed, so the statement was refused (fail_open = false): no answer within 300ms"},
		{"late, fail open", slow.URL, true, "continue"},
		{"status 500", broken.URL + "/500", false, "reject 58000: webhook " + broken.URL + "/500 failed, so the statement was refused (fail_open = false): the service answered 500"},
		{"bad json", broken.URL + "/json", false, "reject 58000: webhook " + broken.URL + "/json failed, so the statement was refused (fail_open = false): the service's reply does not decode"},
		{"unknown action", broken.URL + "/action", false, `reject 58000: webhook ` + broken.URL + `/action failed, so the statement was refused (fail_open = false): the service answered action "maybe"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := setup(t, fmt.Sprintf("url = %q\nkinds = [\"*\"]\ntimeout = 300\nfail_open = %v", tc.url, tc.failOpen))
			start := time.Now()
			act, err := p.OnQuery(context.Background(), plugintest.Query("SELECT 1"))
			took := time.Since(start)
			if got := plugintest.Describe(act); err != nil || !strings.HasPrefix(got, tc.want) {
				t.Errorf("got %q, %v; want %q...", got, err, tc.want)
			}
			if took > 800*time.Millisecond {
				t.Errorf("took %s with a 300ms timeout", took)
			}
		})
	}
}

func TestWebhookConfigErrors(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{`url = "http://x"`, "set kinds, tables or both"},
		{"url = \"ftp://x\"\nkinds = [\"*\"]", "want an http"},
		{"url = \"http://x\"\nkinds = [\"*\"]\ntimeout = 10000", "1 to 4000"},
		{"url = \"http://x\"\nkinds = [\"*\"]\nfailopen = true", "unknown key"},
	} {
		err := plugintest.Setup(new(webhook.Webhook), tc.src, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v; want %q", tc.src, err, tc.want)
		}
	}
}

// TestWebhookURLSecretsNotShown pins that a password or token in the service's URL reaches
// neither the client (in a refusal's message) nor the log (fail_open's warning).
func TestWebhookURLSecretsNotShown(t *testing.T) {
	refuse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"action":"reject"}`))
	}))
	defer refuse.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + ln.Addr().String()
	ln.Close() // nothing listens there now
	for _, tc := range []struct{ name, base, extra string }{
		{"refused without a message", refuse.URL, ""},
		{"service down, fail closed", down, ""},
		{"service down, fail open", down, "fail_open = true"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var log strings.Builder
			u := strings.Replace(tc.base, "http://", "http://hook:pa55w0rd@", 1) + "/check?token=t0k3n"
			p := new(webhook.Webhook)
			if err := plugintest.Setup(p, fmt.Sprintf("url = %q\nkinds = [\"*\"]\n%s", u, tc.extra),
				slog.New(slog.NewTextHandler(&log, nil))); err != nil {
				t.Fatal(err)
			}
			defer p.Cleanup()
			act, _ := p.OnQuery(context.Background(), plugintest.Query("DELETE FROM t"))
			for _, secret := range []string{"pa55w0rd", "t0k3n"} {
				if got := plugintest.Describe(act); strings.Contains(got, secret) {
					t.Errorf("the client is told %q", got)
				}
				if strings.Contains(log.String(), secret) {
					t.Errorf("the log says %q", log.String())
				}
			}
		})
	}
	p := new(webhook.Webhook)
	err = plugintest.Setup(p, "url = \"ftp://hook:pa55w0rd@example.com/\"\nkinds = [\"*\"]", nil)
	if err == nil || strings.Contains(err.Error(), "pa55w0rd") {
		t.Errorf("a bad URL's error: %v", err)
	}
}
