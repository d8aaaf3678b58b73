// Package rules is the CityTwin rules engine (CONTRACT §4): rules are data
// (YAML or JSON) with CEL conditions, evaluated on the twin's change feed and
// on a clock tick; what they find becomes objects in the `alerts` layer,
// building risk levels, and MQTT/webhook notifications.
package rules

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"
	_ "time/tzdata" // rule time zones must load on hosts without zoneinfo

	"gopkg.in/yaml.v3"

	"github.com/citytwin/citytwin/auth"
	"github.com/citytwin/citytwin/twin"
)

// Kinds of rule.
const (
	KindGeofence  = "geofence"
	KindThreshold = "threshold"
	KindRisk      = "risk"
	KindOffline   = "offline"
)

// Geofence detections.
const (
	DetectEnter   = "enter"
	DetectExit    = "exit"
	DetectInside  = "inside"
	DetectOutside = "outside"
	DetectCross   = "cross"
)

// Tiers of supervision, lowest first.
var tiers = []string{"street", "district", "city"}

// colours are the risk colours by level (1 red = major ... 5 green = low).
var colours = []string{"", "red", "orange", "yellow", "blue", "green"}

// DefaultTimeZone is the city's time zone for rule time windows.
const DefaultTimeZone = "Asia/Shanghai"

// RuleSet is one parsed, compiled rules file. It is immutable once Parse
// returns it and may be shared between goroutines.
type RuleSet struct {
	Name     string              // file name used in error messages
	Source   []byte              // the text as given; GET /api/rules returns it
	JSON     bool                // Source is JSON (else YAML)
	TimeZone string              `yaml:"timezone" json:"timezone,omitempty"`
	SLA      map[string]Duration `yaml:"sla" json:"sla,omitempty"` // per tier: how long an open, unacked alert may stay before escalating
	Rules    []*Rule             `yaml:"rules" json:"rules"`
	loc      *time.Location
}

// Rule is one rule as written. Fields apply per Kind; unknown fields are
// rejected so that typos do not silently disable a rule.
type Rule struct {
	Name     string `yaml:"name" json:"name"`
	Kind     string `yaml:"kind" json:"kind"`
	Disabled bool   `yaml:"disabled" json:"disabled,omitempty"`
	Severity string `yaml:"severity" json:"severity,omitempty"` // risk colour of the alert; default yellow
	Tier     string `yaml:"tier" json:"tier,omitempty"`         // starting tier; default street
	Message  string `yaml:"message" json:"message,omitempty"`
	// Title and TitleZH are the rule's display names for operators (English
	// and Chinese); the client shows them instead of the rule's name.
	Title   string `yaml:"title" json:"title,omitempty"`
	TitleZH string `yaml:"title_zh" json:"title_zh,omitempty"`
	// Condition is an extra CEL condition that must hold for the rule to fire.
	Condition string   `yaml:"condition" json:"condition,omitempty"`
	Subjects  Subjects `yaml:"subjects" json:"subjects,omitempty"`
	// Geofence.
	Target      Target   `yaml:"target" json:"target,omitempty"`
	Detect      Strings  `yaml:"detect" json:"detect,omitempty"`
	BufferM     float64  `yaml:"buffer_m" json:"buffer_m,omitempty"`   // GPS jitter tolerance, metres
	MinFixes    int      `yaml:"min_fixes" json:"min_fixes,omitempty"` // consecutive fixes before a state change
	DwellS      float64  `yaml:"dwell_s" json:"dwell_s,omitempty"`     // seconds a new state must last before it counts
	Windows     []string `yaml:"windows" json:"windows,omitempty"`     // "HH:MM-HH:MM" local times when the rule applies
	WindowsFrom string   `yaml:"windows_from" json:"windows_from,omitempty"`
	TimeZone    string   `yaml:"timezone" json:"timezone,omitempty"`
	// Threshold.
	Tiers []TierSpec `yaml:"tiers" json:"tiers,omitempty"`
	Clear string     `yaml:"clear" json:"clear,omitempty"` // CEL; when set, an alarm clears only when it holds (hysteresis)
	// Offline.
	After Duration `yaml:"after" json:"after,omitempty"`
	// Risk.
	Layer  string   `yaml:"layer" json:"layer,omitempty"`   // buildings by default
	Period Duration `yaml:"period" json:"period,omitempty"` // overdue hazard escalation step
	Notify *bool    `yaml:"notify" json:"notify,omitempty"` // notify owners; default true
	// Incident, when set, makes every newly opened alert of the rule also
	// report an incident of this type at the subject's position (merged
	// with an open one nearby, like any report), so the grid-worker loop
	// picks it up.
	Incident string `yaml:"incident" json:"incident,omitempty"`
	// Owner is the region code of the tier that owns the rule (default the
	// city, 500000). A rule owned by a district or street applies only to
	// subjects inside that region, and only admins of that region or above
	// may change it (PUT /api/rules).
	Owner string `yaml:"owner" json:"owner,omitempty"`

	line  int
	lines map[string]int // field path -> line, for error messages
}

