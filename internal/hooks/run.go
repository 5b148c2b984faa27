package hooks

import (
	"context"
	"errors"

	"github.com/sluicepg/sluice/plugin"
)

// Startup runs the StartupHooks. The first error refuses the client.
func (c *Chain) Startup(ctx context.Context, s *plugin.Startup) *plugin.Error {
	if c == nil {
		return nil
	}
	for _, in := range c.startup {
		if _, err := call(in, mono(), func() error { return in.startup.OnStartup(ctx, s) }); err != nil {
			in.rejects.Add(1)
			return asError(err, "28000")
		}
	}
	return nil
}

// Auth runs the AuthHooks. The first error refuses the login.
func (c *Chain) Auth(ctx context.Context, cl *plugin.Client) *plugin.Error {
	if c == nil {
		return nil
	}
	for _, in := range c.auth {
		if _, err := call(in, mono(), func() error { return in.auth.OnAuth(ctx, cl) }); err != nil {
			in.rejects.Add(1)
			return asError(err, "28000")
		}
	}
	return nil
}

// Query runs the QueryHooks over q. A rewrite is applied to q.Text before the next hook runs;
// the first Reject or Answer ends the chain and is returned; a failed hook is returned as a
// Reject. The Role, Shard and Capture of the last hook that set them are kept. (Only one capture
// per statement: a second plugin's replaces the first's.)
func (c *Chain) Query(ctx context.Context, q *plugin.Query) plugin.Action {
	var out plugin.Action
	if c == nil {
		return out
	}
	rewritten := false
	t := mono()
	for _, in := range c.query {
		var act plugin.Action
		var err error
		t, err = call(in, t, func() error {
			var err error
			act, err = in.query.OnQuery(ctx, q)
			return err
		})
		if err != nil {
			in.rejects.Add(1)
			pe := asError(err, "XX000")
			return plugin.RejectQuery(pe.Code, pe.Message)
		}
		if act.Kind == plugin.Reject || act.Kind == plugin.Answer {
			if act.Kind == plugin.Reject {
				in.rejects.Add(1)
				if act.Code == "" {
					act.Code = "42501"
				}
			}
			return act
		}
		if act.Rewrite != "" && act.Rewrite != q.Text {
			q.Text, rewritten = act.Rewrite, true
		}
		if act.Role != "" {
			out.Role = act.Role
		}
		if act.ShardSet {
			out.Shard, out.ShardSet = act.Shard, true
		}
		if act.Capture != nil {
			out.Capture, out.CaptureLimit = act.Capture, act.CaptureLimit
		}
	}
	if rewritten {
		out.Rewrite = q.Text
	}
	return out
}

// Result runs the ResultHooks. They only observe: their errors are counted, not returned.
func (c *Chain) Result(ctx context.Context, r *plugin.Result) {
	if c == nil {
		return
	}
	for _, in := range c.result {
		_, _ = call(in, mono(), func() error { in.result.OnResult(ctx, r); return nil })
	}
}

// TxEnd runs the TxEndHooks.
func (c *Chain) TxEnd(ctx context.Context, cl *plugin.Client, committed bool) {
	if c == nil {
		return
	}
	for _, in := range c.txEnd {
		_, _ = call(in, mono(), func() error { in.txEnd.OnTxEnd(ctx, cl, committed); return nil })
	}
}

// FunctionCall runs the FunctionCallHooks.
func (c *Chain) FunctionCall(ctx context.Context, cl *plugin.Client, seq uint64) {
	if c == nil {
		return
	}
	for _, in := range c.fcall {
		_, _ = call(in, mono(), func() error { in.fcall.OnFunctionCall(ctx, cl, seq); return nil })
	}
}

// ServerConnect runs the ServerConnectHooks on a new server connection. An error means the
// connection must not be used.
func (c *Chain) ServerConnect(ctx context.Context, s *plugin.Server) error {
	if c == nil {
		return nil
	}
	for _, in := range c.connect {
		if _, err := call(in, mono(), func() error { return in.connect.OnServerConnect(ctx, s) }); err != nil {
			return err
		}
	}
	return nil
}

// Disconnect runs the DisconnectHooks.
func (c *Chain) Disconnect(ctx context.Context, cl *plugin.Client) {
	if c == nil {
		return
	}
	for _, in := range c.disc {
		_, _ = call(in, mono(), func() error { in.disconn.OnDisconnect(ctx, cl); return nil })
	}
}

// asError returns err as a *plugin.Error, with code when it is not one.
func asError(err error, code string) *plugin.Error {
	var pe *plugin.Error
	if errors.As(err, &pe) {
		return pe
	}
	return &plugin.Error{Code: code, Message: err.Error()}
}
