// Package telemetry decodes and validates telemetry payloads (CONTRACT §3):
// one JSON object per MQTT message or NDJSON line. The decoder is a small
// hand-written scanner rather than encoding/json, because it sits on the hot
// path of every message (BenchmarkDecode: several million decodes/s for a tracker
// payload on one core versus well under one million with reflection) and
// because it must tell NaN/Inf apart from a mere type error.
//
// Everything here is pure and safe for concurrent use.
package telemetry

import (
	"math"
	"slices"
	"strconv"
	"time"
	"unsafe"

	"github.com/citytwin/citytwin/twin"
	"github.com/paulmach/orb"
)

// Message is one decoded, validated telemetry observation. Name is the NDJSON
// "id" (MQTT callers take the name from the topic instead).
type Message struct {
	Name       string
	TS         time.Time
	HasPos     bool
	Lon, Lat   float64 // WGS84 degrees; valid when HasPos
	HasSpeed   bool
	SpeedKmh   float64 // km/h, >= 0
	HasHeading bool
	Heading    float64       // degrees clockwise from north
	Values     twin.Readings // readings; the zero Readings when none
}

// Limits bound what Decode accepts. Zero values take defaults.
type Limits struct {
	MaxBytes  int           // largest payload; default 64 KiB
	MaxFuture time.Duration // how far ts may lie ahead of now (clock skew); default 5 min
}

// Defaults for Limits.
const (
	DefaultMaxBytes  = 64 << 10
	DefaultMaxFuture = 5 * time.Minute
)

func (l Limits) withDefaults() Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	if l.MaxFuture <= 0 {
		l.MaxFuture = DefaultMaxFuture
	}
	return l
}

// maxEpochMs is 9999-12-31T23:59:59.999Z; larger epoch values are bad_ts
// rather than silently wrapping time.Time.
const maxEpochMs = 253402300799999

// maxDepth bounds nesting in skipped values (unknown fields), so a hostile
// payload cannot exhaust the stack.
const maxDepth = 64

// Decode parses and validates one payload. now is the receiver's clock, for
// the future_ts check. Unknown top-level fields are ignored (forward
// compatibility), but must still be valid JSON. Every rejection is an *Error.
func Decode(payload []byte, now time.Time, lim Limits) (Message, error) {
	lim = lim.withDefaults()
	var m Message
	if len(payload) > lim.MaxBytes {
		return m, Errorf(Oversized, "%d bytes > %d", len(payload), lim.MaxBytes)
	}
	s := scanner{b: payload}
	var hasLon, hasLat, hasTS bool
	s.ws()
	if !s.consume('{') {
		return m, s.syntax("want a JSON object")
	}
	s.ws()
	if !s.consume('}') {
		for {
			s.ws()
			key, ok := s.rawString()
			if !ok {
				return m, s.syntax("want a field name")
			}
			s.ws()
			if !s.consume(':') {
				return m, s.syntax("want ':'")
			}
			s.ws()
			var err *Error
			switch string(key) {
			case "ts":
				hasTS, err = s.ts(&m.TS)
			case "lon":
				hasLon, err = s.number("lon", &m.Lon)
			case "lat":
				hasLat, err = s.number("lat", &m.Lat)
			case "speed_kmh":
				m.HasSpeed, err = s.number("speed_kmh", &m.SpeedKmh)
			case "heading":
				m.HasHeading, err = s.number("heading", &m.Heading)
			case "values":
				err = s.values(&m.Values)
			case "id":
				err = s.name(&m.Name)
			default:
				err = s.skip(0)
			}
			if err != nil {
				return Message{}, err
			}
			s.ws()
			if s.consume(',') {
				continue
			}
			if s.consume('}') {
				break
			}
			return Message{}, s.syntax("want ',' or '}'")
		}
	}
	s.ws()
	if s.i != len(s.b) {
		return Message{}, s.syntax("trailing data after the object")
	}
	if !hasTS {
		return Message{}, &Error{Reason: MissingTS, Detail: "no ts"}
	}
	// Timestamps are kept to the microsecond, the precision of PostGIS's
	// timestamptz, so that "same device and ts" means the same thing before
	// and after a restart from either store.
	m.TS = m.TS.Truncate(time.Microsecond)
	if m.TS.Before(twin.MinTime) {
		return Message{}, Errorf(BadTS, "ts %s is before %s (a device without a clock?)", m.TS.Format(time.RFC3339Nano), twin.MinTime.Format(time.RFC3339))
	}
	if m.TS.After(now.Add(lim.MaxFuture)) {
		return Message{}, Errorf(FutureTS, "ts %s is more than %s ahead of %s", m.TS.Format(time.RFC3339Nano), lim.MaxFuture, now.UTC().Format(time.RFC3339))
	}
	if hasLon != hasLat {
		return Message{}, &Error{Reason: BadField, Detail: "lon and lat must come together"}
	}
	if hasLon {
		if m.Lon < -180 || m.Lon > 180 || m.Lat < -90 || m.Lat > 90 {
			return Message{}, Errorf(OutOfRange, "lon %g lat %g outside [-180,180]x[-90,90]", m.Lon, m.Lat)
		}
		m.HasPos = true
	}
	if m.HasSpeed && m.SpeedKmh < 0 {
		return Message{}, Errorf(OutOfRange, "speed_kmh %g is negative", m.SpeedKmh)
	}
	return m, nil
}