// Subjects selects the objects a rule watches.
type Subjects struct {
	Layer string `yaml:"layer" json:"layer,omitempty"`
	When  string `yaml:"when" json:"when,omitempty"` // CEL filter, e.g. obj.kind == "muck_truck"
}

// Target is what a geofence is drawn against: a whole layer, a set of
// object ids, or one object.
type Target struct {
	Layer string   `yaml:"layer" json:"layer,omitempty"`
	IDs   []string `yaml:"ids" json:"ids,omitempty"`
	ID    string   `yaml:"id" json:"id,omitempty"`
}

// TierSpec is one threshold tier.
type TierSpec struct {
	When     string `yaml:"when" json:"when"`
	Severity string `yaml:"severity" json:"severity"`
}

// Strings accepts a scalar or a list.
type Strings []string

// UnmarshalYAML reads "a" or [a, b].
func (s *Strings) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*s = Strings{n.Value}
		return nil
	}
	var l []string
	if err := n.Decode(&l); err != nil {
		return err
	}
	*s = l
	return nil
}

// Duration is a time.Duration written as "10m", "24h", or a number of seconds.
type Duration time.Duration

// UnmarshalYAML reads a Go duration string or seconds.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Tag == "!!int" || n.Tag == "!!float" {
		var f float64
		if err := n.Decode(&f); err != nil {
			return err
		}
		*d = Duration(f * float64(time.Second))
		return nil
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("duration %q: want e.g. 10m or 24h", n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// ParseError is a rules file error with its position.
type ParseError struct {
	File  string
	Line  int
	Rule  string // "" for file-level errors
	Field string
	Msg   string
}

func (e *ParseError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	if e.Rule != "" {
		fmt.Fprintf(&b, "rule %q: ", e.Rule)
	}
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

var ruleKeys = map[string]bool{}
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)
var ownerRE = regexp.MustCompile(`^[0-9]{2,12}$`)

func init() {
	// The allowed keys of a rule are its yaml tags; computed once, read-only after.
	for _, k := range []string{"name", "kind", "disabled", "severity", "tier", "message", "title", "title_zh", "condition", "subjects",
		"target", "detect", "buffer_m", "min_fixes", "dwell_s", "windows", "windows_from", "timezone",
		"tiers", "clear", "after", "layer", "period", "notify", "incident", "owner"} {
		ruleKeys[k] = true
	}
}

// Parse reads a rules file (YAML, or JSON which YAML reads too) and compiles
// every CEL expression, so that a bad file is rejected whole with the line
// and field of the first error and never half-applied.
func Parse(name string, data []byte) (*RuleSet, error) {
	rs := &RuleSet{Name: name, Source: append([]byte(nil), data...)}
	rs.JSON = bytes.HasPrefix(bytes.TrimSpace(data), []byte("{"))
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, &ParseError{File: name, Line: yamlErrLine(err), Msg: cleanYAMLErr(err)}
	}
	if len(doc.Content) == 0 {
		return nil, &ParseError{File: name, Line: 1, Msg: "empty rules file"}
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, &ParseError{File: name, Line: root.Line, Msg: "want a mapping with a `rules` list"}
	}
	var rulesNode *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		var err error
		switch k.Value {
		case "rules":
			rulesNode = v
		case "timezone":
			err = v.Decode(&rs.TimeZone)
		case "sla":
			err = v.Decode(&rs.SLA)
		default:
			return nil, &ParseError{File: name, Line: k.Line, Field: k.Value, Msg: "unknown field (want rules, timezone, sla)"}
		}
		if err != nil {
			return nil, &ParseError{File: name, Line: v.Line, Field: k.Value, Msg: cleanYAMLErr(err)}
		}
	}
	if rulesNode == nil || rulesNode.Kind != yaml.SequenceNode {
		return nil, &ParseError{File: name, Line: root.Line, Field: "rules", Msg: "missing or not a list"}
	}
	tz := rs.TimeZone
	if tz == "" {
		tz = DefaultTimeZone
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return nil, &ParseError{File: name, Line: root.Line, Field: "timezone", Msg: err.Error()}
	}
	rs.loc = loc
	for t := range rs.SLA {
		if tierIndex(t) < 0 {
			return nil, &ParseError{File: name, Line: root.Line, Field: "sla", Msg: fmt.Sprintf("unknown tier %q (want street, district, city)", t)}
		}
	}
	seen := map[string]bool{}
	for _, rn := range rulesNode.Content {
		r, err := decodeRule(name, rn)
		if err != nil {
			return nil, err
		}
		if seen[r.Name] {
			return nil, &ParseError{File: name, Line: r.line, Rule: r.Name, Field: "name", Msg: "duplicate rule name"}
		}
		seen[r.Name] = true
		if err := validate(name, r); err != nil {
			return nil, err
		}
		if _, err := compile(r, name); err != nil {
			return nil, err
		}
		rs.Rules = append(rs.Rules, r)
	}
	return rs, nil
}

