package classify

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
)

// pgbench -S's query, and a longer ORM-style one.
const (
	benchQuery     = "SELECT abalance FROM pgbench_accounts WHERE aid = $1"
	benchLongQuery = `SELECT "users"."id", "users"."email", "users"."name", "users"."created_at", "orders"."id" AS "order_id", "orders"."total", "orders"."status" FROM "users" LEFT OUTER JOIN "orders" ON "orders"."user_id" = "users"."id" WHERE "users"."deleted_at" IS NULL AND "users"."tenant_id" = $1 AND "orders"."status" IN ($2, $3, $4) AND "orders"."created_at" > now() - interval '30 days' ORDER BY "orders"."created_at" DESC LIMIT 50 OFFSET $5`
)

// BenchmarkClassifyCached is the cost the router pays for a query it has seen: a cache hit.
func BenchmarkClassifyCached(b *testing.B) {
	for _, q := range []struct{ name, text string }{{"short", benchQuery}, {"long", benchLongQuery}} {
		b.Run(q.name, func(b *testing.B) {
			c := New(Options{})
			query := []byte(q.text)
			c.Classify(query)
			b.ReportAllocs()
			for b.Loop() {
				if c.Classify(query).Write {
					b.Fatal("a read classified as a write")
				}
			}
		})
	}
}

// BenchmarkClassifyCold is the cost of a text seen for the first time: the parse and the
// walk, with no cache.
func BenchmarkClassifyCold(b *testing.B) {
	for _, q := range []struct{ name, text string }{
		{"short", benchQuery},
		{"long", benchLongQuery},
		{"cte-write", "WITH x AS (INSERT INTO t VALUES (nextval('s')) RETURNING *) SELECT * FROM x"},
	} {
		b.Run(q.name, func(b *testing.B) {
			c := New(Options{CacheSize: -1})
			query := []byte(q.text)
			b.ReportAllocs()
			for b.Loop() {
				c.Classify(query)
			}
		})
	}
}

// BenchmarkClassifyParallel is many client sessions classifying at once: every goroutine on
// one text (pgbench -S, the worst case for a shared cache line), and on 1,000 texts.
func BenchmarkClassifyParallel(b *testing.B) {
	b.Run("one-text", func(b *testing.B) {
		c := New(Options{})
		query := []byte(benchQuery)
		c.Classify(query)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				c.Classify(query)
			}
		})
	})
	b.Run("1000-texts", func(b *testing.B) {
		c := New(Options{})
		queries := make([][]byte, 1000)
		for i := range queries {
			queries[i] = fmt.Appendf(nil, "SELECT * FROM t%d WHERE id = $1", i)
			c.Classify(queries[i])
		}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				c.Classify(queries[i%len(queries)])
				i++
			}
		})
	})
	b.Run("misses", func(b *testing.B) {
		// Every text new, in a small cache: parse, insert and evict on every call.
		c := New(Options{CacheSize: 1000})
		var n atomicCounter
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				c.Classify(fmt.Appendf(nil, "SELECT %d", n.next()))
			}
		})
	})
}

// BenchmarkParseCommand is what every query costs when the parser is off: the check for
// pgcat's commands.
func BenchmarkParseCommand(b *testing.B) {
	for _, q := range []string{benchQuery, "SET search_path TO x", "SET SERVER ROLE TO 'replica'"} {
		b.Run(strings.Fields(q)[0]+"-"+strings.Fields(q)[1], func(b *testing.B) {
			query := []byte(q)
			b.ReportAllocs()
			for b.Loop() {
				ParseCommand(query)
			}
		})
	}
}

type atomicCounter struct{ n atomic.Int64 }

func (c *atomicCounter) next() int64 { return c.n.Add(1) }
