package demo

import _ "embed"

// Rules is the demo rule set (rules.yaml) that `twin serve --demo` runs when
// no --rules file is given: muck trucks on bridges in forbidden hours, septic
// gas thresholds, hydrant pressure 0, building risk and device offline.
//
//go:embed rules.yaml
var Rules []byte
