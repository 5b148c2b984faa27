package cache

import (
	"context"
	"sync/atomic"
	"time"
)

// dbCatalog holds the current catalog of one database (a pool's name), loaded in the
// background: until it is, that database's queries are not cached.
type dbCatalog struct {
	cat      atomic.Pointer[catalog]
	loading  atomic.Bool
	loadedAt atomic.Int64 // unix nanos of the last attempt
}

// catalog returns db's catalog, or nil while it is not loaded; it starts a load (as user, or
// catalog_user) when there is none or it is older than catalog_refresh.
func (p *Cache) catalog(db, user string) *catalog {
	p.cmu.Lock()
	dc := p.catalogs[db]
	if dc == nil {
		dc = &dbCatalog{}
		p.catalogs[db] = dc
	}
	p.cmu.Unlock()
	c := dc.cat.Load()
	last := time.Unix(0, dc.loadedAt.Load())
	wait := time.Duration(p.CatalogRefresh)
	if c == nil {
		wait = time.Second // retry a failed first load soon
	}
	if time.Since(last) > wait {
		p.startLoad(dc, db, user)
	}
	return c
}

// refreshCatalog reloads db's catalog now (after DDL through sluice).
func (p *Cache) refreshCatalog(db, user string) {
	p.cmu.Lock()
	dc := p.catalogs[db]
	p.cmu.Unlock()
	if dc != nil {
		p.startLoad(dc, db, user)
	}
}

func (p *Cache) startLoad(dc *dbCatalog, db, user string) {
	if !dc.loading.CompareAndSwap(false, true) {
		return
	}
	dc.loadedAt.Store(time.Now().UnixNano())
	if p.CatalogUser != "" {
		user = p.CatalogUser
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer dc.loading.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := loadCatalog(ctx, p.host, db, user)
		if err != nil {
			p.log.Warn("cache: catalog not loaded; the database's queries go uncached", "db", db, "err", err)
			return
		}
		if old := dc.cat.Load(); old != nil && old.fingerprint != c.fingerprint {
			// Tables, views, functions or triggers changed, perhaps without sluice seeing
			// it (DDL is not in the WAL stream): nothing cached before may be trusted. The
			// epoch goes first, so no reader pairs the new catalog with old entries.
			p.stats.epochBumps.Add(1)
			p.st.bumpEpoch("catalog changed")
		}
		dc.cat.Store(c)
	}()
}
