package twin

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits on what an object may carry. They exist because every string the
// twin holds is written to the store: PostgreSQL refuses NUL in text and
// jsonb and invalid UTF-8 anywhere, and one such string used to fail the
// writer's whole batch again and again. Checking once here, where every
// way in (PUT, imports, incidents, rules, telemetry) passes, means no path
// can store one.
const (
	// MaxTextBytes bounds one string (a prop value, an incident's
	// description); bodies are bounded separately by the HTTP layer.
	MaxTextBytes = 64 << 10
	// MaxKeyBytes bounds a prop name (at any depth).
	MaxKeyBytes = 256
	// MaxPropsDepth bounds nesting of props (maps and lists).
	MaxPropsDepth = 32
	// MaxValues bounds the distinct telemetry readings one object holds
	// (props.values), counting the ones it already has: without it a device
	// sending new reading names grows its object, every change record of
	// it in the feed, and history without bound.
	MaxValues = 64
	// MaxValueKeyBytes bounds one reading's name.
	MaxValueKeyBytes = 64
)

// ErrBadText is wrapped by ValidText and ValidProps: a string the store
// cannot hold (NUL, invalid UTF-8) or one over the limits above. Surfaces
// answer it 400 or dead-letter the message.
var ErrBadText = errors.New("bad text")

// ErrTooManyValues is returned by ApplySample when a sample would give its
// object more than MaxValues distinct readings; nothing is applied.
var ErrTooManyValues = errors.New("too many readings")

// ValidText checks one string the twin will store: valid UTF-8, no NUL
// (U+0000), at most MaxTextBytes. what names the field for the error.
func ValidText(what, s string) error {
	if err := textProblem(s, MaxTextBytes); err != nil {
		return fmt.Errorf("%w: %s: %s", ErrBadText, what, problemText(err))
	}
	return nil
}

// textChars wraps ErrBadText when s holds NUL or invalid UTF-8.
func textChars(s string) error {
	if err := textProblem(s, len(s)); err != nil {
		return fmt.Errorf("%w: %s", ErrBadText, problemText(err))
	}
	return nil
}

// ValidKey checks a prop or reading name: ValidText, non-empty, at most max
// bytes.
func ValidKey(what, k string, max int) error {
	if k == "" {
		return fmt.Errorf("%w: %s: empty name", ErrBadText, what)
	}
	if err := textProblem(k, max); err != nil {
		return fmt.Errorf("%w: %s name %s: %s", ErrBadText, what, strconvQuote(k), problemText(err))
	}
	return nil
}

// ValidProps checks every name and string in props, at any depth (nested
// maps and lists as decoded from JSON, and the typed maps and lists the
// server writes itself), and the nesting depth. Numbers, booleans and other
// values are not strings and pass. The error names the path of the bad
// value (built only on failure: imports check millions of objects). A
// packed Props passes: only the twin and the stores pack, and only props
// they hold.
func ValidProps(props Props) error {
	if props.packed() {
		return nil
	}
	if props.overlay() {
		// The base passed when it was packed: only the edits are new.
		for k, v := range props.edits() {
			switch x := v.(type) {
			case propDeleted:
				continue
			case *listAppend:
				v = x.items
			}
			if err := keyProblem(k); err != nil {
				return fmt.Errorf("%w: properties%s", ErrBadText, under(" key "+strconvQuote(k), err).Error())
			}
			if err := validValue(v, 1); err != nil {
				return fmt.Errorf("%w: properties%s", ErrBadText, under("."+k, err).Error())
			}
		}
		return nil
	}
	if err := validValue(props.edits(), 0); err != nil {
		return fmt.Errorf("%w: properties%s", ErrBadText, err.Error())
	}
	return nil
}

// propError is a failure deep in props: the path is prepended on the way up.
type propError struct{ path, msg string }

func (e *propError) Error() string { return e.path + ": " + e.msg }

func under(key string, err error) error {
	var pe *propError
	if errors.As(err, &pe) {
		pe.path = key + pe.path
		return pe
	}
	return err
}

func validValue(v any, depth int) error {
	if depth > MaxPropsDepth {
		return &propError{msg: fmt.Sprintf("nested deeper than %d", MaxPropsDepth)}
	}
	switch v := v.(type) {
	case string:
		return textProblem(v, MaxTextBytes)
	case map[string]any:
		for k, e := range v {
			if err := keyProblem(k); err != nil {
				return under(" key "+strconvQuote(k), err)
			}
			if err := validValue(e, depth+1); err != nil {
				return under("."+k, err)
			}
		}
	case []any:
		for i, e := range v {
			if err := validValue(e, depth+1); err != nil {
				return under(fmt.Sprintf("[%d]", i), err)
			}
		}
	case []string:
		for i, e := range v {
			if err := textProblem(e, MaxTextBytes); err != nil {
				return under(fmt.Sprintf("[%d]", i), err)
			}
		}
	case map[string]string:
		for k, e := range v {
			if err := keyProblem(k); err != nil {
				return under(" key "+strconvQuote(k), err)
			}
			if err := textProblem(e, MaxTextBytes); err != nil {
				return under("."+k, err)
			}
		}
	case map[string]float64:
		for k := range v {
			if err := keyProblem(k); err != nil {
				return under(" key "+strconvQuote(k), err)
			}
		}
	}
	return nil
}

// textProblem describes what is wrong with s as a *propError, or nil.
// problemText is the message of a textProblem error.
func problemText(err error) string {
	var pe *propError
	if errors.As(err, &pe) {
		return pe.msg
	}
	return err.Error()
}

func textProblem(s string, max int) error {
	switch {
	case len(s) > max:
		return &propError{msg: fmt.Sprintf("%d bytes, at most %d", len(s), max)}
	case strings.IndexByte(s, 0) >= 0:
		return &propError{msg: "contains NUL (\\u0000)"}
	case !utf8.ValidString(s):
		return &propError{msg: "not valid UTF-8"}
	}
	return nil
}

func keyProblem(k string) error {
	if k == "" {
		return &propError{msg: "empty name"}
	}
	return textProblem(k, MaxKeyBytes)
}

// strconvQuote quotes a key for an error message, escaping NUL and bad bytes.
func strconvQuote(k string) string {
	if len(k) > 40 {
		k = k[:40]
	}
	return strconv.QuoteToASCII(k)
}

// MinTime is the earliest telemetry time the twin accepts (2000-01-01 UTC):
// a device with no clock sends year 0000 or 1970, which would sort before
// every real sample and give the store years of empty history to scan.
// The latest is the ingest's business (now plus the allowed clock skew).
var MinTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// ErrBadTime is returned by ApplySample for a sample before MinTime.
var ErrBadTime = errors.New("telemetry time out of range")

// validSample checks what ApplySample takes from outside: the time and the
// readings' names (per ValidKey with MaxValueKeyBytes, at most MaxValues).
func validSample(s *Sample) error {
	if s.Time.Before(MinTime) {
		return fmt.Errorf("%w: %s is before %s", ErrBadTime, s.Time.UTC().Format(time.RFC3339), MinTime.Format(time.RFC3339))
	}
	return validValues(s.Values)
}

func validValues(vals Readings) error {
	if n := vals.Len(); n > MaxValues {
		return fmt.Errorf("%w: %d readings in one sample, at most %d", ErrTooManyValues, n, MaxValues)
	}
	for k := range vals.All() {
		if err := ValidKey("values", k, MaxValueKeyBytes); err != nil {
			return err
		}
	}
	return nil
}
