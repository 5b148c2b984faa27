package frontend

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicepg/sluice/internal/pool"
)

func TestTrafficOf(t *testing.T) {
	tests := []struct {
		name                 string
		reqStart, xactStart  int64
		idle                 bool
		want                 pool.Traffic
		wantXactStartCleared bool
	}{
		{"a query inside a transaction", 100, 50, false, pool.Traffic{Queries: 1, QueryTime: 900}, false},
		{"the query that ends it", 100, 50, true, pool.Traffic{Queries: 1, QueryTime: 900, Xacts: 1, XactTime: 950}, true},
		{"a second ReadyForQuery of one flush", 0, 50, true, pool.Traffic{Queries: 1, Xacts: 1, XactTime: 950}, true},
		{"no start known", 0, 0, true, pool.Traffic{Queries: 1, Xacts: 1}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var xs atomic.Int64
			xs.Store(tt.xactStart)
			got := trafficOf(1000, tt.reqStart, tt.idle, &xs)
			if got != tt.want {
				t.Errorf("traffic %+v, want %+v", got, tt.want)
			}
			if cleared := xs.Load() == 0; cleared != tt.wantXactStartCleared && tt.xactStart != 0 {
				t.Errorf("transaction start cleared: %v, want %v", cleared, tt.wantXactStartCleared)
			}
		})
	}
	var tr traffic
	tr.sent()
	first := tr.reqStart.Load()
	time.Sleep(time.Millisecond)
	tr.sent() // a later flush of the same request cycle keeps the first start
	if first == 0 || tr.reqStart.Load() != first || tr.xactStart.Load() != first {
		t.Errorf("starts %d, %d after two flushes, want both %d", tr.reqStart.Load(), tr.xactStart.Load(), first)
	}
}
