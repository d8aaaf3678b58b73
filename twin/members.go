package twin

import (
	"encoding/json"
	"fmt"
)

// WithMembers marshals a feature with extra top-level members (foreign
// members in RFC 7946 terms), e.g. distance_m in nearby answers or links in
// OGC items, without copying the feature.
type WithMembers struct {
	F       *Feature
	Members map[string]any
}

// MarshalJSON writes the feature's GeoJSON with the members spliced in.
func (w WithMembers) MarshalJSON() ([]byte, error) {
	b, err := w.F.MarshalJSON()
	if err != nil {
		return nil, err
	}
	if len(w.Members) == 0 {
		return b, nil
	}
	out := b[:len(b)-1] // drop the closing brace
	for k, v := range w.Members {
		vb, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("member %s: %w", k, err)
		}
		kb, _ := json.Marshal(k)
		out = append(out, ',')
		out = append(out, kb...)
		out = append(out, ':')
		out = append(out, vb...)
	}
	return append(out, '}'), nil
}
