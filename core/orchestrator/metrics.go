package orchestrator

import (
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rosterhq/roster/core/protocol"
)

// metrics are the orchestrator's Prometheus metrics, on their own registry
// (with the Go and process collectors) so that tests can run several
// orchestrators in one process.
type metrics struct {
	reg *prometheus.Registry

	servers      *prometheus.GaugeVec // role, state
	machines     *prometheus.GaugeVec // state
	spares       prometheus.Gauge
	desired      *prometheus.GaugeVec // role
	metricAvg    *prometheus.GaugeVec // role
	epoch        prometheus.Gauge
	commissions  *prometheus.CounterVec // role
	replacements *prometheus.CounterVec // role, reason
	scalings     *prometheus.CounterVec // role, direction
	failures     *prometheus.CounterVec // role, stage
	rejected     func(protocol.Reason)
	rejectedVec  *prometheus.CounterVec   // reason
	reports      *prometheus.CounterVec   // kind
	claimsIgn    *prometheus.CounterVec   // reason
	launches     *prometheus.CounterVec   // result
	retirements  prometheus.Counter       //
	orphans      *prometheus.CounterVec   // what
	latencyH     *prometheus.HistogramVec // kind
	readyH       *prometheus.HistogramVec // role
	configures   *prometheus.CounterVec   // role
	refreshes    *prometheus.CounterVec   // role
	reportsN     atomic.Uint64
}

func newMetrics(o *Orchestrator) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	f := func(c prometheus.Collector) { m.reg.MustRegister(c) }
	m.servers = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "roster_servers", Help: "Servers by role and state."}, []string{"role", "state"})
	m.machines = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "roster_machines", Help: "Machines by state (launching, spare, server, terminating)."}, []string{"state"})
	m.spares = prometheus.NewGauge(prometheus.GaugeOpts{Name: "roster_spares", Help: "Idle spare machines (launching ones included)."})
	m.desired = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "roster_pool_desired", Help: "Pool size the scaling policy wants, by role."}, []string{"role"})
	m.metricAvg = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "roster_scale_metric_average", Help: "Average of the role's scaling metric over its window."}, []string{"role"})
	m.epoch = prometheus.NewGauge(prometheus.GaugeOpts{Name: "roster_epoch", Help: "The orchestrator's epoch."})
	m.commissions = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "roster_commissions_total", Help: "Commissions sent, by role."}, []string{"role"})
	m.replacements = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "roster_replacements_total", Help: "Servers replaced or abandoned, by role and reason (lost, unhealthy, abandon, failed)."}, []string{"role", "reason"})
	m.scalings = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "roster_scaling_decisions_total", Help: "Pool size changes decided by the policy, by role and direction."}, []string{"role", "direction"})
	m.failures = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "roster_order_failures_total", Help: "Orders agents reported failed, by role and stage."}, []string{"role", "stage"})
	m.rejectedVec = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "roster_messages_rejected_total", Help: "Messages on the orchestrator's queue that failed verification, by reason."}, []string{"reason"})
	m.reports = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "roster_reports_total", Help: "Reports received, by kind."}, []string{"kind"})
	m.claimsIgn = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "roster_claims_ignored_total", Help: "Claims not granted (duplicate deliveries, unknown servers), by reason."}, []string{"reason"})
	m.launches = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "roster_machine_launches_total", Help: "Machine launches, by result."}, []string{"result"})
	m.retirements = prometheus.NewCounter(prometheus.CounterOpts{Name: "roster_spares_retired_total", Help: "Spare machines terminated because the pool had too many."})
	m.orphans = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "roster_orphans_total", Help: "Orphaned queues deleted and unknown machines terminated, by what."}, []string{"what"})
	m.latencyH = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "roster_queue_latency_seconds", Help: "Time from a report's sent_at to its receipt by the orchestrator.", Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}, []string{"kind"})
	m.readyH = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "roster_commission_ready_seconds", Help: "Time from commission to ready, by role.", Buckets: prometheus.ExponentialBuckets(0.01, 2.5, 12)}, []string{"role"})
	m.configures = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "roster_configures_total", Help: "Configure orders sent because a pool the role's config refers to changed, by role."}, []string{"role"})
	m.refreshes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "roster_refreshes_total", Help: "Outdated servers (their role's plugin or config changed) given a successor, by role."}, []string{"role"})
	for _, c := range []prometheus.Collector{m.servers, m.machines, m.spares, m.desired, m.metricAvg, m.epoch, m.commissions, m.replacements, m.scalings, m.failures, m.rejectedVec, m.reports, m.claimsIgn, m.launches, m.retirements, m.orphans, m.latencyH, m.readyH, m.configures, m.refreshes,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		f(c)
	}
	for _, r := range protocol.Reasons {
		m.rejectedVec.WithLabelValues(string(r))
	}
	for _, r := range o.opts.Config.Roles {
		m.addRole(r.Name)
	}
	m.rejected = func(r protocol.Reason) { m.rejectedVec.WithLabelValues(string(r)).Inc() }
	return m
}

