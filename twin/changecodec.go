package twin

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/paulmach/orb"
	"github.com/paulmach/orb/geojson"
)

// The change log's record (twin/changelog): one Change, in the binary
// form (changebin.go) or, for what that does not write and in logs written
// before it, as JSON. The JSON record carries
// what a follower needs to install the change exactly as the leader made it
// (Twin.Install): the new state whole (version, times, cells, region, grid,
// source; coordinates at full precision, unlike the websocket wire), or
// the removed object's ID, and the telemetry sample for history. Old is not
// carried: the follower has it. Props travel as JSON, so a follower holds
// them with the types a store round trip gives (numbers as float64, lists
// as []any), as every server has after a restart.

type logChange struct {
	Seq    uint64      `json:"seq"`
	Kind   ChangeKind  `json:"k"`
	Time   time.Time   `json:"t"`
	Layer  Layer       `json:"l"`
	Name   string      `json:"n"`
	New    *logFeature `json:"new,omitempty"`
	Sample *logSample  `json:"s,omitempty"`
}

type logFeature struct {
	Geometry json.RawMessage `json:"g,omitempty"`
	Props    Props           `json:"p"`
	Version  uint64          `json:"v"`
	Updated  time.Time       `json:"u"`
	Observed time.Time       `json:"o"`
	Region   []string        `json:"r,omitempty"`
	Grid     string          `json:"grid,omitempty"`
	Cells    []uint64        `json:"c,omitempty"`
	Source   string          `json:"src,omitempty"`

	// point is the geometry when it is a finite point (isPoint), written
	// by appendChange without building Geometry first.
	point   orb.Point
	isPoint bool
}

type logSample struct {
	Time       time.Time `json:"t"`
	HasPos     bool      `json:"hp,omitempty"`
	Pos        orb.Point `json:"p"`
	HasSpeed   bool      `json:"hs,omitempty"`
	SpeedKmh   float64   `json:"sp,omitempty"`
	HasHeading bool      `json:"hh,omitempty"`
	Heading    float64   `json:"hd,omitempty"`
	Values     Readings  `json:"vals,omitzero"`
}

// MarshalChange encodes c for the change log (the binary record, or JSON
// for a change it does not write; UnmarshalChange reads both). A prop that JSON cannot
// carry (a NaN slipped past validation) is dropped with the error
// reported, never blocking the log: the change is still encoded.
func MarshalChange(c *Change) ([]byte, error) {
	return AppendChange(make([]byte, 0, 512), c)
}

// AppendChange appends c's change log record to b (MarshalChange's
// encoding): the leader writes every change of a record into one reused
// buffer instead of a fresh slice per change.
func AppendChange(b []byte, c *Change) ([]byte, error) {
	if out, ok := appendChangeBinary(b, c); ok {
		return out, nil
	}
	return appendChangeJSONRecord(b, c)
}

// appendChangeJSONRecord appends c's JSON record: what AppendChange wrote
// before the binary record, and still writes for a change the binary
// form does not (see changebin.go).
func appendChangeJSONRecord(b []byte, c *Change) ([]byte, error) {
	// The record's parts live on the stack (appendChange keeps no
	// pointer to them); only a change it cannot write itself takes the
	// slow path, which builds its own.
	var lf logFeature
	var ls logSample
	lc, hasNew, hasSample, err := fillLogChange(c, &lf, &ls)
	if err != nil {
		return nil, err
	}
	var f *logFeature
	var s *logSample
	if hasNew {
		f = &lf
	}
	if hasSample {
		s = &ls
	}
	if out, ok := appendChange(b, &lc, f, s); ok {
		return out, nil
	}
	return appendChangeJSON(b, c)
}

// fillLogChange makes c's record envelope and fills lf with its state and
// ls with its sample when it has them; the envelope does not point to them
// (the caller does, so that the fast path's parts stay on its stack).
func fillLogChange(c *Change, lf *logFeature, ls *logSample) (lc logChange, hasNew, hasSample bool, err error) {
	id := c.ID()
	lc = logChange{Seq: c.Seq, Kind: c.Kind, Time: c.Time, Layer: id.Layer, Name: id.Name}
	if c.Kind == Upsert && c.New != nil {
		f := c.New
		*lf = logFeature{Props: f.Props, Version: f.Version, Updated: f.Updated.Time(), Observed: f.Observed.Time(),
			Region: f.Region(), Grid: f.Grid(), Cells: f.Cells(), Source: f.Source()}
		if p, ok := f.Geometry.(orb.Point); ok && finite(p[0]) && finite(p[1]) {
			lf.point, lf.isPoint = p, true // written by appendChange as orb would
		} else if f.Geometry != nil {
			g, gerr := geojson.NewGeometry(f.Geometry).MarshalJSON()
			if gerr != nil {
				return lc, false, false, fmt.Errorf("twin: encode change %d geometry: %w", c.Seq, gerr)
			}
			lf.Geometry = g
		}
		hasNew = true
	}
	if s := c.Sample; s != nil {
		*ls = logSample{Time: s.Time, HasPos: s.HasPos, Pos: s.Pos, HasSpeed: s.HasSpeed, SpeedKmh: s.SpeedKmh,
			HasHeading: s.HasHeading, Heading: s.Heading, Values: s.Values}
		hasSample = true
	}
	return lc, hasNew, hasSample, nil
}

