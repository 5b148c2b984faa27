package backend

import "container/list"

// StatementCache is the LRU set of statement names prepared on one server. It holds names only:
// the client side keeps the text needed to prepare a statement again.
type StatementCache struct {
	cap   int
	ll    *list.List
	items map[string]*list.Element
}

// NewStatementCache returns an empty cache holding at most capacity names.
func NewStatementCache(capacity int) *StatementCache {
	return &StatementCache{cap: capacity, ll: list.New(), items: make(map[string]*list.Element)}
}

// Has reports whether name is prepared, and marks it recently used.
func (c *StatementCache) Has(name string) bool {
	e, ok := c.items[name]
	if ok {
		c.ll.MoveToFront(e)
	}
	return ok
}

// Add records name as prepared. It returns the name that had to be evicted to make room, which
// the caller must close on the server, or "".
func (c *StatementCache) Add(name string) (evicted string) {
	if e, ok := c.items[name]; ok {
		c.ll.MoveToFront(e)
		return ""
	}
	c.items[name] = c.ll.PushFront(name)
	if c.ll.Len() > c.cap {
		last := c.ll.Back()
		c.ll.Remove(last)
		evicted = last.Value.(string)
		delete(c.items, evicted)
	}
	return evicted
}

// Remove forgets name.
func (c *StatementCache) Remove(name string) {
	if e, ok := c.items[name]; ok {
		c.ll.Remove(e)
		delete(c.items, name)
	}
}

// Clear forgets everything, as after DISCARD ALL.
func (c *StatementCache) Clear() {
	c.ll.Init()
	clear(c.items)
}

// Len returns the number of prepared statements.
func (c *StatementCache) Len() int { return c.ll.Len() }