func decodeRule(file string, n *yaml.Node) (*Rule, error) {
	if n.Kind != yaml.MappingNode {
		return nil, &ParseError{File: file, Line: n.Line, Msg: "rule: want a mapping"}
	}
	r := &Rule{line: n.Line, lines: map[string]int{}}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Value == "name" {
			r.Name = v.Value
		}
		if !ruleKeys[k.Value] {
			return nil, &ParseError{File: file, Line: k.Line, Rule: r.Name, Field: k.Value, Msg: "unknown field"}
		}
		r.lines[k.Value] = v.Line
		recordLines(r.lines, k.Value, v)
	}
	// Decode field by field so a type error names its field and line.
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		one := &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{k, v}}
		if err := one.Decode(r); err != nil {
			return nil, &ParseError{File: file, Line: v.Line, Rule: r.Name, Field: k.Value, Msg: cleanYAMLErr(err)}
		}
	}
	return r, nil
}

// recordLines notes the line of nested fields (subjects.when, tiers[1].when).
func recordLines(lines map[string]int, path string, v *yaml.Node) {
	switch v.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(v.Content); i += 2 {
			p := path + "." + v.Content[i].Value
			lines[p] = v.Content[i+1].Line
			recordLines(lines, p, v.Content[i+1])
		}
	case yaml.SequenceNode:
		for i, c := range v.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			lines[p] = c.Line
			recordLines(lines, p, c)
		}
	}
}

func (r *Rule) lineOf(field string) int {
	for f := field; f != ""; {
		if l, ok := r.lines[f]; ok {
			return l
		}
		i := strings.LastIndexAny(f, ".[")
		if i < 0 {
			break
		}
		f = f[:i]
	}
	return r.line
}

func (r *Rule) errf(file, field, format string, a ...any) error {
	return &ParseError{File: file, Line: r.lineOf(field), Rule: r.Name, Field: field, Msg: fmt.Sprintf(format, a...)}
}

func validate(file string, r *Rule) error {
	if !nameRE.MatchString(r.Name) {
		return r.errf(file, "name", "%q: want 1-64 letters, digits, '-' or '_'", r.Name)
	}
	if r.Severity != "" && colourLevel(r.Severity) == 0 {
		return r.errf(file, "severity", "%q: want red, orange, yellow, blue or green", r.Severity)
	}
	if r.Owner != "" && !ownerRE.MatchString(r.Owner) {
		return r.errf(file, "owner", "%q: want a region code (2-12 digits)", r.Owner)
	}
	if r.Tier != "" && tierIndex(r.Tier) < 0 {
		return r.errf(file, "tier", "%q: want street, district or city", r.Tier)
	}
	if r.TimeZone != "" {
		if _, err := time.LoadLocation(r.TimeZone); err != nil {
			return r.errf(file, "timezone", "%v", err)
		}
	}
	for i, w := range r.Windows {
		if _, err := parseWindow(w); err != nil {
			return r.errf(file, fmt.Sprintf("windows[%d]", i), "%v", err)
		}
	}
	switch r.Kind {
	case KindGeofence:
		if r.Subjects.Layer == "" {
			return r.errf(file, "subjects", "a geofence needs subjects.layer")
		}
		n := 0
		if r.Target.Layer != "" {
			n++
		}
		if len(r.Target.IDs) > 0 {
			n++
		}
		if r.Target.ID != "" {
			n++
		}
		if n != 1 {
			return r.errf(file, "target", "want exactly one of layer, ids, id")
		}
		if len(r.Detect) == 0 {
			return r.errf(file, "detect", "missing (enter, exit, inside, outside, cross)")
		}
		for i, d := range r.Detect {
			switch d {
			case DetectEnter, DetectExit, DetectInside, DetectOutside, DetectCross:
			default:
				return r.errf(file, fmt.Sprintf("detect[%d]", i), "%q: want enter, exit, inside, outside or cross", d)
			}
		}
		if r.BufferM < 0 || r.BufferM > 10000 {
			return r.errf(file, "buffer_m", "%v: want 0..10000 metres", r.BufferM)
		}
		if r.MinFixes < 0 || r.DwellS < 0 {
			return r.errf(file, "min_fixes", "must not be negative")
		}
	case KindThreshold:
		if r.Subjects.Layer == "" {
			return r.errf(file, "subjects", "a threshold needs subjects.layer")
		}
		if len(r.Tiers) == 0 {
			return r.errf(file, "tiers", "a threshold needs at least one tier")
		}
		for i, t := range r.Tiers {
			if colourLevel(t.Severity) == 0 {
				return r.errf(file, fmt.Sprintf("tiers[%d].severity", i), "%q: want red, orange, yellow, blue or green", t.Severity)
			}
		}
	case KindOffline:
		if r.Subjects.Layer == "" {
			return r.errf(file, "subjects", "an offline rule needs subjects.layer")
		}
		if r.After <= 0 {
			return r.errf(file, "after", "an offline rule needs after > 0 (e.g. 10m)")
		}
	case KindRisk:
		if r.Period < 0 {
			return r.errf(file, "period", "must not be negative")
		}
	case "":
		return r.errf(file, "kind", "missing (geofence, threshold, risk, offline)")
	default:
		return r.errf(file, "kind", "%q: want geofence, threshold, risk or offline", r.Kind)
	}
	for _, l := range []struct{ field, v string }{{"subjects.layer", r.Subjects.Layer}, {"target.layer", r.Target.Layer}, {"layer", r.Layer}} {
		if l.v != "" && !knownLayer(l.v) {
			return r.errf(file, l.field, "unknown layer %q", l.v)
		}
	}
	return nil
}

