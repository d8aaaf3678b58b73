package wshub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/citytwin/citytwin/twin"
	"github.com/citytwin/citytwin/twin/timeline"
)

// Replay over the websocket (CONTRACT §6 "at", issue 17).
//
// Client -> server:
//
//	{"op":"subscribe","layers":[...],"bbox":[w,s,e,n],"at":T,"speed":S,"live":true}
//	{"op":"pause"}  {"op":"play"}  {"op":"seek","at":T}  {"op":"speed","speed":S}
//
// T is RFC 3339 or epoch milliseconds; S is a positive factor of real time
// (default 1, at most MaxReplaySpeed). A subscribe with "at" replaces the
// live subscription by a replay of the same view: the server answers
//
//	{"op":"snapshot","seq":0,"replay":true,"at":"T","features":[...]}
//
// (what the principal saw of those layers in the bbox at T), then
//
//	{"op":"delta","seq":N,"kind":"upsert"|"remove","replay":true,"at":"t","feature":{...}}
//
// for every recorded change after T in time order (then feed seq), each
// sent when the replay clock (T + S x the wall time played) reaches its
// time: a remove when the object was deleted or left the view. Deltas are
// never coalesced: the client sees every recorded version. Every second,
// and on every pause, play, seek or speed op, the server sends
// {"op":"clock","at":"t","speed":S,"paused":bool}. When the replay clock
// reaches now: with "live": true the server sends {"op":"live"} and serves
// the view live from then on (a snapshot, then live deltas); without it
// {"op":"end","at":"t"} and the replay pauses at that point (seek to go
// back). A subscribe without "at" returns to live; pause, play, seek and
// speed without a running replay answer an error message.

// MaxReplaySpeed bounds the replay speed factor.
const MaxReplaySpeed = 1e6

// replayReq is a parsed replay op.
type replayReq struct {
	op    string // subscribe, pause, play, seek, speed
	at    time.Time
	speed float64
	live  bool
	sub   subscription
}

// replayFields are the members a replay message may carry.
type replayFields struct {
	Op    string           `json:"op"`
	At    *json.RawMessage `json:"at"`
	Speed *float64         `json:"speed"`
	Live  bool             `json:"live"`
}

// parseReplay reads a replay op; ok is false for a message that is no
// replay op (a live subscribe, or garbage left to parseRequest).
func parseReplay(data []byte) (req replayReq, ok bool, err error) {
	var f replayFields
	if json.Unmarshal(data, &f) != nil {
		return req, false, nil
	}
	req.op = f.Op
	switch f.Op {
	case "pause", "play":
		return req, true, nil
	case "speed":
		if f.Speed == nil {
			return req, true, errors.New("speed: want a number")
		}
	case "seek":
		if f.At == nil {
			return req, true, errors.New("seek: want at")
		}
	case "subscribe":
		if f.At == nil {
			return req, false, nil
		}
		if req.sub, err = parseRequest(data); err != nil {
			return req, true, err
		}
		req.live = f.Live
	default:
		return req, false, nil
	}
	req.speed = 1
	if f.Speed != nil {
		if s := *f.Speed; !(s > 0) || s > MaxReplaySpeed || math.IsInf(s, 0) {
			return req, true, fmt.Errorf("speed: want 0 < speed <= %g", float64(MaxReplaySpeed))
		}
		req.speed = *f.Speed
	}
	if f.At != nil {
		s := string(*f.At)
		if uq, err := strconv.Unquote(s); err == nil {
			s = uq
		}
		if req.at, err = timeline.ParseAt(s); err != nil {
			return req, true, err
		}
	}
	return req, true, nil
}

// player runs one client's replay on its own goroutine.
type player struct {
	c      *client
	rd     *timeline.Reader
	sub    subscription
	live   bool
	ops    chan replayReq
	cancel context.CancelFunc
	done   chan struct{}
}

