package httpin

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"
)

// encodeStdlib is what the handler wrote before appendJSON: the reference.
func encodeStdlib(r *TelemetryResponse) []byte {
	var buf bytes.Buffer
	_ = json.NewEncoder(&buf).Encode(r)
	return buf.Bytes()
}

// TestTelemetryResponseMatchesEncoder: the hand encoder writes what
// encoding/json writes, on random results (seed printed).
func TestTelemetryResponseMatchesEncoder(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	pick := []string{"", "v1", "applied", "error", "a<b>&c", "\x00\x1f\"\\", "\xff\xfe", "渝A·12345", "\u2028\u2029", "bad_json"}
	for range 2000 {
		r := TelemetryResponse{Results: []LineResult{}}
		for range rng.IntN(5) {
			r.Results = append(r.Results, LineResult{Line: rng.IntN(1 << 20), ID: pick[rng.IntN(len(pick))],
				Outcome: pick[rng.IntN(len(pick))], Reason: pick[rng.IntN(len(pick))], Error: pick[rng.IntN(len(pick))]})
		}
		if got, want := r.appendJSON(nil), encodeStdlib(&r); !bytes.Equal(got, want) {
			t.Fatalf("%+v:\n got %q\nwant %q", r, got, want)
		}
	}
}

func FuzzTelemetryResponseJSON(f *testing.F) {
	f.Add(1, "v1", "applied", "", "")
	f.Add(7, "a<&>", "error", "bad_json", "\xff\x00")
	f.Fuzz(func(t *testing.T, line int, id, outcome, reason, msg string) {
		r := TelemetryResponse{Results: []LineResult{{Line: line, ID: id, Outcome: outcome, Reason: reason, Error: msg}}}
		if got, want := r.appendJSON(nil), encodeStdlib(&r); !bytes.Equal(got, want) {
			t.Fatalf("got %q\nwant %q", got, want)
		}
	})
}