// addRole makes the role's counters show from zero.
func (m *metrics) addRole(name string) {
	m.commissions.WithLabelValues(name)
	m.refreshes.WithLabelValues(name)
	for _, why := range []string{"lost", "unhealthy", "abandon", "failed"} {
		m.replacements.WithLabelValues(name, why)
	}
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

func (m *metrics) latency(k protocol.Kind, d time.Duration) {
	if d < 0 {
		d = 0
	}
	m.latencyH.WithLabelValues(string(k)).Observe(d.Seconds())
}
func (m *metrics) report(k protocol.Kind) {
	m.reports.WithLabelValues(string(k)).Inc()
	m.reportsN.Add(1)
}

// reportCount is the number of reports handled, for benchmarks.
func (m *metrics) reportCount() float64      { return float64(m.reportsN.Load()) }
func (m *metrics) commissioned(role string)  { m.commissions.WithLabelValues(role).Inc() }
func (m *metrics) replaced(role, why string) { m.replacements.WithLabelValues(role, why).Inc() }
func (m *metrics) failed(role, stage string) { m.failures.WithLabelValues(role, stage).Inc() }
func (m *metrics) claimIgnored(why string)   { m.claimsIgn.WithLabelValues(why).Inc() }
func (m *metrics) launched()                 { m.launches.WithLabelValues("ok").Inc() }
func (m *metrics) launchFailed()             { m.launches.WithLabelValues("error").Inc() }
func (m *metrics) retired()                  { m.retirements.Inc() }
func (m *metrics) orphan(what string)        { m.orphans.WithLabelValues(what).Inc() }
func (m *metrics) refreshed(role string)     { m.refreshes.WithLabelValues(role).Inc() }
func (m *metrics) configured(role string, n int) {
	m.configures.WithLabelValues(role).Add(float64(n))
}
func (m *metrics) readyIn(role string, d time.Duration) {
	m.readyH.WithLabelValues(role).Observe(d.Seconds())
}
func (m *metrics) scaled(role string, up bool) {
	dir := "down"
	if up {
		dir = "up"
	}
	m.scalings.WithLabelValues(role, dir).Inc()
}

// observe sets the gauges from the state; the lock is held.
func (m *metrics) observe(o *Orchestrator) {
	m.epoch.Set(float64(o.st.Epoch))
	m.servers.Reset()
	for _, r := range o.roles {
		for _, st := range []string{ServerCommissioning, ServerProvisioning, ServerReady, ServerDraining, ServerHalting} {
			m.servers.WithLabelValues(r.Name, st).Set(0)
		}
		lr := o.rt.role(r.Name)
		m.desired.WithLabelValues(r.Name).Set(float64(lr.decision.Desired))
		if lr.haveAvg {
			m.metricAvg.WithLabelValues(r.Name).Set(lr.avg)
		}
	}
	for _, s := range o.st.Servers {
		m.servers.WithLabelValues(s.Role, s.State).Inc()
	}
	counts := map[string]int{MachineLaunching: 0, MachineSpare: 0, MachineServer: 0, MachineTerminating: 0}
	for _, mc := range o.st.Machines {
		counts[mc.State]++
	}
	for st, n := range counts {
		m.machines.WithLabelValues(st).Set(float64(n))
	}
	m.spares.Set(float64(counts[MachineLaunching] + counts[MachineSpare]))
}
