package spine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// RunLeader runs fn while this server holds the lease key, and waits as a
// standby while another server does, until ctx ends. The lease is a value
// in the LeaseBucket, whose TTL (Options.LeaseTTL) removes it when its
// holder stops renewing. It is taken with Create (only if absent) and
// renewed with Update at the revision last written, so JetStream's
// per-subject compare-and-set decides who holds it: no consensus of our
// own.
//
// fn's context is cancelled when the lease is lost (a renewal refused or
// not confirmed within the TTL) or ctx ends; fn must then stop acting as
// the leader. When fn returns, the lease is released so a standby takes
// over at once, and after a pause this server competes again. onChange,
// if not nil, is told each time this server becomes leader or standby.
func (s *Spine) RunLeader(ctx context.Context, key string, fn func(context.Context) error, onChange func(leader bool)) error {
	ttl := s.opts.LeaseTTL
	retry := ttl / 6
	for {
		rev, err := s.leases.Create(ctx, key, []byte(s.opts.Name))
		if errors.Is(err, jetstream.ErrKeyExists) {
			rev, err = s.reclaim(ctx, key)
		}
		if err == nil {
			s.lead(ctx, key, rev, fn, onChange)
		} else if !errors.Is(err, jetstream.ErrKeyExists) && ctx.Err() == nil {
			s.log.Warn("lease: cannot reach NATS", "key", key, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(retry):
		}
	}
}

// lead holds the lease at revision rev while fn runs.
func (s *Spine) lead(ctx context.Context, key string, rev uint64, fn func(context.Context) error, onChange func(bool)) {
	ttl := s.opts.LeaseTTL
	lctx, lose := context.WithCancel(ctx)
	defer lose()
	s.log.Info("lease taken: this server applies the log", "key", key, "server", s.opts.Name)
	if onChange != nil {
		onChange(true)
		defer onChange(false)
	}
	done := make(chan error, 1)
	go func() { done <- fn(lctx) }()
	// Renew three times per TTL. The lease is held until renewed+ttl as
	// far as NATS is concerned; this server gives it up a margin earlier,
	// so two servers never both believe they lead.
	renewed := time.Now()
	tick := time.NewTicker(ttl / 3)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				s.log.Error("leader stopped", "key", key, "err", err)
			}
			s.release(key, rev) //nolint:contextcheck // detached on purpose: work that must outlive or stand apart from the caller's context
			return
		case <-tick.C:
			// Renewed until fn returns, even once lctx ended: a term that
			// is stopping still drains (the change log takes its last
			// changes), and the lease must not lapse to another server
			// meanwhile. A renewal under lctx failed at once then ("context
			// canceled") and the lease expired mid-drain.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(lctx), ttl/3)
			nrev, err := s.leases.Update(rctx, key, []byte(s.opts.Name), rev)
			cancel()
			switch {
			case err == nil:
				rev, renewed = nrev, time.Now()
			case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch):
				s.log.Error("lease lost to another server; stopping", "key", key)
				lose()
				if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
					s.log.Error("leader stopped", "key", key, "err", err)
				}
				return
			case time.Since(renewed) > ttl*2/3:
				s.log.Error("lease not renewed in time (NATS unreachable?); stopping", "key", key, "err", err)
				lose()
				if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
					s.log.Error("leader stopped", "key", key, "err", err)
				}
				return
			default:
				s.log.Warn("lease renewal failed; retrying", "key", key, "err", err)
			}
		}
	}
}

// reclaim takes over a lease still held under this server's own name: a
// server restarted after a crash (same Options.Name) need not wait for
// its previous life's lease to expire. The Update is at the revision read,
// so if another server took the lease meanwhile it fails; and a second,
// live process misconfigured with the same name loses at its next renewal.
// It returns ErrKeyExists when another server holds the lease.
func (s *Spine) reclaim(ctx context.Context, key string) (uint64, error) {
	e, err := s.leases.Get(ctx, key)
	if err != nil {
		return 0, err
	}
	if string(e.Value()) != s.opts.Name {
		return 0, jetstream.ErrKeyExists
	}
	rev, err := s.leases.Update(ctx, key, []byte(s.opts.Name), e.Revision())
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		return 0, jetstream.ErrKeyExists
	}
	if err == nil {
		s.log.Info("lease reclaimed from this server's previous run", "key", key)
	}
	return rev, err
}

// release deletes the lease if this server still holds it.
func (s *Spine) release(key string, rev uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.leases.Delete(ctx, key, jetstream.LastRevision(rev)); err != nil {
		s.log.Debug("lease release", "key", key, "err", err)
		return
	}
	s.log.Info("lease released", "key", key)
}

// Holder returns the server name holding the lease key, or "" when none.
func (s *Spine) Holder(ctx context.Context, key string) (string, error) {
	e, err := s.leases.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("spine: lease %s: %w", key, err)
	}
	return string(e.Value()), nil
}
