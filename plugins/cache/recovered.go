package cache

import (
	"fmt"
	"runtime/debug"
)

// panicError is a panic in a replication session (a bug, or WAL its decoder cannot take), turned
// into the session's error: the listener restarts as after any failure instead of ending the
// process, and entries are not served until a consumer is caught up again.
type panicError struct {
	val   any
	stack []byte
}

func (e *panicError) Error() string {
	return fmt.Sprintf("internal error (please report this with the stack): %v\n%s", e.val, e.stack)
}

// recovered runs f and returns its error, or a *panicError when it panicked.
func recovered(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &panicError{val: r, stack: debug.Stack()}
		}
	}()
	return f()
}
