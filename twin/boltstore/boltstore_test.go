package boltstore_test

import (
	"testing"

	"github.com/citytwin/citytwin/twin"
	"github.com/citytwin/citytwin/twin/boltstore"
	"github.com/citytwin/citytwin/twin/storetest"
)

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) twin.Store {
		s, err := boltstore.Open(t.TempDir(), boltstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
