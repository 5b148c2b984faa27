// Package webhook asks an HTTP service about chosen statements before they run. The service
// allows a statement, rejects it with a message and SQLSTATE, or rewrites it.
//
//	[plugins.webhook]
//	url = "http://127.0.0.1:8089/check"
//	kinds = ["DeleteStmt", "UpdateStmt"]   # statement kinds that are sent ("*": every kind)
//	tables = ["accounts", "billing.*"]    # and/or tables they name
//	timeout = 200                          # milliseconds for the whole exchange
//	fail_open = false                      # service down or late: refuse the statement
//
// Only statements that match are sent: a statement matches when one of its statements (nested
// ones included) is of one of kinds, and it names one of tables; with only kinds or only
// tables set, that condition alone decides. Other statements make no HTTP request at all; they
// pay one lookup in a per-text cache of the parse.
//
// The plugin POSTs a Request as JSON and reads a Reply. Statements are sent from the simple
// protocol and, in the extended protocol, at Parse (the text, which a reply may rewrite);
// with bind = true also at each Bind, with the parameters (a reply may then allow or reject).
//
// When the service cannot be reached, does not answer within timeout, answers with a status
// other than 2xx or with a reply that does not decode, fail_open decides: true runs the
// statement (and logs a warning, at most once a second), false refuses it with SQLSTATE
// failure_code (default 58000) and a message saying why. One http.Client with a keep-alive
// Transport serves every client session, so requests reuse connections.
package webhook

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sluicepg/sluice/plugin"
	"github.com/sluicepg/sluice/plugins/internal/sqlfacts"
)

func init() {
	plugin.Register(plugin.Info{Name: "webhook", New: func() plugin.Plugin { return new(Webhook) }})
}

// Request is what the plugin POSTs, as JSON.
type Request struct {
	// Protocol is "simple", "parse" or "bind".
	Protocol string `json:"protocol"`
	Query    string `json:"query"`
	// Kinds are the statement kinds in the text, nested ones included ("DeleteStmt"); Tables
	// the tables it names ("accounts", "billing.invoices").
	Kinds  []string `json:"kinds"`
	Tables []string `json:"tables"`
	// Params are a Bind's parameters: null for NULL, text values as strings; a binary value
	// is base64 with Binary set.
	Params        []*Param `json:"params,omitempty"`
	InTransaction bool     `json:"in_transaction"`
	Client        Client   `json:"client"`
}

// Param is one parameter of a Bind.
type Param struct {
	Value  string `json:"value"`
	Binary bool   `json:"binary,omitempty"`
}

// Client is who sent the statement.
type Client struct {
	User            string `json:"user"`
	Database        string `json:"database"`
	ApplicationName string `json:"application_name"`
	Address         string `json:"address"`
}

// Reply is what the service answers, as JSON. An empty body (or status 204) allows.
type Reply struct {
	// Action is "allow" (or ""), "reject" or "rewrite".
	Action string `json:"action"`
	// Message and Code (a SQLSTATE, default 42501) are a rejection's error.
	Message string `json:"message,omitempty"`
	Code    string `json:"code,omitempty"`
	// Query replaces the statement's text for "rewrite".
	Query string `json:"query,omitempty"`
}

// Webhook is the plugin and its configuration.
type Webhook struct {
	URL    string   `toml:"url"`
	Kinds  []string `toml:"kinds"`
	Tables []string `toml:"tables"`
	// Timeout bounds a whole exchange with the service, in milliseconds (default 1000, at
	// most 4000: sluice fails a hook that takes 5 s).
	Timeout  int  `toml:"timeout"`
	FailOpen bool `toml:"fail_open"`
	// FailureCode is the SQLSTATE of a refusal because the service failed (default 58000).
	FailureCode string `toml:"failure_code"`
	// Bind also sends each Bind of a matching statement, with its parameters.
	Bind bool `toml:"bind"`
	// Headers are added to every request (e.g. Authorization).
	Headers map[string]string `toml:"headers"`
	// MaxIdleConnections is how many idle connections to the service are kept for reuse
	// (default 64); more concurrent requests open more, which are closed when idle.
	MaxIdleConnections int `toml:"max_idle_connections"`
	// MaxLength is the longest text parsed to match kinds and tables (default 16 KiB, at
	// most 64 KiB). A longer text, or one that does not parse, matches when kinds has "*"
	// and tables is empty, and is sent with no kinds or tables; otherwise it is not sent.
	MaxLength int `toml:"max_length"`

	timeout time.Duration
	// shownURL is URL as clients and the log see it: without user information or query,
	// where a token may be.
	shownURL string
	allKinds bool
	kinds    map[string]bool
	client   *http.Client
	facts    *sqlfacts.Cache
	log      *slog.Logger
	lastWarn atomic.Int64
}

