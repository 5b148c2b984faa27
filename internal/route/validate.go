package route

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Validate connects once to every server of every pool of the file's users, as pgcat does at
// start with validate_config: it finds unreachable servers and wrong credentials before the
// first client does, and learns the server parameters clients are told at login. A server that
// fails is logged. A user with min_pool_size whose server fails makes Validate return an error:
// pgcat refuses to start when it cannot open a pool's minimum of connections. Servers are tried
// at once, each within its user's connect_timeout; ctx bounds the whole.
func (t *Table) Validate(ctx context.Context, log *slog.Logger) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for db, users := range t.dbs {
		for _, name := range sortedKeys(users) {
			tg := users[name]
			for sh, servers := range tg.Shards {
				for _, sv := range servers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						cctx, cancel := context.WithTimeout(ctx, tg.User.ConnectTimeout+time.Second)
						defer cancel()
						srv, err := sv.Pool.Checkout(cctx)
						if err == nil {
							sv.Pool.Release(srv)
							return
						}
						log.Error("server down or misconfigured", "db", db, "user", name, "shard", sh,
							"server", sv.Node.Name(), "err", err)
						if tg.User.MinPoolSize > 0 {
							mu.Lock()
							errs = append(errs, fmt.Errorf("pool %s user %s: shard %d server %s: min_pool_size %d cannot be opened: %w",
								db, name, sh, sv.Node.Name(), tg.User.MinPoolSize, err))
							mu.Unlock()
						}
					}()
				}
			}
		}
	}
	wg.Wait()
	return errors.Join(errs...)
}