// ToSample turns a decoded message into the twin's sample for object id.
// Readings are immutable values: the sample shares the message's.
func ToSample(id twin.ID, m Message) twin.Sample {
	s := twin.Sample{ID: id, Time: m.TS, HasPos: m.HasPos, HasSpeed: m.HasSpeed, SpeedKmh: m.SpeedKmh,
		HasHeading: m.HasHeading, Heading: m.Heading, Values: m.Values}
	if m.HasPos {
		s.Pos = orb.Point{m.Lon, m.Lat}
	}
	return s
}

// scanner walks a JSON document by hand. Methods return *Error (never a
// wrapped error) so Decode can return them as they are.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) syntax(msg string) *Error {
	return Errorf(BadJSON, "offset %d: %s", s.i, msg)
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) consume(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

func (s *scanner) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// literal consumes null/true/false.
func (s *scanner) literal(lit string) bool {
	if len(s.b)-s.i >= len(lit) && string(s.b[s.i:s.i+len(lit)]) == lit {
		s.i += len(lit)
		return true
	}
	return false
}

// rawString consumes a string and returns its bytes between the quotes,
// still escaped. It checks escapes and rejects control characters.
func (s *scanner) rawString() ([]byte, bool) {
	if !s.consume('"') {
		return nil, false
	}
	start := s.i
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			r := s.b[start:s.i]
			s.i++
			return r, true
		case c == '\\':
			s.i++
			if s.i >= len(s.b) {
				return nil, false
			}
			switch s.b[s.i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i++
			case 'u':
				if len(s.b)-s.i < 5 {
					return nil, false
				}
				for _, h := range s.b[s.i+1 : s.i+5] {
					if !isHex(h) {
						return nil, false
					}
				}
				s.i += 5
			default:
				return nil, false
			}
		case c < 0x20:
			return nil, false
		default:
			s.i++
		}
	}
	return nil, false
}

// str consumes a string and returns it unescaped. The fast path (no
// escapes) costs one allocation for the Go string.
func (s *scanner) str() (string, bool) {
	raw, ok := s.rawString()
	if !ok {
		return "", false
	}
	for _, c := range raw {
		if c == '\\' {
			return unescape(raw)
		}
	}
	return string(raw), true
}

// key is str for a name that is only looked at and copied (a reading's,
// which Readings.Set copies into its bytes): without escapes it is the
// payload's bytes, not a copy of them, so it must not be kept. The errors
// that name it format it into their own text.
func (s *scanner) key() (string, bool) {
	raw, ok := s.rawString()
	if !ok {
		return "", false
	}
	if slices.Contains(raw, '\\') {
		return unescape(raw)
	}
	return unsafe.String(unsafe.SliceData(raw), len(raw)), true
}

// unescape decodes a raw JSON string body with escapes; rare, so it leans
// on strconv.Unquote after mapping the JSON-only escape "\/".
func unescape(raw []byte) (string, bool) {
	buf := make([]byte, 0, len(raw)+2)
	buf = append(buf, '"')
	for i := 0; i < len(raw); i++ {
		if raw[i] == '\\' && i+1 < len(raw) {
			if raw[i+1] == '/' {
				buf = append(buf, '/')
				i++
				continue
			}
			buf = append(buf, raw[i], raw[i+1])
			i++
			continue
		}
		buf = append(buf, raw[i])
	}
	buf = append(buf, '"')
	out, err := strconv.Unquote(string(buf))
	if err != nil {
		// Lone surrogates (\ud800) are legal JSON but not Go escapes.
		return "", false
	}
	return out, true
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// rawNumber consumes a JSON number per RFC 8259 and returns its text.
func (s *scanner) rawNumber() ([]byte, bool) {
	start := s.i
	s.consume('-')
	switch {
	case s.consume('0'):
	case s.i < len(s.b) && s.b[s.i] >= '1' && s.b[s.i] <= '9':
		s.digits()
	default:
		return nil, false
	}
	if s.consume('.') {
		if s.digits() == 0 {
			return nil, false
		}
	}
	if c := s.peek(); c == 'e' || c == 'E' {
		s.i++
		if c := s.peek(); c == '+' || c == '-' {
			s.i++
		}
		if s.digits() == 0 {
			return nil, false
		}
	}
	return s.b[start:s.i], true
}

func (s *scanner) digits() int {
	n := 0
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
		n++
	}
	return n
}