// window is a local time-of-day interval in minutes; end < start wraps midnight.
type window struct{ start, end int }

func parseWindow(s string) (window, error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return window{}, fmt.Errorf("window %q: want HH:MM-HH:MM", s)
	}
	pa, err1 := parseHM(a)
	pb, err2 := parseHM(b)
	if err := errors.Join(err1, err2); err != nil {
		return window{}, fmt.Errorf("window %q: %w", s, err)
	}
	return window{pa, pb}, nil
}

func parseHM(s string) (int, error) {
	t, err := time.Parse("15:04", strings.TrimSpace(s))
	if err != nil {
		if strings.TrimSpace(s) == "24:00" {
			return 24 * 60, nil
		}
		return 0, fmt.Errorf("time %q: want HH:MM", s)
	}
	return t.Hour()*60 + t.Minute(), nil
}

func (w window) contains(min int) bool {
	if w.start <= w.end {
		return min >= w.start && min < w.end
	}
	return min >= w.start || min < w.end
}

func inWindows(ws []window, t time.Time, loc *time.Location) bool {
	if len(ws) == 0 {
		return true
	}
	lt := t.In(loc)
	m := lt.Hour()*60 + lt.Minute()
	for _, w := range ws {
		if w.contains(m) {
			return true
		}
	}
	return false
}

func tierIndex(t string) int {
	for i, x := range tiers {
		if x == t {
			return i
		}
	}
	return -1
}

// colourLevel maps a colour to its risk level (red 1 ... green 5), 0 if unknown.
func colourLevel(c string) int {
	for i, x := range colours {
		if i > 0 && x == c {
			return i
		}
	}
	return 0
}

// moreSevere returns the more severe of two colours.
func moreSevere(a, b string) string {
	la, lb := colourLevel(a), colourLevel(b)
	if la == 0 {
		return b
	}
	if lb != 0 && lb < la {
		return b
	}
	return a
}

var lineRE = regexp.MustCompile(`line (\d+)`)

func yamlErrLine(err error) int {
	if m := lineRE.FindStringSubmatch(err.Error()); m != nil {
		var n int
		if _, err := fmt.Sscan(m[1], &n); err != nil {
			return 1
		}
		return n
	}
	return 1
}

func cleanYAMLErr(err error) string {
	s := strings.TrimPrefix(err.Error(), "yaml: ")
	s = strings.TrimPrefix(s, "unmarshal errors:\n  ")
	s = regexp.MustCompile(`^line \d+: `).ReplaceAllString(s, "")
	return s
}

// ruleNames returns the rule names in order, for logs.
func (rs *RuleSet) ruleNames() []string {
	var out []string
	for _, r := range rs.Rules {
		out = append(out, r.Name)
	}
	sort.Strings(out)
	return out
}

// owner is the rule's owning region code (the city by default).
func (r *Rule) owner() string {
	if r.Owner == "" {
		return auth.CityCode
	}
	return r.Owner
}

// appliesTo reports whether a rule owned by a region evaluates f: city
// rules apply everywhere, a district's or street's only inside it.
func (r *Rule) appliesTo(f *twin.Feature) bool {
	o := r.owner()
	return o == auth.CityCode || f.InRegion(o)
}

// marshalSet writes rules (with the set's time zone and SLA) as a JSON rules
// file that Parse reads back.
func marshalSet(tz string, sla map[string]Duration, rules []*Rule) ([]byte, error) {
	doc := map[string]any{"rules": rules}
	if tz != "" {
		doc["timezone"] = tz
	}
	if len(sla) > 0 {
		doc["sla"] = sla
	}
	return json.MarshalIndent(doc, "", "  ")
}
