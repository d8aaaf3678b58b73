package auth

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// MinKeyBytes is the shortest signing secret accepted (HS256 wants >= 256 bits).
const MinKeyBytes = 32

// Errors a handler maps to 401.
var (
	ErrNoToken  = errors.New("no bearer token")
	ErrBadToken = errors.New("invalid token")
)

// Key is an HMAC secret for signing and verifying tokens.
type Key []byte

// LoadKey reads a secret from path (its bytes, at least MinKeyBytes).
func LoadKey(path string) (Key, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read auth key: %w", err)
	}
	if len(b) < MinKeyBytes {
		return nil, fmt.Errorf("auth key %s: %d bytes, need at least %d", path, len(b), MinKeyBytes)
	}
	return Key(b), nil
}

// LoadOrCreateKey reads path, or when it does not exist writes a new random
// secret there (mode 0600) and returns it; the server uses it for a data dir.
func LoadOrCreateKey(path string) (Key, error) {
	if _, err := os.Stat(path); err == nil {
		return LoadKey(path)
	}
	b := make([]byte, 48)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("generate auth key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("generate auth key: %w", err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return nil, fmt.Errorf("write auth key: %w", err)
	}
	return Key(b), nil
}

type claims struct {
	Role   Role   `json:"role"`
	Region string `json:"region"`
	jwt.RegisteredClaims
}

// ValidRole checks a role name.
func ValidRole(r Role) bool {
	switch r {
	case Operator, Planner, Field, Admin:
		return true
	}
	return false
}

// Sign issues an HS256 token for p valid for ttl.
func (k Key) Sign(p Principal, ttl time.Duration, now time.Time) (string, error) {
	if !ValidRole(p.Role) {
		return "", fmt.Errorf("sign token: unknown role %q (want operator, planner, field or admin)", p.Role)
	}
	if p.Region == "" {
		return "", errors.New("sign token: region code is required")
	}
	c := claims{Role: p.Role, Region: p.Region, RegisteredClaims: jwt.RegisteredClaims{
		Subject:   p.Subject,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		Issuer:    "citytwin",
	}}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(k))
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return s, nil
}

// Parse verifies a token's signature, algorithm and expiry and returns its principal.
func (k Key) Parse(token string, now time.Time) (Principal, error) {
	p, _, err := k.parse(token, now)
	return p, err
}

// parse is Parse that also returns the token's window of validity, which a
// Verifier keeps.
func (k Key) parse(token string, now time.Time) (Principal, verified, error) {
	var c claims
	_, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return []byte(k), nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithTimeFunc(func() time.Time { return now }),
		jwt.WithExpirationRequired())
	if err != nil {
		return Principal{}, verified{}, fmt.Errorf("%w: %w", ErrBadToken, err)
	}
	if !ValidRole(c.Role) || c.Region == "" {
		return Principal{}, verified{}, fmt.Errorf("%w: missing role or region", ErrBadToken)
	}
	p := Principal{Subject: c.Subject, Role: c.Role, Region: c.Region}
	v := verified{p: p, exp: c.ExpiresAt.Time}
	if c.NotBefore != nil {
		v.nbf = c.NotBefore.Time
	}
	return p, v, nil
}

// maxVerified bounds a Verifier's memory: at that many tokens it forgets
// them all, so distinct tokens beyond it cost a verification each, as before.
const maxVerified = 4096

// verified is a token a Verifier checked: its principal and the window
// [nbf, exp) in which Key.Parse accepts it.
type verified struct {
	p        Principal
	nbf, exp time.Time
}

// Verifier is Key.Parse that remembers the tokens it verified. A client on a
// keep-alive connection sends the same bearer token with every request, and
// parsing it (base64, JSON, HMAC-SHA256) was a tenth of the server's CPU per
// /api/nearby query; a remembered token is the same bytes the key signed, so
// only its time window is checked again. Tokens that fail are not kept.
type Verifier struct {
	key Key

	mu sync.Mutex
	ok map[string]verified
}

// NewVerifier returns a Verifier of tokens signed with key.
func NewVerifier(key Key) *Verifier {
	return &Verifier{key: key, ok: make(map[string]verified)}
}

// Parse answers as Key.Parse does for the same token and time.
func (v *Verifier) Parse(token string, now time.Time) (Principal, error) {
	v.mu.Lock()
	e, hit := v.ok[token]
	v.mu.Unlock()
	if hit {
		if now.Before(e.nbf) || !now.Before(e.exp) {
			// Outside its window: Key.Parse gives the error it would.
			return v.key.Parse(token, now)
		}
		return e.p, nil
	}
	p, e, err := v.key.parse(token, now)
	if err != nil {
		return Principal{}, err
	}
	v.mu.Lock()
	if len(v.ok) >= maxVerified {
		clear(v.ok)
	}
	v.ok[token] = e
	v.mu.Unlock()
	return p, nil
}
