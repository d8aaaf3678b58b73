package main

import (
	"context"

	"github.com/paulmach/orb"

	"github.com/citytwin/citytwin/auth"
	"github.com/citytwin/citytwin/governance/incidents"
	"github.com/citytwin/citytwin/rules"
)

// simOperator is who the demo's simulated operators act as.
var simOperator = auth.Principal{Subject: "sim-operator", Role: auth.Operator, Region: auth.CityCode}

// simDesk lets the demo sim's people act through the incident service and
// the rules engine, as principals of their own (a grid worker with a field
// role for its incidents, an operator for the rest), so each step is checked
// and recorded exactly as one through the HTTP API.
type simDesk struct {
	inc *incidents.Service
	eng *rules.Engine
}

func (d simDesk) Incident(_ context.Context, worker, name, action, note string, at *orb.Point) error {
	p := simOperator
	if worker != "" {
		p = auth.Principal{Subject: worker, Role: auth.Field, Region: auth.CityCode}
	}
	a := incidents.Action{Note: note}
	if at != nil {
		lon, lat := at[0], at[1]
		a.Lon, a.Lat = &lon, &lat
	}
	_, err := d.inc.Act(p, name, action, a)
	return err
}

func (d simDesk) Alert(_ context.Context, name, action string) error {
	_, err := d.eng.AlertAction(simOperator, name, action) //nolint:contextcheck // the engine detaches its notifications from any caller on purpose
	return err
}
