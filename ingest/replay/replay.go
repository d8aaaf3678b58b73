package replay

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/citytwin/citytwin/internal/clock"
	"github.com/citytwin/citytwin/twin"
)

// Publisher sends one telemetry payload. ingest/mqttin's Ingest fits via
// PublisherFunc; tests record.
type Publisher interface {
	Publish(ctx context.Context, topic string, payload []byte) error
}

// PublisherFunc adapts a function to Publisher.
type PublisherFunc func(ctx context.Context, topic string, payload []byte) error

// Publish calls f.
func (f PublisherFunc) Publish(ctx context.Context, topic string, payload []byte) error {
	return f(ctx, topic, payload)
}

// Options configure Replay. Zero values take defaults.
type Options struct {
	// Speed scales time: 20 replays twenty times faster than real time
	// (default 20). +Inf publishes as fast as the publisher takes it.
	Speed float64
	// As is the vehicle kind the replayed objects are registered with (e.g.
	// "muck_truck"); when set and Register is non-nil, Replay registers each
	// distinct id as vehicles/{id} (RegisterFeature) before publishing.
	As       string
	Register func(ctx context.Context, f *twin.Feature) error
	// Clock and Sleep pace the replay; tests inject fakes so nothing really
	// sleeps. Default: wall clock and a context-aware timer.
	Clock clock.Clock
	Sleep func(ctx context.Context, d time.Duration) error
}

// DefaultSpeed is Options.Speed's default.
const DefaultSpeed = 20

// RegisterFeature is the object a replayed trace id becomes: vehicles/{id}
// with the given kind and the id as plate, no geometry until telemetry
// places it.
func RegisterFeature(id, kind string) *twin.Feature {
	return &twin.Feature{ID: twin.NewID(twin.Vehicles, id), Props: twin.NewProps(map[string]any{"kind": kind, "plate": id})}
}

// Topic is the telemetry topic for a name (CONTRACT §3).
func Topic(name string) string { return "twin/telemetry/" + name }

// Payload renders a row as a CONTRACT §3 telemetry payload (ts RFC 3339 UTC).
func Payload(r Row) []byte {
	b := make([]byte, 0, 96)
	b = append(b, `{"ts":"`...)
	b = r.Time.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","lon":`...)
	b = strconv.AppendFloat(b, r.Lon, 'f', -1, 64)
	b = append(b, `,"lat":`...)
	b = strconv.AppendFloat(b, r.Lat, 'f', -1, 64)
	b = append(b, '}')
	return b
}

// Replay publishes rows to twin/telemetry/{id} in the given order. Before
// each row it waits (row time - previous row time) / Speed; a negative delta
// (disorder in the file) does not wait. Waits are scheduled against the start
// time, so publish latency does not accumulate as drift. It returns ctx's
// error when cancelled, or the first publish error.
func Replay(ctx context.Context, rows []Row, pub Publisher, opts Options) error {
	if opts.Speed <= 0 || math.IsNaN(opts.Speed) {
		opts.Speed = DefaultSpeed
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Sleep == nil {
		opts.Sleep = sleep
	}
	if opts.As != "" && opts.Register != nil {
		seen := map[string]bool{}
		for _, r := range rows {
			if seen[r.ID] {
				continue
			}
			seen[r.ID] = true
			if err := opts.Register(ctx, RegisterFeature(r.ID, opts.As)); err != nil {
				return fmt.Errorf("replay: register %s: %w", r.ID, err)
			}
		}
	}
	start := opts.Clock.Now()
	var virtual time.Duration // scaled time elapsed in the replay so far
	for i, r := range rows {
		if i > 0 {
			if d := r.Time.Sub(rows[i-1].Time); d > 0 && !math.IsInf(opts.Speed, 1) {
				virtual += time.Duration(float64(d) / opts.Speed)
				if wait := start.Add(virtual).Sub(opts.Clock.Now()); wait > 0 {
					if err := opts.Sleep(ctx, wait); err != nil {
						return err
					}
				}
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := pub.Publish(ctx, Topic(r.ID), Payload(r)); err != nil {
			return fmt.Errorf("replay: publish line %d: %w", r.Line, err)
		}
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

var _ Publisher = PublisherFunc(nil)
