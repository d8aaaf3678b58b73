// Package auth carries who is asking (role and region scope) through a
// request's context, and decides what that principal may see. Token signing
// and parsing live here too; every surface (REST, OGC, tiles, websocket,
// nearby, H3, summaries) filters through Principal.Sees.
package auth

import (
	"context"

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

// Sees reports whether the principal may see the object: the city code sees
// everything; any other region sees only objects whose region path holds it.
// Alerts additionally carry every region they concern in "regions" (a bridge
// crossing is visible to both districts).
func (p Principal) Sees(f *twin.Feature) bool {
	if p.Region == "" || p.Region == CityCode {
		return true
	}
	if f.InRegion(p.Region) {
		return true
	}
	if extra, ok := f.Props["regions"].([]any); ok {
		for _, c := range extra {
			if s, _ := c.(string); s == p.Region || hasPrefix(s, p.Region) {
				return true
			}
		}
	}
	if extra, ok := f.Props["regions"].([]string); ok {
		for _, s := range extra {
			if s == p.Region || hasPrefix(s, p.Region) {
				return true
			}
		}
	}
	return false
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