// appendChangeJSON is AppendChange through encoding/json, for what
// appendChange does not write (a non-finite number): json reports it, and
// a prop JSON cannot carry is dropped with the error returned.
func appendChangeJSON(b []byte, c *Change) ([]byte, error) {
	lf, ls := new(logFeature), new(logSample)
	lc, hasNew, hasSample, err := fillLogChange(c, lf, ls)
	if err != nil {
		return nil, err
	}
	if hasNew {
		lc.New = lf
	}
	if hasSample {
		lc.Sample = ls
	}
	if lc.New != nil && lc.New.isPoint {
		lc.New.Geometry = appendPointJSON(nil, lc.New.point)
	}
	j, err := json.Marshal(lc)
	if err == nil {
		return append(b, j...), nil
	}
	if lc.New == nil || lc.New.Props.Len() == 0 {
		return nil, fmt.Errorf("twin: encode change %d: %w", c.Seq, err)
	}
	// Keep every prop JSON can carry.
	props := make(map[string]any, lc.New.Props.Len())
	var dropped []string
	for k, v := range lc.New.Props.All() {
		if _, e := json.Marshal(v); e != nil {
			dropped = append(dropped, k)
			continue
		}
		props[k] = v
	}
	lc.New.Props = NewProps(props)
	j, err2 := json.Marshal(lc)
	if err2 != nil {
		return nil, fmt.Errorf("twin: encode change %d: %w", c.Seq, err2)
	}
	return append(b, j...), fmt.Errorf("twin: change %d: props %v dropped: %w", c.Seq, dropped, errors.Join(ErrBadData, err))
}

// UnmarshalChange decodes a change log record. The change's Old is nil
// (Install fills it in).
func UnmarshalChange(b []byte) (Change, error) {
	if len(b) > 0 && b[0] == changeBinary {
		return unmarshalChangeBinary(b)
	}
	var lc logChange
	if err := json.Unmarshal(b, &lc); err != nil {
		return Change{}, fmt.Errorf("twin: decode change: %w", err)
	}
	if _, err := ParseStoredLayer(string(lc.Layer)); err != nil {
		return Change{}, fmt.Errorf("twin: decode change %d: %w", lc.Seq, err)
	}
	id := ID{Layer: lc.Layer, Name: lc.Name}
	c := Change{Seq: lc.Seq, Kind: lc.Kind, Time: lc.Time}
	switch lc.Kind {
	case Upsert:
		if lc.New == nil {
			return Change{}, fmt.Errorf("twin: decode change %d: upsert without a state", lc.Seq)
		}
		f := &Feature{ID: id, Props: lc.New.Props, Version: lc.New.Version, Updated: StampOf(lc.New.Updated), Observed: StampOf(lc.New.Observed),
			Place: NewPlace(lc.New.Region, lc.New.Grid)}
		f.SetCells(lc.New.Cells)
		f.SetSource(lc.New.Source)
		if len(lc.New.Geometry) > 0 && string(lc.New.Geometry) != "null" {
			g, err := geojson.UnmarshalGeometry(lc.New.Geometry)
			if err != nil {
				return Change{}, fmt.Errorf("twin: decode change %d geometry: %w", lc.Seq, err)
			}
			f.Geometry = g.Geometry()
			if f.Geometry == nil {
				return Change{}, fmt.Errorf("twin: decode change %d: geometry without coordinates", lc.Seq)
			}
		}
		c.New = f
	case Remove:
		c.Old = &Feature{ID: id} // for ID(); Install replaces it
	case History:
		c.Old = &Feature{ID: id}
	default:
		return Change{}, fmt.Errorf("twin: decode change %d: unknown kind %d", lc.Seq, lc.Kind)
	}
	if s := lc.Sample; s != nil {
		c.Sample = &Sample{ID: id, Time: s.Time, HasPos: s.HasPos, Pos: s.Pos, HasSpeed: s.HasSpeed, SpeedKmh: s.SpeedKmh,
			HasHeading: s.HasHeading, Heading: s.Heading, Values: s.Values}
	}
	return c, nil
}
