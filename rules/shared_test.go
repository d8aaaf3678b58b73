package rules

import (
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/citytwin/citytwin/twin"
)

// TestSharedRules: Publish makes rules the twin's (settings/rules) and
// loads them; another engine on the same twin (a follower's, after the
// change arrived) loads the same with Sync, also a text over a prop
// string's limit (chunks cut between UTF-8 sequences); the same rules
// again write nothing; rules files offered are taken unless stale.
func TestSharedRules(t *testing.T) {
	f := newFixture(t, "")
	other := New(f.tw, Options{Clock: f.clk, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if other.Sync() {
		t.Fatal("Sync on a twin without rules reports rules")
	}
	long := gasA + "# " + strings.Repeat("规则", 40_000) + "\n" // ~240 KB of three-byte runes
	rs, err := Parse("rules.yaml", []byte(long))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.e.Publish(rs, "admin", nil); err != nil {
		t.Fatal(err)
	}
	if got := f.e.RuleSet(); got == nil || string(got.Source) != long {
		t.Fatal("the publishing engine does not run what it published")
	}
	if !other.Sync() || string(other.RuleSet().Source) != long {
		t.Fatal("another engine on the twin does not load the published rules")
	}
	st, _ := f.tw.Get(SettingsID)
	if n := len(twin.PropStrings(st.Props.Get(propSource))); n < 2 {
		t.Fatalf("a %d-byte text in %d chunks", len(long), n)
	}
	v := st.Version
	if err := f.e.Publish(rs, "admin", nil); err != nil {
		t.Fatal(err)
	}
	if st, _ := f.tw.Get(SettingsID); st.Version != v {
		t.Fatal("the same rules written again")
	}

	// A file offered: taken (newer), then stale when offered again after
	// a PUT (a restart with the same file), and another, older file is
	// stale too; an edit (new content, newer) is taken.
	fileA, fileB := []byte(gasA), []byte(gasB)
	rsA, _ := Parse("rules.yaml", fileA)
	rsB, _ := Parse("rules.yaml", fileB)
	f.clk.Advance(time.Minute)
	if err := f.e.Publish(rsB, "rules-file@x", &FileMark{Modified: f.clk.Now(), SHA256: fileHash(fileB)}); err != nil {
		t.Fatalf("a file newer than the rules: %v", err)
	}
	if other.Sync(); string(other.RuleSet().Source) != gasB {
		t.Fatal("the newer file is not the twin's rules")
	}
	f.clk.Advance(time.Minute)
	if err := f.e.Publish(rs, "admin", nil); err != nil {
		t.Fatal(err)
	}
	if err := f.e.Publish(rsB, "rules-file@x", &FileMark{Modified: f.clk.Now(), SHA256: fileHash(fileB)}); !errors.Is(err, ErrRulesChanged) {
		t.Fatalf("the file taken last, again after a PUT: %v, want ErrRulesChanged", err)
	}
	if err := f.e.Publish(rsA, "rules-file@y", &FileMark{Modified: f.clk.Now().Add(-2 * time.Second), SHA256: fileHash(fileA)}); !errors.Is(err, ErrRulesChanged) {
		t.Fatalf("a file older than the rules: %v, want ErrRulesChanged", err)
	}
	if other.Sync(); string(other.RuleSet().Source) != long {
		t.Fatal("a stale file changed the rules")
	}
	f.clk.Advance(time.Second)
	if err := f.e.Publish(rsA, "rules-file@y", &FileMark{Modified: f.clk.Now().Add(-time.Second - 10*time.Millisecond), SHA256: fileHash(fileA)}); err != nil {
		t.Fatalf("an edited file (its time a tick behind the rules'): %v", err)
	}
	if other.Sync(); string(other.RuleSet().Source) != gasA {
		t.Fatal("the edited file is not the twin's rules")
	}
	if at, ok := other.SharedSetAt(); !ok || !at.Equal(f.clk.Now()) {
		t.Fatalf("set at %v, want %v", at, f.clk.Now())
	}
}
