package twin

import (
	"time"

	"github.com/paulmach/orb"
)

// Sample is one telemetry observation of a tracked object (CONTRACT §3),
// already decoded and validated. Samples are what history stores.
type Sample struct {
	ID         ID
	Time       time.Time // the telemetry's own timestamp
	HasPos     bool
	Pos        orb.Point // lon, lat (WGS84); valid when HasPos
	HasSpeed   bool
	SpeedKmh   float64
	HasHeading bool
	Heading    float64            // degrees clockwise from north
	Values     map[string]float64 // readings; nil when none
}
