package main

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// termRegistry registers the metrics of components that live for one
// leadership term (the store writer) and unregisters them when the term
// ends, so the next term's instances can register the same names.
type termRegistry struct {
	prometheus.Registerer
	mu sync.Mutex
	cs []prometheus.Collector
}

func (t *termRegistry) Register(c prometheus.Collector) error {
	if err := t.Registerer.Register(c); err != nil {
		return err
	}
	t.mu.Lock()
	t.cs = append(t.cs, c)
	t.mu.Unlock()
	return nil
}

func (t *termRegistry) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := t.Register(c); err != nil {
			panic(err)
		}
	}
}

// end unregisters everything registered through t.
func (t *termRegistry) end() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range t.cs {
		t.Unregister(c)
	}
	t.cs = nil
}
