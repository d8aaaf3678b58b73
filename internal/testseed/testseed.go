// Package testseed gives the seeded differential tests their seed: a new
// one each run, printed so that a failure can be replayed, or the one an
// environment variable names.
package testseed

import (
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
)

// Seed returns the value of the environment variable env when it is set
// (the test fails when it is not a uint64), else a random seed, and logs
// it with how to replay it.
func Seed(t testing.TB, env string) uint64 {
	t.Helper()
	seed := rand.Uint64()
	if s := os.Getenv(env); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", env, s, err)
		}
		seed = v
	}
	t.Logf("seed %d (%s=%d replays it)", seed, env, seed)
	return seed
}
