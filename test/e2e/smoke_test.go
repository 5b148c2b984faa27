package e2e

import (
	"context"
	"testing"
)

func TestSmokeSelectThroughSluice(t *testing.T) {
	s := startSluice(t, poolConfig{})
	c := connect(t, s)
	var n int
	if err := c.QueryRow(context.Background(), "SELECT $1::int + 1", 41).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 42 {
		t.Fatalf("got %d", n)
	}
}
