package telemetry_test

import (
	"fmt"
	"time"

	"github.com/citytwin/citytwin/ingest/telemetry"
)

func ExampleDecode() {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	m, err := telemetry.Decode([]byte(`{"ts":"2026-03-01T19:59:30+08:00","lon":106.55,"lat":29.56,"speed_kmh":32}`), now, telemetry.Limits{})
	fmt.Println(m.TS.UTC(), m.Lon, m.Lat, m.SpeedKmh, err)

	_, err = telemetry.Decode([]byte(`{"ts":1772366340000,"lon":"NaN","lat":29.5}`), now, telemetry.Limits{})
	fmt.Println(telemetry.ReasonOf(err))
	// Output:
	// 2026-03-01 11:59:30 +0000 UTC 106.55 29.56 32 <nil>
	// not_finite
}
