package rules

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/citytwin/citytwin/twin"
)

// The running rules are part of the twin (issue 13): one object,
// settings/rules, holds the rules text as given, so it travels through the
// change log to every server and into the store like any change. Every
// server's engine loads what the twin holds (Sync), so GET /api/rules
// answers the same everywhere, and a restarted or newly elected leader
// runs the last rules set, whoever set them (PUT /api/rules on any server,
// or a --rules file).
//
// A --rules file is offered to the twin (cmd/twin, through the leader) at
// start and whenever it changes (ModifiedHeader): it is taken unless it is
// stale: the very file the twin took last (a server restarting with it
// after a PUT), or older than the twin's rules (another server's older
// file). So an edited file wins over older rules, and a restart never
// undoes a PUT.

// SettingsID is the twin object holding the running rules.
var SettingsID = twin.NewID(twin.Settings, "rules")

// Props of SettingsID.
const (
	propSource = "source" // the rules text as given, in chunks (a prop string is at most twin.MaxTextBytes)
	propName   = "name"   // file name for messages: rules.yaml, rules.json or the --rules path
	propJSON   = "json"   // the text is JSON
	propSetAt  = "set_at" // when the rules were set (the leader's clock, RFC 3339)
	propSetBy  = "set_by" // who set them: a token's subject, rules-file@SERVER
	propFile   = "file"   // SHA-256 of the rules file taken last (FileMark)
)

// maxSharedSource bounds the rules text: it travels in one change-log
// record, and a NATS message is at most 1 MiB by default.
const maxSharedSource = 512 << 10

// sourceChunk is the size of one chunk of the stored text (well under
// twin.MaxTextBytes).
const sourceChunk = 32 << 10

// ErrRulesChanged is returned by Publish for a stale rules file (HTTP 412).
var ErrRulesChanged = errors.New("stale rules file")

// chunks splits s into pieces of at most sourceChunk bytes, never inside
// a UTF-8 sequence.
func chunks(s []byte) []any {
	out := []any{}
	for len(s) > 0 {
		n := min(sourceChunk, len(s))
		for n < len(s) && n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		out = append(out, string(s[:n]))
		s = s[n:]
	}
	return out
}

// sharedSource reads the rules text of a settings/rules object.
func sharedSource(f *twin.Feature) []byte {
	var b strings.Builder
	for _, c := range twin.PropStrings(f.Props.Get(propSource)) {
		b.WriteString(c)
	}
	return []byte(b.String())
}

// setAt reads when f's rules were set (zero when unknown).
func setAt(f *twin.Feature) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, f.Prop(propSetAt))
	return t
}

// SharedSetAt returns when the twin's rules were last set (false when the
// twin holds none).
func (e *Engine) SharedSetAt() (time.Time, bool) {
	f, ok := e.tw.Get(SettingsID)
	if !ok {
		return time.Time{}, false
	}
	return setAt(f), true
}

// FileMark describes a rules file offered to the twin (ModifiedHeader).
type FileMark struct {
	Modified time.Time // the file's modification time
	SHA256   string    // of its content (fileHash)
}

// fileClockSlack is how much older than the twin's rules a file may look
// and still count as newer: file times are coarse (the kernel stamps them
// with its tick, up to 10 ms behind the clock), so a file edited right
// after a PUT may look older than it. Kept short: a PUT made a moment
// after a file was written (and before it was offered) must stand.
const fileClockSlack = 50 * time.Millisecond

// fileHash identifies a rules file's content.
func fileHash(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Publish makes rs the twin's rules (on the leader: a follower's twin
// refuses with twin.ErrNotLeader; HTTP writes reach the leader through
// the relay) and loads them. Rules equal to the twin's are not written
// again. file, when not nil, marks rs as a rules file a server offers: it
// is stale (ErrRulesChanged, nothing changes) when it is the file the twin
// took last (a restart with the same file after a PUT), or when the
// twin's rules were set after the file was modified (another server's
// older file). A PUT keeps the mark of the file taken last.
func (e *Engine) Publish(rs *RuleSet, by string, file *FileMark) error {
	if len(rs.Source) > maxSharedSource {
		return fmt.Errorf("%w: %d bytes, limit %d", errTooLarge, len(rs.Source), maxSharedSource)
	}
	e.pubMu.Lock()
	defer e.pubMu.Unlock()
	now := e.clk.Now()
	_, _, err := e.tw.Update(SettingsID, func(cur *twin.Feature) (*twin.Feature, error) {
		mark := ""
		if cur != nil {
			mark = cur.Prop(propFile)
		}
		if file != nil {
			switch {
			case cur == nil:
			case mark == file.SHA256:
				return nil, fmt.Errorf("%w: this file was taken before, at the latest by %s", ErrRulesChanged, cur.Prop(propSetAt))
			case setAt(cur).After(file.Modified.Add(fileClockSlack)):
				return nil, fmt.Errorf("%w: the rules were set at %s, after the file was modified (%s)",
					ErrRulesChanged, cur.Prop(propSetAt), file.Modified.UTC().Format(time.RFC3339Nano))
			}
			mark = file.SHA256
		}
		if cur != nil && bytes.Equal(sharedSource(cur), rs.Source) && cur.Prop(propFile) == mark {
			return nil, nil // the same rules: nothing to write
		}
		props := map[string]any{
			propSource: chunks(rs.Source), propName: rs.Name, propJSON: rs.JSON,
			propSetAt: now.UTC().Format(time.RFC3339Nano), propSetBy: by,
		}
		if mark != "" {
			props[propFile] = mark
		}
		return &twin.Feature{ID: SettingsID, Props: twin.NewProps(props)}, nil
	})
	if err != nil {
		return err
	}
	e.Sync()
	return nil
}

var errTooLarge = errors.New("rules too large")

// Sync loads the twin's rules into the engine when they differ from the
// running ones, and reports whether the twin holds rules. Every server
// calls it when settings/rules changes (FollowShared), before answering
// GET /api/rules (read your writes on the server written to) and when it
// starts leading.
func (e *Engine) Sync() bool {
	e.syncMu.Lock()
	defer e.syncMu.Unlock()
	f, ok := e.tw.Get(SettingsID)
	if !ok {
		return false
	}
	src := sharedSource(f)
	if rs := e.RuleSet(); rs != nil && bytes.Equal(rs.Source, src) {
		return true
	}
	name := f.Prop(propName)
	if name == "" {
		name = "rules.yaml"
	}
	rs, err := Parse(name, src)
	if err != nil {
		// The leader parsed them before publishing; only a change of the
		// rules language between versions gets here.
		e.log.Error("rules: the twin's rules do not parse here; the previous rules keep running", "err", err)
		return true
	}
	if j, _ := f.Props.Get(propJSON).(bool); j {
		rs.JSON = true
	}
	e.Load(rs)
	return true
}

// FollowShared keeps the engine on the twin's rules until ctx ends: every
// server runs it (the leader's and the followers' engines load the same
// rules when their change arrives). It looks at settings/rules whenever
// the feed moves, and every few seconds (a change a leader took back at a
// step-down moves nothing).
func (e *Engine) FollowShared(ctx context.Context) error {
	cur := e.tw.Feed().Subscribe()
	defer cur.Close()
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	var seen *twin.Feature
	check := func(force bool) {
		f, _ := e.tw.Get(SettingsID)
		if f != nil && (f != seen || force) {
			e.Sync()
		}
		seen = f
	}
	check(true)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-cur.C():
			check(false)
		case <-t.C:
			check(true)
		}
	}
}
