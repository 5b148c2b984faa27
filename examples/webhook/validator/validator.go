// Package validator is the validation service of examples/webhook: an http.Handler that
// answers sluice's webhook plugin.
//
// Its policy, as an example of what such a service decides:
//   - an UPDATE or DELETE without a WHERE clause is rejected (SQLSTATE P0001);
//   - a DELETE ... WHERE on a soft-delete table is rewritten to
//     UPDATE ... SET deleted_at = now() WHERE ...;
//   - everything else is allowed.
package validator

import (
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/sluicepg/sluice/plugins/webhook"
)

// Service is the handler. Its zero value rejects unbounded writes and rewrites no DELETE.
type Service struct {
	// SoftDelete are the tables whose rows are marked deleted (deleted_at) instead of removed.
	SoftDelete []string

	requests atomic.Int64
}

// Requests returns how many statements the service was asked about.
func (s *Service) Requests() int64 { return s.requests.Load() }

var (
	whereRE  = regexp.MustCompile(`(?i)\bwhere\b`)
	deleteRE = regexp.MustCompile(`(?is)^\s*delete\s+from\s+([\w.]+)\s+(where\s+.*)$`)
)

// Decide applies the policy to one request.
func (s *Service) Decide(req *webhook.Request) webhook.Reply {
	writes := slices.Contains(req.Kinds, "UpdateStmt") || slices.Contains(req.Kinds, "DeleteStmt")
	if writes && !whereRE.MatchString(req.Query) {
		return webhook.Reply{Action: "reject", Code: "P0001",
			Message: "the validation service refuses an UPDATE or DELETE without WHERE on " + strings.Join(req.Tables, ", ")}
	}
	if m := deleteRE.FindStringSubmatch(req.Query); m != nil && slices.Contains(s.SoftDelete, strings.ToLower(m[1])) {
		return webhook.Reply{Action: "rewrite", Query: "UPDATE " + m[1] + " SET deleted_at = now() " + m[2]}
	}
	return webhook.Reply{Action: "allow"}
}

// ServeHTTP implements http.Handler.
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST a statement", http.StatusMethodNotAllowed)
		return
	}
	var req webhook.Request
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		http.Error(w, "bad request: "+err.Error(), http.StatusBadRequest)
		return
	}
	s.requests.Add(1)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(s.Decide(&req))
}
