package service

import (
	"fmt"
	"testing"
)

func TestStreamCacheEvictsTheLeastRecentlyUsed(t *testing.T) {
	c := newStreamCache(100)
	for i := 0; i < 100; i++ {
		c.entry(fmt.Sprint(i))
	}
	c.entry("0") // used again: now the most recent
	c.entry("new")
	if len(c.entries) != 91 {
		t.Fatalf("%d entries after eviction, want 91 (100 - 10 + 1)", len(c.entries))
	}
	for _, k := range []string{"0", "new", "99", "50"} {
		if _, ok := c.entries[k]; !ok {
			t.Errorf("entry %s evicted", k)
		}
	}
	for i := 1; i <= 10; i++ {
		if _, ok := c.entries[fmt.Sprint(i)]; ok {
			t.Errorf("entry %d kept, though among the least recently used", i)
		}
	}
}
