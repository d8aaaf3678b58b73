package twin

import (
	"time"

	"github.com/paulmach/orb"
)

// Sample is one telemetry observation of a tracked object (CONTRACT §3),
// already decoded and validated. Samples are what history stores.
//
// The flags come last, together: after the fields they flag, each took 8
// B with its padding, and a Sample was 120 B, in the 128-B size class; it
// is 112 B now, in the 112-B one (Readings is a 16-B string header; a
// map pointer was 8 B). The feed holds one per telemetry change in its
// window (Change.Sample), and ingest batches hold them by value.
type Sample struct {
	ID         ID
	Time       time.Time // the telemetry's own timestamp
	Pos        orb.Point // lon, lat (WGS84); valid when HasPos
	SpeedKmh   float64   // valid when HasSpeed
	Heading    float64   // degrees clockwise from north; valid when HasHeading
	Values     Readings  // readings; the zero Readings when none
	HasPos     bool
	HasSpeed   bool
	HasHeading bool
}
