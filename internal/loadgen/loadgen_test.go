package loadgen

import (
	"context"
	"sync"
	"testing"
	"time"
)

func TestPaceRateAndOrder(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	var mu sync.Mutex
	last := map[int]int64{}
	owner := map[int]int{}
	n := Pace(ctx, 3, 10, 2000, func(conn, obj int, ts int64) {
		mu.Lock()
		defer mu.Unlock()
		if ts <= last[obj] {
			t.Errorf("object %d: ts %d after %d", obj, ts, last[obj])
		}
		last[obj] = ts
		if c, ok := owner[obj]; ok && c != conn {
			t.Errorf("object %d on connections %d and %d", obj, c, conn)
		}
		owner[obj] = conn
	})
	if n < 500 || n > 1100 || len(last) != 10 {
		t.Fatalf("sent %d for %d objects in 0.5 s at 2000/s", n, len(last))
	}
}