// parseFloat converts a validated JSON number; overflow to ±Inf is not_finite.
func parseFloat(field string, raw []byte) (float64, *Error) {
	if v, ok := fastFloat(raw); ok {
		return v, nil
	}
	v, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
		if math.IsInf(v, 0) {
			return 0, Errorf(NotFinite, "%s %s overflows to infinity", field, raw)
		}
		return 0, Errorf(BadField, "%s: %v", field, err)
	}
	return v, nil
}

// pow10 holds exact powers of ten for fastFloat.
var pow10 = [...]float64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15}

// fastFloat handles the common "-ddd.ddddd" form exactly (Clinger's fast
// path: an integer mantissa below 2^53 divided by an exact power of ten is
// correctly rounded). Anything else falls back to strconv.
func fastFloat(raw []byte) (float64, bool) {
	i, neg := 0, false
	if len(raw) > 0 && raw[0] == '-' {
		neg = true
		i++
	}
	var mant uint64
	nd, frac := 0, -1
	for ; i < len(raw); i++ {
		c := raw[i]
		if c == '.' {
			if frac >= 0 {
				return 0, false
			}
			frac = 0
			continue
		}
		if c < '0' || c > '9' {
			return 0, false // exponent: slow path
		}
		mant = mant*10 + uint64(c-'0')
		nd++
		if frac >= 0 {
			frac++
		}
		if nd > 15 {
			return 0, false
		}
	}
	if nd == 0 || frac > 15 {
		return 0, false
	}
	v := float64(mant)
	if frac > 0 {
		v /= pow10[frac]
	}
	if neg {
		v = -v
	}
	return v, true
}

// number reads a numeric field: a JSON number (null = absent). Strings that
// spell NaN or infinity are not_finite; other strings and types are bad_field.
func (s *scanner) number(field string, dst *float64) (bool, *Error) {
	switch c := s.peek(); {
	case c == 'n':
		if s.literal("null") {
			return false, nil
		}
		return false, s.syntax("bad literal")
	case c == '"':
		str, ok := s.str()
		if !ok {
			return false, s.syntax("bad string")
		}
		if isNonFiniteWord(str) {
			return false, Errorf(NotFinite, "%s is %q", field, str)
		}
		return false, Errorf(BadField, "%s must be a number, got a string", field)
	case c == '-' || (c >= '0' && c <= '9'):
		raw, ok := s.rawNumber()
		if !ok {
			return false, s.syntax("bad number")
		}
		v, err := parseFloat(field, raw)
		if err != nil {
			return false, err
		}
		*dst = v
		return true, nil
	case c == 'N' || c == 'I':
		// Not JSON, but what some encoders write for NaN/Infinity.
		if s.literal("NaN") || s.literal("Infinity") {
			return false, Errorf(NotFinite, "%s is a bare NaN/Infinity", field)
		}
		return false, s.syntax("bad value")
	default:
		if err := s.skip(0); err != nil {
			return false, err
		}
		return false, Errorf(BadField, "%s must be a number", field)
	}
}

// isNonFiniteWord reports strings that mean NaN or ±infinity.
func isNonFiniteWord(s string) bool {
	if len(s) > 0 && (s[0] == '+' || s[0] == '-') {
		s = s[1:]
	}
	switch len(s) {
	case 3, 8:
	default:
		return false
	}
	lower := make([]byte, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		lower[i] = c
	}
	switch string(lower) {
	case "nan", "inf", "infinity":
		return true
	}
	return false
}

// ts reads the timestamp: an RFC 3339 string or epoch milliseconds.
func (s *scanner) ts(dst *time.Time) (bool, *Error) {
	switch c := s.peek(); {
	case c == 'n':
		if s.literal("null") {
			return false, nil
		}
		return false, s.syntax("bad literal")
	case c == '"':
		str, ok := s.str()
		if !ok {
			return false, s.syntax("bad string")
		}
		t, err := time.Parse(time.RFC3339Nano, str)
		if err != nil {
			return false, Errorf(BadTS, "ts %q is not RFC 3339", str)
		}
		*dst = t
		return true, nil
	case c == '-' || (c >= '0' && c <= '9'):
		raw, ok := s.rawNumber()
		if !ok {
			return false, s.syntax("bad number")
		}
		var ms int64
		if v, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
			ms = v
		} else {
			f, err := strconv.ParseFloat(string(raw), 64)
			if err != nil || math.IsInf(f, 0) || f != math.Trunc(f) || math.Abs(f) > maxEpochMs {
				return false, Errorf(BadTS, "ts %s is not integer epoch milliseconds", raw)
			}
			ms = int64(f)
		}
		if ms < 0 || ms > maxEpochMs {
			return false, Errorf(BadTS, "ts %d epoch ms out of range", ms)
		}
		*dst = time.UnixMilli(ms).UTC()
		return true, nil
	default:
		if err := s.skip(0); err != nil {
			return false, err
		}
		return false, &Error{Reason: BadTS, Detail: "ts must be an RFC 3339 string or epoch ms"}
	}
}

