package admin

import (
	"context"
	"errors"
	"strings"

	"github.com/sluicepg/sluice/internal/pool"
)

// pausePools returns the pools that PAUSE or RESUME's argument names: every pool, those of one
// database ("db"), or of one database and user ("db,user", pgcat's form).
func (c *Console) pausePools(verb string, args []string) ([]*pool.Pool, error) {
	if len(args) > 1 {
		return nil, syntaxError("usage: %s [db[,user]]", verb)
	}
	db, user := "", ""
	if len(args) == 1 {
		db, user, _ = strings.Cut(args[0], ",")
	}
	var pools []*pool.Pool
	for _, t := range c.targets() {
		if (db != "" && t.db != db) || (user != "" && t.user != user) {
			continue
		}
		for _, sp := range servers(t) {
			pools = append(pools, sp.pool)
		}
	}
	if len(pools) == 0 && db != "" {
		return nil, &consoleError{code: codeNoObject, msg: "no pool " + args[0]}
	}
	return pools, nil
}

// pause answers PAUSE [db[,user]]: the pools stop handing out servers, and the command returns
// once the servers in use have come back, as PgBouncer's does. It waits at most
// query_wait_timeout (the longest a client would wait anyway); the pools stay paused after a
// timeout, and RESUME ends it.
func (c *Console) pause(res *result, args []string) error {
	pools, err := c.pausePools("PAUSE", args)
	if err != nil {
		return err
	}
	ctx := context.Background()
	if d := c.Table().Config.General.QueryWaitTimeout; d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	c.logInfo("admin: PAUSE", "target", strings.Join(args, " "), "servers", len(pools))
	errs := make(chan error, len(pools))
	for _, p := range pools {
		go func() { errs <- p.Pause(ctx) }()
	}
	var all []error
	for range pools {
		if err := <-errs; err != nil {
			all = append(all, err)
		}
	}
	if len(all) > 0 {
		return &consoleError{code: codeTimeout, msg: "PAUSE timed out; the pools stay paused (RESUME ends it): " + errors.Join(all...).Error()}
	}
	res.complete("PAUSE")
	return nil
}

// resume answers RESUME [db[,user]].
func (c *Console) resume(res *result, args []string) error {
	pools, err := c.pausePools("RESUME", args)
	if err != nil {
		return err
	}
	for _, p := range pools {
		p.Resume()
	}
	c.logInfo("admin: RESUME", "target", strings.Join(args, " "), "servers", len(pools))
	res.complete("RESUME")
	return nil
}
