package cache

import (
	"testing"
	"time"
)

func TestChurnPausesTablesWrittenFasterThanRead(t *testing.T) {
	const sec = int64(time.Second)
	oids := []uint32{7}
	tests := []struct {
		name                string
		hits, fills, writes int
		paused              bool
	}{
		{"entries read again", 900, 100, 50, false},
		{"cold cache, no writes", 0, 5000, 0, false},
		{"few writes", 0, 5000, churnMinWrites - 1, false},
		{"few fills", 0, churnMinFills - 1, 100, false},
		{"every read misses", 2, 5000, 200, true},
		{"half the reads hit", 1000, 1000, 200, false},
		{"a third hit", 1000, 2001, 200, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c churn
			now := int64(1000) * sec
			c.table("db", 7, now) // the window begins
			for range tt.hits {
				c.read("db", oids, true, now)
			}
			for range tt.fills {
				c.read("db", oids, false, now)
			}
			for range tt.writes {
				c.wrote("db", oids, now)
			}
			end := now + sec // the next event ends the window
			c.read("db", []uint32{8}, true, end)
			c.table("db", 7, end).roll(end)
			if got := c.paused("db", oids, end+1); got != tt.paused {
				t.Fatalf("paused = %v, want %v", got, tt.paused)
			}
			if c.paused("db", []uint32{8}, end+1) || c.paused("other", oids, end+1) {
				t.Fatal("another table is paused")
			}
		})
	}
}

func TestChurnPauseDoublesWhileTheTableStillChurns(t *testing.T) {
	const sec = int64(time.Second)
	var c churn
	oids := []uint32{1}
	now := int64(0)
	c.table("db", 1, now)
	var pauses []time.Duration
	for range 6 {
		for range 100 {
			c.read("db", oids, false, now)
			c.wrote("db", oids, now)
		}
		now += sec
		c.wrote("db", oids, now) // ends the window: a pause begins at now
		tc := c.table("db", 1, now)
		pauses = append(pauses, time.Duration(tc.until.Load()-now))
		now = tc.until.Load() // the pause is over; the next window begins
	}
	want := []time.Duration{5 * time.Second, 10 * time.Second, 20 * time.Second, 40 * time.Second, time.Minute, time.Minute}
	for i := range want {
		if pauses[i] != want[i] {
			t.Fatalf("pauses %v, want %v", pauses, want)
		}
	}
	// A window whose entries are read again ends the strikes.
	for range 100 {
		c.read("db", oids, true, now)
		c.wrote("db", oids, now)
	}
	now += sec
	c.wrote("db", oids, now)
	if c.paused("db", oids, now+1) {
		t.Fatal("paused after a window of hits")
	}
	if n := c.table("db", 1, now).strikes.Load(); n != 0 {
		t.Fatalf("strikes %d after a good window", n)
	}
}
