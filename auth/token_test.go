package auth

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/citytwin/citytwin/twin"
)

func TestSignParse(t *testing.T) {
	k := Key(strings.Repeat("k", 32))
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	tok, err := k.Sign(Principal{Subject: "ops1", Role: Operator, Region: "500105"}, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	p, err := k.Parse(tok, now.Add(time.Minute))
	if err != nil || p.Role != Operator || p.Region != "500105" || p.Subject != "ops1" {
		t.Fatalf("parse: %+v %v", p, err)
	}
	if _, err := k.Parse(tok, now.Add(2*time.Hour)); !errors.Is(err, ErrBadToken) {
		t.Fatalf("expired token accepted: %v", err)
	}
	tampered := tok[:len(tok)-2] + "xx"
	if _, err := k.Parse(tampered, now); !errors.Is(err, ErrBadToken) {
		t.Fatalf("tampered token accepted: %v", err)
	}
	other := Key(strings.Repeat("o", 32))
	if _, err := other.Parse(tok, now); !errors.Is(err, ErrBadToken) {
		t.Fatalf("token from another key accepted")
	}
	if _, err := k.Sign(Principal{Role: "king", Region: "500000"}, time.Hour, now); err == nil {
		t.Fatal("unknown role signed")
	}
}

func TestSees(t *testing.T) {
	in := &twin.Feature{Place: twin.NewPlace([]string{"500000", "500105", "500105002"}, "")}
	out := &twin.Feature{Place: twin.NewPlace([]string{"500000", "500103", "500103001"}, "")}
	alert := &twin.Feature{ID: twin.NewID(twin.Alerts, "a"), Place: twin.NewPlace([]string{"500000", "500103"}, ""), Props: twin.NewProps(map[string]any{"regions": []any{"500103", "500105"}})}
	forged := &twin.Feature{ID: twin.NewID(twin.Vehicles, "v"), Place: twin.NewPlace([]string{"500000", "500103"}, ""), Props: twin.NewProps(map[string]any{"regions": []any{"500105"}})}
	street := Principal{Role: Operator, Region: "500105002"}
	district := Principal{Role: Operator, Region: "500105"}
	city := Principal{Role: Operator, Region: CityCode}
	if !street.Sees(in) || street.Sees(out) || !district.Sees(in) || district.Sees(out) || !city.Sees(out) {
		t.Fatal("scope by region path wrong")
	}
	if !district.Sees(alert) || street.Sees(alert) {
		t.Fatal("alert regions: both districts see it, a street of neither does not")
	}
	if district.Sees(forged) {
		t.Fatal("a regions prop outside the alerts layer widened the scope")
	}
	// A directive's task to a district has no geometry: its regions prop
	// is its scope; the district and the city see it, its streets do not.
	task := &twin.Feature{ID: twin.NewID(twin.Tasks, "t"), Place: twin.NewPlace([]string{"500000", "500105", "500105002"}, ""), Props: twin.NewProps(map[string]any{"regions": []any{"500105"}})}
	other := Principal{Role: Operator, Region: "500103"}
	if !district.Sees(task) || !city.Sees(task) || street.Sees(task) || other.Sees(task) {
		t.Fatal("task regions: its district and the city see it, its street and other districts do not")
	}
	fwd := &twin.Feature{ID: twin.NewID(twin.Tasks, "t2"), Props: twin.NewProps(map[string]any{"regions": []any{"500105002"}})}
	if !street.Sees(fwd) || !district.Sees(fwd) || (Principal{Role: Operator, Region: "500105001"}).Sees(fwd) {
		t.Fatal("forwarded task: its street and the district above see it, a sibling street does not")
	}
}

func TestCheckClientProps(t *testing.T) {
	if err := CheckClientProps(twin.NewProps(map[string]any{"kind": "patrol"})); err != nil {
		t.Fatal(err)
	}
	for _, k := range ReservedProps() {
		if err := CheckClientProps(twin.NewProps(map[string]any{k: []any{"500105"}})); !errors.Is(err, ErrReservedProp) {
			t.Fatalf("%s accepted: %v", k, err)
		}
	}
}

func TestOfFailsClosed(t *testing.T) {
	f := &twin.Feature{Place: twin.NewPlace([]string{"500000", "500105"}, "")}
	if Of(context.Background()).Sees(f) {
		t.Fatal("a request without a principal sees objects")
	}
	ctx := WithPrincipal(context.Background(), Principal{Role: Planner, Region: "500105"})
	if !Of(ctx).Sees(f) {
		t.Fatal("principal in context not used")
	}
}

// TestVerifier checks a Verifier answers as Key.Parse does, a remembered
// token included: accepted within its window only, never one that failed.
func TestVerifier(t *testing.T) {
	k := Key(strings.Repeat("k", 32))
	v := NewVerifier(k)
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	tok, err := k.Sign(Principal{Subject: "ops1", Role: Operator, Region: "500105"}, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 { // the first verifies, the second is remembered
		p, err := v.Parse(tok, now.Add(time.Minute))
		if err != nil || p != (Principal{Subject: "ops1", Role: Operator, Region: "500105"}) {
			t.Fatalf("parse %d: %+v %v", i, p, err)
		}
	}
	if _, err := v.Parse(tok, now.Add(time.Hour)); !errors.Is(err, ErrBadToken) {
		t.Fatalf("remembered token accepted at its expiry: %v", err)
	}
	if _, err := v.Parse(tok, now.Add(2*time.Hour)); !errors.Is(err, ErrBadToken) {
		t.Fatalf("remembered token accepted after its expiry: %v", err)
	}
	tampered := tok[:len(tok)-2] + "xx"
	for range 2 {
		if _, err := v.Parse(tampered, now); !errors.Is(err, ErrBadToken) {
			t.Fatalf("tampered token accepted: %v", err)
		}
	}
	if _, err := NewVerifier(Key(strings.Repeat("o", 32))).Parse(tok, now); !errors.Is(err, ErrBadToken) {
		t.Fatal("token from another key accepted")
	}
	// A token with a not-before is refused before it, also once remembered.
	c := claims{Role: Admin, Region: CityCode, RegisteredClaims: jwt.RegisteredClaims{
		ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
		NotBefore: jwt.NewNumericDate(now.Add(time.Minute)),
	}}
	nbf, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(k))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Parse(nbf, now); !errors.Is(err, ErrBadToken) {
		t.Fatalf("token accepted before its not-before: %v", err)
	}
	if _, err := v.Parse(nbf, now.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Parse(nbf, now); !errors.Is(err, ErrBadToken) {
		t.Fatalf("remembered token accepted before its not-before: %v", err)
	}
	// Past maxVerified tokens it forgets and still answers.
	for i := range maxVerified + 1 {
		tk, err := k.Sign(Principal{Subject: "u" + strings.Repeat("x", i%7), Role: Field, Region: "500105"}, time.Duration(i+1)*time.Second+time.Hour, now)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Parse(tk, now); err != nil {
			t.Fatal(err)
		}
	}
	if len(v.ok) > maxVerified {
		t.Fatalf("%d tokens remembered, bound %d", len(v.ok), maxVerified)
	}
}
