package query

import (
	"net/http"
	"strings"

	"github.com/citytwin/citytwin/auth"
	"github.com/citytwin/citytwin/internal/httpx"
	"github.com/citytwin/citytwin/twin"
)

// Summary is one tier's indicators (CONTRACT §5).
type Summary struct {
	Code           string         `json:"code"`
	Name           string         `json:"name,omitempty"`
	Level          string         `json:"level,omitempty"`
	AlertsOpen     map[string]int `json:"alerts_open"`        // by colour, state open or acked
	IncidentsState map[string]int `json:"incidents_by_state"` // by lifecycle state
	Escalated      int            `json:"incidents_escalated_here"`
	SLA            SLA            `json:"sla"`
	Devices        Devices        `json:"devices"`
	Vehicles       int            `json:"vehicles"`
	WorkersByState map[string]int `json:"workers_by_status"`
	BuildingsRisk  map[string]int `json:"buildings_by_risk"`
	Seq            uint64         `json:"seq"`
}

// SLA compliance: incidents whose every step met its deadline.
type SLA struct {
	Incidents  int     `json:"incidents"`
	Met        int     `json:"met"`
	Breached   int     `json:"breached"`
	Compliance float64 `json:"compliance"` // 0..1; 1 when no incidents
}

// Devices online out of total.
type Devices struct {
	Total   int `json:"total"`
	Online  int `json:"online"`
	Offline int `json:"offline"`
}

// Summarise computes the indicators of the region with the given code.
func (a *API) Summarise(p auth.Principal, code string) (Summary, bool) {
	region, ok := a.tw.Get(twin.NewID(twin.Regions, code))
	if code != auth.CityCode && (!ok || !p.Sees(region)) {
		return Summary{}, false
	}
	if !p.Sees(&twin.Feature{Place: twin.NewPlace(regionPath(code), "")}) {
		return Summary{}, false
	}
	s := Summary{Code: code, AlertsOpen: map[string]int{}, IncidentsState: map[string]int{},
		WorkersByState: map[string]int{}, BuildingsRisk: map[string]int{}}
	if region != nil {
		s.Name, s.Level = region.Prop("name"), region.Prop("level")
	}
	tier := auth.Principal{Region: code} // what the tier itself would see
	in := func(f *twin.Feature) bool { return p.Sees(f) && tier.Sees(f) }
	a.tw.Range(twin.Alerts, func(f *twin.Feature) bool {
		if in(f) {
			if st := f.Prop("state"); st == "open" || st == "acked" {
				s.AlertsOpen[f.Prop("severity")]++
			}
		}
		return true
	})
	a.tw.Range(twin.Incidents, func(f *twin.Feature) bool {
		if !in(f) {
			return true
		}
		s.IncidentsState[f.Prop("state")]++
		if tierCode, _ := f.Props.Get("tier_code").(string); tierCode == code {
			s.Escalated++
		}
		s.SLA.Incidents++
		if n, _ := f.Number("sla_breaches"); n > 0 {
			s.SLA.Breached++
		} else {
			s.SLA.Met++
		}
		return true
	})
	s.SLA.Compliance = 1
	if s.SLA.Incidents > 0 {
		s.SLA.Compliance = float64(s.SLA.Met) / float64(s.SLA.Incidents)
	}
	a.tw.Range(twin.Devices, func(f *twin.Feature) bool {
		if in(f) {
			s.Devices.Total++
			if f.Prop("status") == "offline" {
				s.Devices.Offline++
			} else {
				s.Devices.Online++
			}
		}
		return true
	})
	a.tw.Range(twin.Workers, func(f *twin.Feature) bool {
		if in(f) {
			s.WorkersByState[f.Prop("status")]++
		}
		return true
	})
	s.Seq = a.tw.Range(twin.Vehicles, func(f *twin.Feature) bool {
		if in(f) {
			s.Vehicles++
		}
		return true
	})
	a.tw.Range(twin.Buildings, func(f *twin.Feature) bool {
		if in(f) {
			if c := f.Prop("risk_color"); c != "" {
				s.BuildingsRisk[c]++
			}
		}
		return true
	})
	return s, true
}

// regionPath is the region path a region code itself lies on (city,
// district, street), so scope can be checked on a code alone.
func regionPath(code string) []string {
	path := []string{auth.CityCode}
	if len(code) >= 6 && code != auth.CityCode {
		path = append(path, code[:6])
	}
	if len(code) > 6 {
		path = append(path, code)
	}
	return path
}

// SummaryHandler serves GET /api/regions/{code}/summary.
func (a *API) SummaryHandler(w http.ResponseWriter, r *http.Request) {
	code := r.PathValue("code")
	if code == "" || strings.Trim(code, "0123456789") != "" {
		httpx.Error(w, http.StatusBadRequest, "bad region code", "want a GB/T 2260 code such as 500105")
		return
	}
	s, ok := a.Summarise(auth.Of(r.Context()), code)
	if !ok {
		httpx.Error(w, http.StatusNotFound, "not found", "region "+code)
		return
	}
	httpx.JSON(w, http.StatusOK, s)
}