// replayOp handles a replay op from the client's reader.
func (c *client) replayOp(req replayReq) {
	c.playMu.Lock()
	defer c.playMu.Unlock()
	if req.op == "subscribe" {
		if c.h.opts.Replay == nil {
			c.enqueueControl(encodeError("replay: this server keeps no timeline"))
			return
		}
		c.stopReplayLocked()
		c.h.leaveLive(c)
		ctx, cancel := context.WithCancel(context.Background())
		p := &player{c: c, rd: c.h.opts.Replay, sub: req.sub, live: req.live, ops: make(chan replayReq, 16),
			cancel: cancel, done: make(chan struct{})}
		c.player = p
		c.h.m.replays.Inc()
		go p.run(ctx, req.at, req.speed)
		return
	}
	if c.player == nil {
		c.enqueueControl(encodeError(req.op + ": no replay running (subscribe with at first)"))
		return
	}
	select {
	case c.player.ops <- req:
	default:
		c.enqueueControl(encodeError(req.op + ": too many replay ops waiting"))
	}
}

// stopReplay ends a running replay (a live subscribe, the link closing).
func (c *client) stopReplay() {
	c.playMu.Lock()
	defer c.playMu.Unlock()
	c.stopReplayLocked()
}

func (c *client) stopReplayLocked() {
	if p := c.player; p != nil {
		p.cancel()
		<-p.done
		c.player = nil
	}
}

// leaveLive takes c out of live routing: its replay replaces the view.
func (h *Hub) leaveLive(c *client) {
	h.mu.Lock()
	if c.sub != nil {
		h.ix.remove(c.sub)
		c.sub = nil
	}
	h.mu.Unlock()
	c.mu.Lock()
	c.pendingSub, c.needSnap = nil, false
	c.mu.Unlock()
	c.replaceQueue()
}

// run plays from at at speed until ctx ends, the replay ends (without
// live) and is not sought again, or it hands over to live.
func (p *player) run(ctx context.Context, at time.Time, speed float64) {
	defer close(p.done)
	c := p.c
	var (
		clock0 = at         // replay time at wall0
		wall0  = time.Now() // wall time of clock0
		paused bool
		cursor time.Time // changes up to here are sent
		inView = map[twin.ID]*twin.Feature{}
		sent   = map[twin.ID]uint64{} // the highest feed seq replayed per object
		queue  []timeline.Change      // fetched, not yet due
		ended  bool
	)
	now := func() time.Time { // the replay clock
		if paused {
			return clock0
		}
		return clock0.Add(time.Duration(float64(time.Since(wall0)) * speed))
	}
	sendClock := func() {
		c.enqueueControl(fmt.Appendf(nil, `{"op":"clock","at":%q,"speed":%g,"paused":%t}`, fmtAt(now()), speed, paused))
	}
	seek := func(t time.Time) bool {
		fs, err := p.rd.Snapshot(ctx, timeline.Query{At: t, Layers: p.sub.layers, BBox: p.sub.bbox, HasBBox: true, Sees: c.p.Sees})
		if err != nil {
			if ctx.Err() == nil {
				c.enqueueControl(encodeError("replay: " + err.Error()))
			}
			return false
		}
		clear(inView)
		clear(sent)
		for _, f := range fs {
			inView[f.ID] = f
		}
		c.replaceQueue(&item{snap: &snapshot{features: fs, at: fmtAt(t)}})
		clock0, wall0, cursor, queue, ended = t, time.Now(), t, nil, false
		return true
	}
	if !seek(at) {
		return
	}
	sendClock()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		// Fetch the next window of changes once the clock reached the
		// end of the last one.
		if !paused && !ended && len(queue) == 0 && !cursor.After(now()) {
			// The clock reached the recorded edge (within a second: at
			// speed > 1 the edge moves on while the last window is read).
			edge := time.Now().Add(-liveLag)
			if edge.Sub(cursor) < time.Second {
				if p.live {
					// The live subscribe replaces the queue: let the
					// replay's last deltas and the notice go out first.
					c.enqueueReplay([]byte(`{"op":"live"}`))
					if !c.waitDrained(ctx) {
						return
					}
					c.requestSubscribe(subscription{layers: p.sub.layers, bbox: p.sub.bbox})
					c.h.m.replayLive.Inc()
					return
				}
				ended = true
				clock0, wall0, paused = cursor, time.Now(), true
				c.enqueueControl(fmt.Appendf(nil, `{"op":"end","at":%q}`, fmtAt(cursor)))
				sendClock()
				continue
			}
			// A window covers a few seconds of wall time at this speed.
			span := time.Duration(min(max(float64(time.Minute), speed*float64(5*time.Second)), float64(time.Hour)))
			to := cursor.Add(span)
			if to.After(edge) {
				to = edge
			}
			cs, err := p.rd.Changes(ctx, cursor, to, p.sub.layers)
			if err != nil {
				if ctx.Err() == nil {
					c.enqueueControl(encodeError("replay: " + err.Error()))
				}
				return
			}
			queue, cursor = cs, to
		}
		// Send what is due, while the client keeps up.
		for len(queue) > 0 && !paused && !queue[0].Time.After(now()) && c.replayRoom() {
			// A record older (by seq) than one already replayed is
			// superseded, as in a snapshot (the state at t is the highest
			// seq at or before t).
			if ch := queue[0]; ch.Seq >= sent[ch.ID] {
				sent[ch.ID] = ch.Seq
				p.send(ch, inView)
			}
			queue = queue[1:]
		}
		wait := 200 * time.Millisecond
		if len(queue) > 0 && !paused {
			if d := time.Duration(float64(queue[0].Time.Sub(now())) / speed); d < wait {
				wait = max(d, 0)
			}
			if !c.replayRoom() {
				wait = 20 * time.Millisecond
			}
		} else if len(queue) == 0 && !paused && !ended {
			// Nothing more before cursor: let the clock get there.
			wait = min(wait, max(time.Duration(float64(cursor.Sub(now()))/speed), 0))
		}
		if wait == 0 {
			select {
			case <-ctx.Done():
				return
			default:
				continue
			}
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		case <-tick.C:
			timer.Stop()
			sendClock()
		case op := <-p.ops:
			timer.Stop()
			switch op.op {
			case "pause":
				if !paused {
					clock0, wall0, paused = now(), time.Now(), true
				}
			case "play":
				if paused && !ended {
					wall0, paused = time.Now(), false
				}
			case "speed":
				clock0, wall0, speed = now(), time.Now(), op.speed
			case "seek":
				wasPaused := paused && !ended
				if !seek(op.at) {
					return
				}
				paused = wasPaused
				if paused {
					clock0 = op.at
				}
			}
			sendClock()
		}
	}
}

