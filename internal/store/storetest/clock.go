package storetest

import (
	"sync"
	"testing"
	"time"
)

// Clock is a manual clock for stores that take an injected clock. It only
// moves when Advance is called. It is safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a Clock reading start.
func NewClock(start time.Time) *Clock {
	return &Clock{now: start}
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Clocks hands out one Clock per test, so that a Harness can give the
// stores of each test their own clock and Advance the right one. The zero
// value is ready to use and safe for concurrent use.
type Clocks struct {
	mu sync.Mutex
	m  map[*testing.T]*Clock
}

// For returns t's Clock, creating it at the current real time on first
// use; it is forgotten when t ends.
func (c *Clocks) For(t *testing.T) *Clock {
	c.mu.Lock()
	defer c.mu.Unlock()
	if clk, ok := c.m[t]; ok {
		return clk
	}
	if c.m == nil {
		c.m = make(map[*testing.T]*Clock)
	}
	clk := NewClock(time.Now())
	c.m[t] = clk
	t.Cleanup(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		delete(c.m, t)
	})
	return clk
}
