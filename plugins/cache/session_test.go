package cache

import (
	"context"
	"testing"
	"time"

	"github.com/sluicepg/sluice/plugin"
)

// TestSessionHeldWhileItsBumpRuns: OnResult takes an ended write off the session's pending list
// and then bumps it, a Redis round trip later. In session mode the client's next query hook runs
// on another goroutine meanwhile: a read the client pipelined behind its write must still wait
// (bypass the cache), or it is answered from an entry of the generation before the write.
func TestSessionHeldWhileItsBumpRuns(t *testing.T) {
	st, _ := servingStore(t, 1<<20)
	p := &Cache{st: st}
	ss := &session{pending: []pendingWrite{{seq: 1, w: writeSet{ident: "db", oids: map[uint32]bool{7: true}}}}}
	c := &plugin.Client{Values: map[string]any{"cache": ss}}
	cl := *st.client.Load()
	ctx := context.Background()
	// Writes wait 150 ms in Redis (less than the store's 200 ms timeout: the bump succeeds).
	if err := cl.Do(ctx, cl.B().ClientPause().Timeout(150).Write().Build()).Error(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		p.OnResult(ctx, &plugin.Result{Client: c, Tag: "UPDATE 1", Done: 1, TxStatus: 'I'})
		close(done)
	}()
	time.Sleep(50 * time.Millisecond)
	ss.mu.Lock()
	held := ss.busyLocked()
	ss.mu.Unlock()
	<-done
	if _, gens, _, err := st.versions(ctx, "db", []uint32{7}, nil); err != nil || gens[0] != 1 {
		t.Fatalf("after the bump: %v %v", gens, err)
	}
	if !held {
		t.Fatal("a read of the client was let through while its write's bump was still on its way to Redis")
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.busyLocked() {
		t.Fatal("the session is still held after the bump")
	}
}
