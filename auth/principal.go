// Package auth carries who is asking (role and region scope) through a
// request's context, and decides what that principal may see. Token signing
// and parsing live here too; every surface (REST, OGC, tiles, websocket,
// nearby, H3, summaries) filters through Principal.Sees.
package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/citytwin/citytwin/twin"
)

// Role is what a principal may do.
type Role string

// Roles (CONTRACT §7).
const (
	Operator Role = "operator" // sees its region, acks alerts, dispatches
	Planner  Role = "planner"  // reads all layers in its region
	Field    Role = "field"    // reports and acts on incidents assigned to it
	Admin    Role = "admin"    // everything in its region, plus rules and entities
)

// CityCode is the region code that sees the whole city.
const CityCode = "500000"

// Principal is an authenticated caller.
type Principal struct {
	Subject string // who (token "sub"); recorded as actor on actions
	Role    Role
	Region  string // region code the principal is scoped to
}

// AlsoRegionsProp names the one prop the scope check reads besides the
// region path: the extra region codes an alert, task or directive concerns
// (a bridge crossing is visible to both districts the bridge joins; a
// directive's task to its target region, which has no geometry). Only the
// server writes it, on the alerts, tasks and directives layers, from
// region paths it computed or scope it checked; clients can never set it
// (CheckClientProps), so a prop can never be a proof of scope.
const AlsoRegionsProp = "regions"

// reservedProps are the top-level props only the server may write.
var reservedProps = [...]string{AlsoRegionsProp}

// ReservedProps lists the prop names clients may not set (README "Reserved
// properties").
func ReservedProps() []string { return append([]string(nil), reservedProps[:]...) }

// ErrReservedProp is returned by CheckClientProps; surfaces answer it 400.
var ErrReservedProp = errors.New("reserved property")

// CheckClientProps refuses props a client wrote that name a reserved,
// server-owned prop. Every surface that stores client props (PUT
// /api/entities) calls it before anything else.
func CheckClientProps(props twin.Props) error {
	for _, k := range reservedProps {
		if props.Has(k) {
			return fmt.Errorf("%w %q: set by the server from geometry (reserved: %s)", ErrReservedProp, k, strings.Join(reservedProps[:], ", "))
		}
	}
	return nil
}

// SeesAll reports whether p sees every object (a principal of the whole
// city), so a caller may skip looking an object up just to ask Sees.
func (p Principal) SeesAll() bool { return p.Region == "" || p.Region == CityCode }

// Sees reports whether the principal may see the object: the city code sees
// everything; any other region sees only objects whose region path (computed
// by the server from the geometry) holds it. Alerts additionally carry every
// region they concern in AlsoRegionsProp, written by the rules engine and
// the incident service only; tasks and directives carry theirs
// (governance/tasks) and are scoped by it alone when they have it (their
// point is where they are drawn, not whose they are); no other layer's
// props are ever read. A code in the list is seen by its own region and
// every region containing it, never by the regions inside it: a street
// does not see its district's task.
func (p Principal) Sees(f *twin.Feature) bool {
	if p.SeesAll() {
		return true
	}
	l := f.ID.Layer
	work := l == twin.Tasks || l == twin.Directives
	// A task's point is where it shows on the map (its building, its
	// target region's centre), not whose it is: a district's task drawn at
	// the district's centre must not reach the street there.
	byProp := work && f.Props.Get(AlsoRegionsProp) != nil
	if !byProp && f.InRegion(p.Region) {
		return true
	}
	if l != twin.Alerts && !work {
		return false
	}
	switch extra := f.Props.Get(AlsoRegionsProp).(type) {
	case []any:
		for _, c := range extra {
			if s, _ := c.(string); s == p.Region || hasPrefix(s, p.Region) {
				return true
			}
		}
	case []string:
		for _, s := range extra {
			if s == p.Region || hasPrefix(s, p.Region) {
				return true
			}
		}
	}
	return false
}

// IsCityAdmin reports whether p is an admin of the whole city: the only
// principal that may change the city's skeleton (regions, grids) and
// city-owned rules.
func (p Principal) IsCityAdmin() bool { return p.Role == Admin && p.Region == CityCode }

// Covers reports whether region code c lies inside p's region (the city
// code covers every code; codes nest by prefix).
func (p Principal) Covers(c string) bool {
	return p.Region == CityCode || c == p.Region || hasPrefix(c, p.Region)
}

// hasPrefix: region codes nest by prefix (500105 contains 500105002).
func hasPrefix(code, region string) bool {
	return len(code) > len(region) && code[:len(region)] == region
}

type ctxKey struct{}

// WithPrincipal returns a context carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// FromContext returns the request's principal. A context without one is
// treated by callers as anonymous; surfaces that allow anonymous access (demo
// on loopback) put an explicit city-wide principal in instead.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(ctxKey{}).(Principal)
	return p, ok
}

// Nobody sees nothing: the principal of a request that reached a handler
// without passing the server's guard (fail closed).
var Nobody = Principal{Subject: "nobody", Region: "-"}

// Of returns the request's principal, or Nobody when the context has none.
// The server puts a principal on every guarded route, so handlers use Of to
// scope what they answer.
func Of(ctx context.Context) Principal {
	if p, ok := FromContext(ctx); ok {
		return p
	}
	return Nobody
}
