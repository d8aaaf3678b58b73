package changelog_test

import (
	"context"
	"reflect"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/paulmach/orb"

	"github.com/citytwin/citytwin/internal/natstest"
	"github.com/citytwin/citytwin/spine"
	"github.com/citytwin/citytwin/twin"
	"github.com/citytwin/citytwin/twin/changelog"
)

type member struct {
	tw      *twin.Twin
	sp      *spine.Spine
	node    *changelog.Node
	mu      sync.Mutex
	leading bool
}

func (m *member) isLeading() bool { m.mu.Lock(); defer m.mu.Unlock(); return m.leading }

func join(t *testing.T, ctx context.Context, url, name string, with ...func(*changelog.Options)) *member {
	t.Helper()
	sp, err := spine.Open(ctx, spine.Options{URL: url, Name: name, LeaseTTL: time.Second, DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sp.Close)
	m := &member{tw: twin.New(twin.Options{FeedSize: 1 << 12}), sp: sp}
	m.tw.Replicate()
	opts := changelog.Options{LeaseKey: "applier",
		Lead: func(ctx context.Context, drain func(context.Context) error) error {
			<-ctx.Done()
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			_ = drain(dctx)
			return nil
		},
		OnLeader: func(on bool) { m.mu.Lock(); m.leading = on; m.mu.Unlock() }}
	for _, w := range with {
		w(&opts)
	}
	m.node, err = changelog.New(m.tw, sp, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.node.Start(ctx, 0, 0); err != nil {
		t.Fatal(err)
	}
	return m
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestLeaderFollowerFence: the leader's changes reach the follower with
// the same seqs; a rival record in the log (a deposed leader's) makes the
// leader's next publish fail: it steps down, takes back what the log did
// not take, installs the rival record, and the twins agree again.
func TestLeaderFollowerFence(t *testing.T) {
	url := natstest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	a := join(t, ctx, url, "a")
	var wg sync.WaitGroup
	run := func(m *member) {
		wg.Add(1)
		go func() { defer wg.Done(); _ = m.node.Run(ctx) }()
	}
	run(a)
	eventually(t, "a leads", a.isLeading)
	b := join(t, ctx, url, "b")
	run(b)
	defer func() { cancel(); wg.Wait() }()

	for i := range 50 {
		if _, err := a.tw.Put(&twin.Feature{ID: twin.NewID(twin.Vehicles, "v"+strconv.Itoa(i%7)), Geometry: orb.Point{106, 29 + float64(i)/100}}); err != nil {
			t.Fatal(err)
		}
	}
	seq, err := a.node.Committed(ctx)
	if err != nil || seq != 50 {
		t.Fatalf("committed %d %v", seq, err)
	}
	if err := b.node.Reached(ctx, 50); err != nil {
		t.Fatal(err)
	}
	same := func() bool {
		if a.tw.Feed().Last() != b.tw.Feed().Last() || a.tw.Len() != b.tw.Len() {
			return false
		}
		for i := range 7 {
			id := twin.NewID(twin.Vehicles, "v"+strconv.Itoa(i))
			fa, _ := a.tw.Get(id)
			fb, _ := b.tw.Get(id)
			if fa == nil || fb == nil {
				if fa != fb {
					return false
				}
				continue
			}
			if fa.Version != fb.Version || !reflect.DeepEqual(fa.Geometry, fb.Geometry) || fa.Updated != fb.Updated {
				return false
			}
		}
		return true
	}
	if !same() {
		t.Fatal("follower differs after 50 changes")
	}
	if _, err := b.tw.Put(&twin.Feature{ID: twin.NewID(twin.Vehicles, "x")}); err == nil {
		t.Fatal("a follower took a local write")
	}

	// A rival record at seq 51 (what a deposed leader would publish).
	rival := twin.Change{Seq: 51, Kind: twin.Upsert, Time: time.Now(), New: &twin.Feature{ID: twin.NewID(twin.Vehicles, "rival"), Version: 1, Props: twin.NewProps(map[string]any{})}}
	data, _ := twin.MarshalChange(&rival)
	js, _ := jetstream.New(a.sp.Conn())
	msg := nats.NewMsg(spine.ChangeSubject)
	msg.Data = data
	_, tail, err := a.sp.ChangeLogState(ctx) // the 50 changes' last record
	if err != nil {
		t.Fatal(err)
	}
	msg.Header.Set(jetstream.ExpectedLastSeqHeader, strconv.FormatUint(tail, 10))
	if _, err := js.PublishMsg(ctx, msg); err != nil {
		t.Fatal(err)
	}
	// The leader's own change 51 is refused: it steps down and follows.
	if _, err := a.tw.Put(&twin.Feature{ID: twin.NewID(twin.Vehicles, "mine"), Geometry: orb.Point{1, 1}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the twins agree on the rival record", func() bool {
		_, ra := a.tw.Get(twin.NewID(twin.Vehicles, "rival"))
		_, rb := b.tw.Get(twin.NewID(twin.Vehicles, "rival"))
		return ra && rb && a.tw.Feed().Last() >= 51 && same()
	})
	// Whoever leads next, the log goes on without a fork.
	eventually(t, "a leader again", func() bool { return a.isLeading() || b.isLeading() })
	l := a
	if b.isLeading() {
		l = b
	}
	if _, err := l.tw.Put(&twin.Feature{ID: twin.NewID(twin.Vehicles, "after"), Geometry: orb.Point{2, 2}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the twins agree after the new term", func() bool {
		_, ok := a.tw.Get(twin.NewID(twin.Vehicles, "after"))
		_, ok2 := b.tw.Get(twin.NewID(twin.Vehicles, "after"))
		return ok && ok2 && same()
	})
}
