package main

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/citytwin/citytwin/internal/backoff"
)

// stages runs the server's components in groups that stop one group after
// another, so a graceful stop loses nothing between them (issue 11 item 2):
// first what feeds the twin (HTTP, the journal applier, the simulator,
// timers), then the rules (which drain the feed to its last change and
// publish their alerts), then what carries changes out (MQTT ingest and
// its publishes, websockets, tiles), then the store writer (whose final
// flush then holds every change), and last, by serve's defers, the broker,
// NATS and the store. Cancelling everything at once, as before, let the
// writer's final flush miss what ingest applied after it.
//
// Every group's context is detached from serve's (SIGTERM cancels serve's
// context, not the groups'); stop cancels them in order.
type stages struct {
	log    *slog.Logger
	groups []*stage
	once   sync.Once
}

type stage struct {
	name   string
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// wait bounds the wait for the group's components (0: until they
	// return): a stuck component must not keep the server from exiting,
	// but the writer's final flush is bounded by its own FlushTimeout.
	wait time.Duration
	// then, if set, runs once the group has stopped, before the next one
	// is cancelled (the leader's drain of the change log).
	then func()
}

// newStages makes the groups, in stop order.
func newStages(parent context.Context, log *slog.Logger, groups ...*stage) *stages {
	base := context.WithoutCancel(parent)
	for _, g := range groups {
		g.ctx, g.cancel = context.WithCancel(base)
	}
	return &stages{log: log, groups: groups}
}

// run starts fn in group g; its error is logged (a cancelled context is the
// normal way to stop).
func (s *stages) run(g *stage, name string, fn func(context.Context) error) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		if err := fn(g.ctx); err != nil && !errors.Is(err, context.Canceled) {
			s.log.Error("component stopped", "component", name, "stage", g.name, "err", err)
		}
	}()
}

// stop stops the groups in order, each after the previous one's components
// returned (or its wait ran out). before, if set, runs before the first
// group is cancelled (HTTP shutdown). Safe to call more than once.
func (s *stages) stop(before func()) {
	s.once.Do(func() {
		if before != nil {
			before()
		}
		for _, g := range s.groups {
			g.cancel()
			done := make(chan struct{})
			go func() { g.wg.Wait(); close(done) }()
			var timeout <-chan time.Time
			if g.wait > 0 {
				t := time.NewTimer(g.wait)
				defer t.Stop()
				timeout = t.C
			}
			select {
			case <-done:
				s.log.Debug("stage stopped", "stage", g.name)
			case <-timeout:
				s.log.Error("stage did not stop in time; going on with the shutdown", "stage", g.name, "waited", g.wait)
			}
			if g.then != nil {
				g.then()
			}
		}
	})
}

// dutyBackoff is the wait between two tries of a leader's duty: 250 ms
// doubling to 5 s.
func dutyBackoff() backoff.Backoff {
	return backoff.Backoff{First: 250 * time.Millisecond, Most: 5 * time.Second}
}

// retryUntilDone runs fn until ctx ends, starting it again after an error
// with a back-off of 250 ms doubling to 5 s (reset once a run lasted a
// minute). For a leader's duty that must not stay down while the server
// keeps leading.
func retryUntilDone(ctx context.Context, log *slog.Logger, name string, fn func(context.Context) error) error {
	b := dutyBackoff()
	for {
		began := time.Now()
		err := fn(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(began) > time.Minute {
			b.Reset()
		}
		log.Warn("component failed; starting it again", "component", name, "err", err, "retry_in", b.Next())
		if !b.Wait(ctx) {
			return nil
		}
	}
}

// untilOK calls fn until it succeeds, waiting between tries as
// retryUntilDone does, and returns ctx's error if ctx ends first. For what
// a leader's duty must read from the store before it starts (the store
// writer's resume point): a store away at the start of a term delays that
// duty, not the term. A new leader that gave up its term instead left the
// twin without a leader for as long as PostgreSQL was away.
func untilOK(ctx context.Context, log *slog.Logger, what string, fn func(context.Context) error) error {
	b := dutyBackoff()
	for {
		err := fn(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		log.Warn("waiting for the store", "for", what, "err", err, "retry_in", b.Next())
		if !b.Wait(ctx) {
			return ctx.Err()
		}
	}
}

// restartedUntilDone is run started again after an error until ctx ends
// (retryUntilDone), returning the last run's error: a final flush that
// failed at shutdown is still reported by the stage.
func restartedUntilDone(log *slog.Logger, name string, run func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		var last error
		_ = retryUntilDone(ctx, log, name, func(ctx context.Context) error {
			last = run(ctx)
			return last
		})
		return last
	}
}