// name reads the NDJSON "id" (the object's name without its layer).
func (s *scanner) name(dst *string) *Error {
	if s.peek() != '"' {
		if err := s.skip(0); err != nil {
			return err
		}
		return &Error{Reason: BadField, Detail: "id must be a string"}
	}
	str, ok := s.str()
	if !ok {
		return s.syntax("bad string")
	}
	if err := twin.ValidText("id", str); err != nil {
		return &Error{Reason: BadText, Detail: err.Error()}
	}
	*dst = str
	return nil
}

// values reads {"name": number, ...}; null readings are skipped. Names
// must be valid text of at most twin.MaxValueKeyBytes (bad_text), and at
// most twin.MaxValues distinct names are read (too_many_values): the
// decoder stops there, so a hostile message costs no more memory than a
// full one. The readings are packed as they come (a twin.ReadingsBuilder
// on the stack, no map; a name read without a copy of its own), then
// copied into dst at once.
func (s *scanner) values(dst *twin.Readings) *Error {
	if s.literal("null") {
		return nil
	}
	if !s.consume('{') {
		if err := s.skip(0); err != nil {
			return err
		}
		return &Error{Reason: BadField, Detail: "values must be an object"}
	}
	s.ws()
	if s.consume('}') {
		return nil
	}
	var rb twin.ReadingsBuilder
	rb.Reset(*dst) // a second "values" adds to the first, as into one map
	for {
		s.ws()
		k, ok := s.key()
		if !ok {
			return s.syntax("want a reading name")
		}
		if err := twin.ValidKey("values", k, twin.MaxValueKeyBytes); err != nil {
			return &Error{Reason: BadText, Detail: err.Error()}
		}
		s.ws()
		if !s.consume(':') {
			return s.syntax("want ':'")
		}
		s.ws()
		var v float64
		has, err := s.number(k, &v)
		if err != nil {
			err.Detail = "values." + err.Detail // field name built only on failure
			return err
		}
		if has {
			if rb.Len() >= twin.MaxValues {
				if _, dup := rb.Get(k); !dup {
					return Errorf(TooManyValues, "more than %d readings in one message", twin.MaxValues)
				}
			}
			rb.Set(k, v)
		}
		s.ws()
		if s.consume(',') {
			continue
		}
		if s.consume('}') {
			*dst = rb.Readings()
			return nil
		}
		return s.syntax("want ',' or '}' in values")
	}
}

// skip consumes any JSON value, checking its syntax.
func (s *scanner) skip(depth int) *Error {
	if depth > maxDepth {
		return s.syntax("nesting too deep")
	}
	switch c := s.peek(); {
	case c == '"':
		if _, ok := s.rawString(); !ok {
			return s.syntax("bad string")
		}
	case c == '-' || (c >= '0' && c <= '9'):
		if _, ok := s.rawNumber(); !ok {
			return s.syntax("bad number")
		}
	case c == 't':
		if !s.literal("true") {
			return s.syntax("bad literal")
		}
	case c == 'f':
		if !s.literal("false") {
			return s.syntax("bad literal")
		}
	case c == 'n':
		if !s.literal("null") {
			return s.syntax("bad literal")
		}
	case c == '[':
		s.i++
		s.ws()
		if s.consume(']') {
			return nil
		}
		for {
			s.ws()
			if err := s.skip(depth + 1); err != nil {
				return err
			}
			s.ws()
			if s.consume(',') {
				continue
			}
			if s.consume(']') {
				return nil
			}
			return s.syntax("want ',' or ']'")
		}
	case c == '{':
		s.i++
		s.ws()
		if s.consume('}') {
			return nil
		}
		for {
			s.ws()
			if _, ok := s.rawString(); !ok {
				return s.syntax("want a field name")
			}
			s.ws()
			if !s.consume(':') {
				return s.syntax("want ':'")
			}
			s.ws()
			if err := s.skip(depth + 1); err != nil {
				return err
			}
			s.ws()
			if s.consume(',') {
				continue
			}
			if s.consume('}') {
				return nil
			}
			return s.syntax("want ',' or '}'")
		}
	default:
		return s.syntax("want a value")
	}
	return nil
}
