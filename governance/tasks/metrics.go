package tasks

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics count the loop's moving parts; open tasks by kind and state are
// figures of the twin (indicators), not counters here.
type metrics struct {
	issued    *prometheus.CounterVec // by kind
	actions   *prometheus.CounterVec // by kind, action
	escalated *prometheus.CounterVec // by kind
	reminded  prometheus.Counter
	cases     prometheus.Counter // enforcement cases opened
	captures  prometheus.Counter // camera captures attached as evidence
}

func newMetrics(reg prometheus.Registerer) metrics {
	m := metrics{
		issued: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "twin_tasks_issued_total",
			Help: "Tasks issued, by kind (directive targets and forwards, rectification, enforcement)."}, []string{"kind"}),
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "twin_tasks_actions_total",
			Help: "Task steps taken (ack, report, close), by kind and action."}, []string{"kind", "action"}),
		escalated: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "twin_tasks_escalated_total",
			Help: "Overdue tasks escalated one tier, by kind."}, []string{"kind"}),
		reminded: prometheus.NewCounter(prometheus.CounterOpts{Name: "twin_tasks_reminded_total",
			Help: "Tasks whose persons were reminded of a near due time."}),
		cases: prometheus.NewCounter(prometheus.CounterOpts{Name: "twin_tasks_enforcement_cases_total",
			Help: "Enforcement cases opened from bridge crossings in forbidden hours."}),
		captures: prometheus.NewCounter(prometheus.CounterOpts{Name: "twin_tasks_camera_captures_total",
			Help: "Camera captures (a camera within the radius of a truck's track on a deck) attached as evidence."}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.issued, m.actions, m.escalated, m.reminded, m.cases, m.captures} {
			if err := reg.Register(c); err != nil {
				slog.Default().Warn("tasks: register metric", "err", err)
			}
		}
	}
	return m
}