// Provision implements plugin.Provisioner: it builds the HTTP client.
func (p *Webhook) Provision(ctx plugin.Context) error {
	p.log = ctx.Logger
	if p.log == nil {
		p.log = slog.Default()
	}
	if p.Timeout == 0 {
		p.Timeout = 1000
	}
	if p.FailureCode == "" {
		p.FailureCode = "58000"
	}
	if p.MaxIdleConnections <= 0 {
		p.MaxIdleConnections = 64
	}
	p.timeout = time.Duration(p.Timeout) * time.Millisecond
	p.shownURL = redactURL(p.URL)
	p.kinds = map[string]bool{}
	for _, k := range p.Kinds {
		if k == "*" {
			p.allKinds = true
		}
		p.kinds[k] = true
	}
	p.facts = sqlfacts.New(p.MaxLength, 0)
	dialer := &net.Dialer{Timeout: p.timeout, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		DialContext:           dialer.DialContext,
		MaxIdleConns:          p.MaxIdleConnections,
		MaxIdleConnsPerHost:   p.MaxIdleConnections,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   p.timeout,
		ResponseHeaderTimeout: p.timeout,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
		ForceAttemptHTTP2:     true,
	}
	p.client = &http.Client{Transport: tr, Timeout: p.timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return nil
}

// Validate implements plugin.Validator.
func (p *Webhook) Validate() error {
	u, err := url.Parse(p.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("url %q: want an http:// or https:// URL", redactURL(p.URL))
	}
	if len(p.Kinds) == 0 && len(p.Tables) == 0 {
		return errors.New(`set kinds, tables or both: they choose the statements sent (kinds = ["*"] sends every one)`)
	}
	if p.Timeout < 1 || p.Timeout > 4000 {
		return fmt.Errorf("timeout %d: want 1 to 4000 milliseconds", p.Timeout)
	}
	if len(p.FailureCode) != 5 {
		return fmt.Errorf("failure_code %q is not a SQLSTATE (five characters)", p.FailureCode)
	}
	for _, t := range p.Tables {
		if _, err := path.Match(t, ""); err != nil {
			return fmt.Errorf("tables: bad pattern %q: %w", t, err)
		}
	}
	return nil
}

// Cleanup implements plugin.CleanerUpper: it closes the idle connections.
func (p *Webhook) Cleanup() error {
	if p.client != nil {
		p.client.CloseIdleConnections()
	}
	return nil
}

// OnQuery implements plugin.QueryHook.
func (p *Webhook) OnQuery(ctx context.Context, q *plugin.Query) (plugin.Action, error) {
	if q.Protocol == plugin.Bind && !p.Bind {
		return plugin.ContinueQuery(), nil
	}
	f := p.facts.Get(q.Text)
	if !p.matches(f) {
		return plugin.ContinueQuery(), nil
	}
	req := Request{Protocol: q.Protocol.String(), Query: q.Text, Kinds: f.Statements, Tables: f.Tables,
		InTransaction: q.InTransaction}
	if c := q.Client; c != nil {
		req.Client = Client{User: c.User, Database: c.Database, ApplicationName: c.ApplicationName}
		if c.Addr != nil {
			req.Client.Address = c.Addr.String()
		}
	}
	for _, prm := range q.Params {
		switch {
		case prm.Value == nil:
			req.Params = append(req.Params, nil)
		case prm.Binary:
			req.Params = append(req.Params, &Param{Value: base64.StdEncoding.EncodeToString(prm.Value), Binary: true})
		default:
			req.Params = append(req.Params, &Param{Value: string(prm.Value)})
		}
	}
	start := time.Now()
	reply, err := p.ask(ctx, &req)
	if err == nil {
		switch reply.Action {
		case "", "allow":
			return plugin.ContinueQuery(), nil
		case "reject":
			code := reply.Code
			if code == "" {
				code = "42501"
			}
			msg := reply.Message
			if msg == "" {
				msg = "refused by " + p.shownURL
			}
			return plugin.RejectQuery(code, msg), nil
		case "rewrite":
			if q.Protocol == plugin.Bind {
				err = errors.New("the service rewrote a Bind, whose text cannot change")
			} else if reply.Query == "" {
				err = errors.New("the service rewrote the statement to an empty text")
			} else {
				return plugin.RewriteQuery(reply.Query), nil
			}
		default:
			err = fmt.Errorf("the service answered action %q (want allow, reject or rewrite)", reply.Action)
		}
	}
	return p.failed(err, time.Since(start)), nil
}

// matches reports whether a text with facts f is sent to the service.
func (p *Webhook) matches(f *sqlfacts.Facts) bool {
	if f.Err != nil {
		return p.allKinds && len(p.Tables) == 0
	}
	if len(p.kinds) > 0 && !p.allKinds {
		ok := false
		for _, k := range f.Statements {
			if p.kinds[k] {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if len(p.Tables) == 0 {
		return true
	}
	for _, t := range f.Tables {
		for _, want := range p.Tables {
			if sqlfacts.MatchTable(want, t) {
				return true
			}
			if strings.ContainsRune(want, '*') {
				if ok, _ := path.Match(want, t); ok {
					return true
				}
			}
		}
	}
	return false
}

// ask POSTs req and decodes the reply, within the timeout.
func (p *Webhook) ask(ctx context.Context, req *Request) (*Reply, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, p.URL, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("User-Agent", "sluice-webhook")
	for k, v := range p.Headers {
		hr.Header.Set(k, v)
	}
	resp, err := p.client.Do(hr)
	if err != nil {
		return nil, err
	}
	defer func() {
		// Read what is left so the connection goes back to the pool for the next request.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
	}()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, fmt.Errorf("the service answered %s", resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	var reply Reply
	if len(bytes.TrimSpace(data)) == 0 {
		return &reply, nil
	}
	if err := json.Unmarshal(data, &reply); err != nil {
		return nil, fmt.Errorf("the service's reply does not decode: %w", err)
	}
	return &reply, nil
}

// failed applies the failure policy to a failed exchange.
func (p *Webhook) failed(err error, took time.Duration) plugin.Action {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // the URL is in the message already
	}
	if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
		err = fmt.Errorf("no answer within %s", p.timeout)
	}
	if p.FailOpen {
		now := time.Now().UnixNano()
		if last := p.lastWarn.Load(); now-last > int64(time.Second) && p.lastWarn.CompareAndSwap(last, now) {
			p.log.Warn("webhook failed; the statement runs (fail_open = true)", "url", p.shownURL, "err", err, "took", took)
		}
		return plugin.ContinueQuery()
	}
	return plugin.RejectQuery(p.FailureCode, fmt.Sprintf("webhook %s failed, so the statement was refused (fail_open = false): %v", p.shownURL, err))
}

// redactURL returns raw without what may be a secret: the user information (a password) and
// the query (a token); a URL that does not parse is not shown at all.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(a URL that does not parse)"
	}
	u.User = nil
	if u.RawQuery != "" {
		u.RawQuery = "..."
	}
	u.Fragment, u.RawFragment = "", ""
	return u.String()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

var (
	_ plugin.Provisioner  = (*Webhook)(nil)
	_ plugin.Validator    = (*Webhook)(nil)
	_ plugin.CleanerUpper = (*Webhook)(nil)
	_ plugin.QueryHook    = (*Webhook)(nil)
)
