package frontend

import "testing"

// A queue that never empties, with as many entries pushed as popped, must not grow with the
// number of entries it ever held.
func TestQueueNeverEmptyStaysSmall(t *testing.T) {
	var q queue
	for i := 0; i < 100; i++ {
		q.push(entry{kind: kQuery})
	}
	for i := 0; i < 1_000_000; i++ {
		q.push(entry{kind: kSync, copyGen: uint64(i)})
		if e := q.pop(); i >= 100 && e.copyGen != uint64(i-100) {
			t.Fatalf("pop %d: got entry %d, want %d (FIFO order)", i, e.copyGen, i-100)
		}
	}
	if q.len() != 100 {
		t.Fatalf("len %d, want 100", q.len())
	}
	if c := cap(q.e); c > 1024 {
		t.Fatalf("the queue's array holds %d entries for 100 outstanding", c)
	}
}

// A burst of pipelined requests grows the queue; once it is answered, the queue gives the array
// back, so an idle client does not keep the memory of its largest burst.
func TestQueueGivesBackABurst(t *testing.T) {
	for _, end := range []string{"popped", "reset"} {
		var q queue
		for i := 0; i < 4096; i++ {
			q.push(entry{kind: kSync})
		}
		if end == "reset" {
			q.reset()
		} else {
			for !q.empty() {
				q.pop()
			}
		}
		if c := cap(q.e); c > keptQueueCap {
			t.Errorf("%s: an empty queue keeps room for %d entries", end, c)
		}
		q.push(entry{kind: kQuery})
		if q.len() != 1 || q.head().kind != kQuery {
			t.Errorf("%s: the queue does not work after giving back its array", end)
		}
	}
}

func TestQueueDropSyncs(t *testing.T) {
	var q queue
	q.push(entry{kind: kExecute, copyGen: 3})
	q.push(entry{kind: kSync, copyGen: 3})
	q.push(entry{kind: kSync, copyGen: 4})
	q.push(entry{kind: kQuery, copyGen: 4})
	q.dropSyncs(3)
	var kinds []entryKind
	for !q.empty() {
		e := q.pop()
		kinds = append(kinds, e.kind)
		if e.kind == kSync && e.copyGen != 4 {
			t.Fatalf("a Sync of generation %d was kept", e.copyGen)
		}
	}
	if len(kinds) != 3 || kinds[0] != kExecute || kinds[1] != kSync || kinds[2] != kQuery {
		t.Fatalf("left %v", kinds)
	}
}

// The count of entries that may drop every statement follows pushes, pops and a reset.
func TestQueueHoldsDropAll(t *testing.T) {
	var q queue
	q.push(entry{kind: kParse})
	q.push(entry{kind: kQuery, dropsAll: true})
	q.push(entry{kind: kSync})
	if !q.holdsDropAll() {
		t.Fatal("a queued DEALLOCATE ALL is not seen")
	}
	q.pop()
	q.pop()
	if q.holdsDropAll() {
		t.Fatal("a DEALLOCATE ALL answered is still seen")
	}
	q.push(entry{kind: kBind, dropsAll: true})
	q.reset()
	if q.holdsDropAll() {
		t.Fatal("a reset queue still holds a DEALLOCATE ALL")
	}
}

// holdsExecute sees an Execute of the current COPY count while one is queued, whatever came
// after it, and none once it is answered or from an earlier count.
func TestQueueHoldsExecute(t *testing.T) {
	var q queue
	if q.holdsExecute(0) {
		t.Fatal("an empty queue holds an Execute")
	}
	q.push(entry{kind: kBind})
	q.push(entry{kind: kExecute, copyGen: 0})
	q.push(entry{kind: kSync, copyGen: 0})
	q.push(entry{kind: kExecute, copyGen: 1})
	q.push(entry{kind: kParse})
	if !q.holdsExecute(1) {
		t.Fatal("the queued Execute of count 1 is not seen")
	}
	if q.holdsExecute(2) {
		t.Fatal("an Execute of count 2 is seen; none was sent")
	}
	for range 3 {
		q.pop()
	}
	if !q.holdsExecute(1) {
		t.Fatal("the Execute of count 1 is lost when an earlier one is answered")
	}
	q.pop()
	if q.holdsExecute(1) {
		t.Fatal("an answered Execute is still seen")
	}
	q.push(entry{kind: kExecute, copyGen: 3})
	q.reset()
	if q.holdsExecute(3) {
		t.Fatal("a reset queue still holds an Execute")
	}
}

// Only a Close of the unnamed statement or a Query after the first Sync (which an error before
// that Sync does not skip) counts as dropping the unnamed statement again.
func TestQueueDropsUnnamedAfterSync(t *testing.T) {
	var q queue
	q.push(entry{kind: kDescribe})
	q.push(entry{kind: kClose, dropsUnnamed: true})
	q.push(entry{kind: kClose, dropsUnnamed: true})
	if q.dropsUnnamedAfterSync() {
		t.Fatal("Closes before any Sync count")
	}
	q.push(entry{kind: kSync})
	q.push(entry{kind: kParse})
	if q.dropsUnnamedAfterSync() {
		t.Fatal("a Parse after the Sync counts")
	}
	q.push(entry{kind: kQuery})
	if !q.dropsUnnamedAfterSync() {
		t.Fatal("a Query after the Sync does not count")
	}
}