// liveLag is how far behind now a replay hands over to live (or ends):
// the recorder writes about once a second.
const liveLag = 3 * time.Second

// send queues one recorded change as the delta the view should get.
func (p *player) send(ch timeline.Change, inView map[twin.ID]*twin.Feature) {
	prev, was := inView[ch.ID]
	f := ch.Feature
	visible := f != nil && f.Geometry != nil && intersects(p.sub.bbox, f.Geometry.Bound()) &&
		containsLayer(p.sub.layers, f.ID.Layer) && p.c.p.Sees(f)
	var kind twin.ChangeKind
	switch {
	case visible:
		inView[ch.ID] = f
		kind = twin.Upsert
	case was:
		delete(inView, ch.ID)
		f, kind = prev, twin.Remove
	default:
		return
	}
	b, err := encodeDelta(ch.Seq, kind, f)
	if err != nil {
		p.c.h.log.Error("websocket replay", "err", err)
		return
	}
	// Mark it as replayed, with its time: {"op":"delta",... -> {"op":"delta","replay":true,"at":"…",...
	b = append(fmt.Appendf(nil, `{"op":"delta","replay":true,"at":%q,`, fmtAt(ch.Time)), bytes.TrimPrefix(b, []byte(`{"op":"delta",`))...)
	p.c.enqueueReplay(b)
	p.c.h.m.replayDeltas.Inc()
}

func containsLayer(ls []twin.Layer, l twin.Layer) bool {
	for _, x := range ls {
		if x == l {
			return true
		}
	}
	return false
}

func fmtAt(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// enqueueReplay queues a replay message: never coalesced, never dropped
// (the player waits for room, see replayRoom).
func (c *client) enqueueReplay(msg []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.q.push(&item{msg: msg})
	c.signal()
}

// waitDrained waits until everything queued is written (false when ctx
// ended or the client closed first).
func (c *client) waitDrained(ctx context.Context) bool {
	for {
		c.mu.Lock()
		n, closed := c.q.n, c.closed
		c.mu.Unlock()
		if closed {
			return false
		}
		if n == 0 {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// replayRoom reports whether the client's queue has room for more replay:
// the player waits while half the budget is pending, so a slow reader
// slows the replay instead of losing deltas.
func (c *client) replayRoom() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.closed && c.q.bytes < c.h.opts.QueueBytes/2
}

// playState is the client's replay, guarded by playMu.
type playState struct {
	playMu sync.Mutex
	player *player
}
