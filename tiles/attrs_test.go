package tiles

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/paulmach/orb/maptile"

	"github.com/citytwin/citytwin/twin"
)

// TestAttrsSelection: ?attrs= keeps only the named attributes (none when
// empty), the integer feature id stays, the tiles are smaller and cached
// apart from the default ones; Options.OmitID drops id and version by
// default for its layers; TileJSON carries the selection in its tile URL
// and fields.
func TestAttrsSelection(t *testing.T) {
	tw := testTwin(t)
	s := New(tw, Options{})
	h := s.Handler()
	u := tileURL("buildings", maptile.At(building[0][0], 15))
	full := get(t, h, u, nil)
	none := get(t, h, u+"?attrs=", nil)
	some := get(t, h, u+"?attrs=height_m,levels,height_m", nil)
	for _, w := range []int{full.Code, none.Code, some.Code} {
		if w != http.StatusOK {
			t.Fatalf("status %d", w)
		}
	}
	if none.Body.Len() >= some.Body.Len() || some.Body.Len() >= full.Body.Len() {
		t.Fatalf("sizes none %d some %d full %d", none.Body.Len(), some.Body.Len(), full.Body.Len())
	}
	want := FeatureID(twin.NewID(twin.Buildings, "b1"))
	for name, tc := range map[string]struct {
		body []byte
		keys string
	}{"none": {none.Body.Bytes(), ""}, "some": {some.Body.Bytes(), "height_m,levels"}} {
		l := decodeMVT(t, tc.body).layer("buildings")
		if l == nil || len(l.Features) != 1 || l.Features[0].ID == nil || *l.Features[0].ID != want {
			t.Fatalf("%s: layer %+v, want one feature with id %d", name, l, want)
		}
		var got []string
		for k := range l.Features[0].Properties {
			got = append(got, k)
		}
		if strings.Join(sortedCopy(got), ",") != tc.keys {
			t.Errorf("%s: attributes %v, want %s", name, got, tc.keys)
		}
	}
	if f := decodeMVT(t, full.Body.Bytes()).layer("buildings").feature("buildings/b1"); f == nil || f.Properties["version"] == nil {
		t.Fatal("default tile lost id or version")
	}
	if get(t, h, u+"?attrs=a&attrs=b", nil).Code != http.StatusBadRequest ||
		get(t, h, u+"?attrs=a,,b", nil).Code != http.StatusBadRequest {
		t.Error("bad attrs accepted")
	}

	omit := New(tw, Options{OmitID: map[twin.Layer]bool{twin.Buildings: true}})
	f := decodeMVT(t, get(t, omit.Handler(), u, nil).Body.Bytes()).layer("buildings")
	if f == nil || len(f.Features) != 1 || f.Features[0].Properties["id"] != nil || f.Features[0].Properties["version"] != nil ||
		f.Features[0].Properties["height_m"] == nil {
		t.Fatalf("OmitID tile %+v", f)
	}
	withID := decodeMVT(t, get(t, omit.Handler(), u+"?attrs=id", nil).Body.Bytes()).layer("buildings")
	if withID == nil || withID.feature("buildings/b1") == nil {
		t.Fatal("?attrs=id did not bring the id back")
	}

	var doc struct {
		Tiles        []string `json:"tiles"`
		VectorLayers []struct {
			Fields map[string]string `json:"fields"`
		} `json:"vector_layers"`
	}
	tj := get(t, h, "/tiles/buildings.json?attrs=height_m", nil)
	if err := json.Unmarshal(tj.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Tiles) != 1 || !strings.HasSuffix(doc.Tiles[0], ".mvt?attrs=height_m") ||
		len(doc.VectorLayers) != 1 || len(doc.VectorLayers[0].Fields) != 1 || doc.VectorLayers[0].Fields["height_m"] == "" {
		t.Fatalf("TileJSON %s", tj.Body)
	}
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// FuzzParseAttrs: any query parses or fails with ErrBadAttrs, never
// panics, and a parsed selection round-trips through its URL form.
func FuzzParseAttrs(f *testing.F) {
	for _, s := range []string{"", "attrs=", "attrs=id", "attrs=a,b,a", "attrs=a&attrs=b", "attrs=,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		a, err := ParseAttrs(q)
		if err != nil {
			return
		}
		if !a.Only {
			return
		}
		q2, err := url.ParseQuery(strings.TrimPrefix(a.query(), "?"))
		if err != nil {
			t.Fatal(err)
		}
		b, err := ParseAttrs(q2)
		if err != nil || b.key() != a.key() {
			t.Fatalf("%q -> %q -> %q (%v)", raw, a.key(), b.key(), err)
		}
	})
}

// TestAttrFilterKeyNumbers: selections resolved by key number (kv.kid,
// keyTable) write the same tiles as the string comparisons of a server
// without memos, whether the filter was made before the keys were
// numbered (the first tile of a fresh server), after, or names keys no
// feature has; with OmitID too.
func TestAttrFilterKeyNumbers(t *testing.T) {
	tw := testTwin(t)
	omit := map[twin.Layer]bool{twin.Buildings: true, twin.Devices: true}
	layers := []twin.Layer{twin.Regions, twin.Roads, twin.Bridges, twin.Buildings, twin.Devices, twin.Vehicles}
	for _, sel := range []string{"", "height_m,levels", "id,name,zz1", "version", "nosuch", "class,height_m,high_rise,levels,name,oneway,risk_color,risk_level,status,kind"} {
		for _, omitID := range []bool{false, true} {
			opts := Options{}
			if omitID {
				opts.OmitID = omit
			}
			s := New(tw, opts) // fresh: the first build numbers the keys
			opts.MemoFeatures = -1
			plain := New(tw, opts)
			var a Attrs
			if sel != "nosuch" || omitID {
				var err error
				if a, err = ParseAttrs(url.Values{"attrs": {sel}}); err != nil {
					t.Fatal(err)
				}
			}
			for _, z := range []maptile.Zoom{13, 15, 17} {
				tl := maptile.At(building[0][0], z)
				req := Request{Kind: KindTile, Z: uint8(z), X: tl.X, Y: tl.Y, Layers: layers, Attrs: a}
				for round := 0; round < 2; round++ {
					got, _, err := s.build(context.Background(), req)
					if err != nil {
						t.Fatal(err)
					}
					want, _, err := plain.build(context.Background(), req)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(got, want) {
						t.Fatalf("attrs %q omitID %v z%d round %d: %s", sel, omitID, z, round, firstDiff(t, got, want))
					}
				}
			}
		}
	}
}
