package auth

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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
	var c claims
	_, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return []byte(k), nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithTimeFunc(func() time.Time { return now }),
		jwt.WithExpirationRequired())
	if err != nil {
		return Principal{}, fmt.Errorf("%w: %w", ErrBadToken, err)
	}
	if !ValidRole(c.Role) || c.Region == "" {
		return Principal{}, fmt.Errorf("%w: missing role or region", ErrBadToken)
	}
	return Principal{Subject: c.Subject, Role: c.Role, Region: c.Region}, nil
}
