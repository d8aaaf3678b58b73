package importer

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/citytwin/citytwin/twin"
	"github.com/paulmach/orb"
)

// mesh reads the NavInfo-style mesh road-link XML (SOURCES.md,
// roads/mesh_road_network), gzip-compressed or not:
//
//	<submaps><submap submapID=..><points Direction="1|2|3" SnodeID=.. EnodeID=.. linkID=..>lon lat,lon lat,...</points>
//
// Each <points> becomes roads/mesh-{linkID} with props oneway, direction,
// snode, enode. Direction follows the NavInfo convention: 1 both ways,
// 2 one way from SnodeID to EnodeID (the drawn order), 3 one way from
// EnodeID to SnodeID (the line is reversed so it runs the way traffic
// does); 0 or absent means unknown and is imported as two-way.
// The data is GCJ-02: import it with CRS "gcj02".
func (r *run) mesh(ctx context.Context, src io.Reader) error {
	if r.opts.Layer != "" && r.opts.Layer != twin.Roads {
		return nil // mesh files hold roads only
	}
	br := bufio.NewReader(src)
	var in io.Reader = br
	if magic, err := br.Peek(2); err == nil && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("gunzip: %w", err)
		}
		defer zr.Close()
		in = zr
	}
	dec := xml.NewDecoder(in)
	index := 0
	sawRoot := false
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			line, _ := dec.InputPos()
			return fmt.Errorf("line %d: not XML: %w", line, err)
		}
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		if !sawRoot {
			sawRoot = true
			if se.Name.Local != "submaps" && se.Name.Local != "submap" {
				return fmt.Errorf("not a mesh road file (root element <%s>, want <submaps>)", se.Name.Local)
			}
		}
		if se.Name.Local != "points" {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		line, _ := dec.InputPos()
		var body struct {
			Text string `xml:",chardata"`
		}
		if err := dec.DecodeElement(&body, &se); err != nil {
			return fmt.Errorf("line %d: not XML: %w", line, err)
		}
		r.sum.Read++
		f, reason := meshLink(se.Attr, body.Text)
		if reason != "" {
			r.problem(line, index, "%s", reason)
		} else if err := r.add(ctx, f, line, index); err != nil {
			return err
		}
		index++
	}
	if !sawRoot {
		return errors.New("not a mesh road file (no XML elements)")
	}
	return nil
}

func meshLink(attrs []xml.Attr, text string) (*twin.Feature, string) {
	a := map[string]string{}
	for _, at := range attrs {
		a[at.Name.Local] = at.Value
	}
	link := strings.TrimSpace(a["linkID"])
	if link == "" {
		return nil, "points without linkID"
	}
	var ls orb.LineString
	for _, pair := range strings.Split(strings.TrimSpace(text), ",") {
		xy := strings.Fields(pair)
		if len(xy) == 0 {
			continue
		}
		if len(xy) != 2 {
			return nil, fmt.Sprintf("link %s: bad coordinate pair %q", link, pair)
		}
		lon, err1 := strconv.ParseFloat(xy[0], 64)
		lat, err2 := strconv.ParseFloat(xy[1], 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Sprintf("link %s: bad coordinate pair %q", link, pair)
		}
		ls = append(ls, orb.Point{lon, lat})
	}
	if len(ls) == 0 {
		return nil, fmt.Sprintf("link %s: empty geometry", link)
	}
	dir, _ := strconv.Atoi(a["Direction"])
	props := map[string]any{
		"oneway":    dir == 2 || dir == 3,
		"direction": dir,
		"snode":     a["SnodeID"],
		"enode":     a["EnodeID"],
		"link":      link,
	}
	if dir == 3 {
		ls = slices.Clone(ls)
		slices.Reverse(ls)
	}
	f := &twin.Feature{ID: twin.NewID(twin.Roads, "mesh-"+link), Geometry: ls, Props: twin.NewProps(props)}
	f.SetSource("mesh:" + link)
	return f, ""
}
