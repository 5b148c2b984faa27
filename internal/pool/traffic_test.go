package pool

import (
	"testing"
	"time"
)

func TestAccountAndAverages(t *testing.T) {
	p := &Pool{}
	if a := p.Averages(); a != (Averages{}) {
		t.Fatalf("averages before any period: %+v", a)
	}
	for i := 0; i < 30; i++ {
		p.Account(Traffic{Queries: 1, QueryTime: 2 * time.Millisecond, BytesSent: 100, BytesRecv: 1000})
	}
	for i := 0; i < 10; i++ {
		p.Account(Traffic{Queries: 1, Xacts: 1, XactTime: 10 * time.Millisecond, Errors: 1})
	}
	want := Traffic{Queries: 40, Xacts: 10, Errors: 10, QueryTime: 60 * time.Millisecond,
		XactTime: 100 * time.Millisecond, BytesSent: 3000, BytesRecv: 30000}
	if got := p.Traffic(); got != want {
		t.Fatalf("traffic %+v, want %+v", got, want)
	}
	if a := p.Averages(); a != (Averages{}) {
		t.Fatalf("averages inside the first period: %+v", a)
	}
	// A period of 20 s has passed since the totals were zero.
	p.avg.since = time.Now().Add(-20 * time.Second)
	p.avg.start = Traffic{}
	a := p.Averages()
	if a.Queries < 1.9 || a.Queries > 2.0 || a.Xacts < 0.49 || a.Xacts > 0.5 || a.BytesRecv < 1490 || a.BytesRecv > 1500 {
		t.Errorf("rates %+v, want about 2 queries, 0.5 transactions and 1500 bytes received per second", a)
	}
	if a.QueryTime != 1500*time.Microsecond || a.XactTime != 10*time.Millisecond || a.WaitTime != 0 {
		t.Errorf("mean times %+v, want 1.5 ms per query, 10 ms per transaction, no waits", a)
	}
	// The next period starts from these totals: nothing happened in it.
	p.avg.since = time.Now().Add(-20 * time.Second)
	if a := p.Averages(); a.Queries != 0 || a.QueryTime != 0 {
		t.Errorf("an empty period: %+v", a)
	}
}
