package house

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// handlerMetrics are the house's Prometheus metrics. Labels stay bounded:
// the call and the status, never a gateway, account or key.
type handlerMetrics struct {
	calls    *prometheus.CounterVec
	duration *prometheus.HistogramVec
	replays  prometheus.Counter
	expired  prometheus.Counter
	grants   prometheus.Gauge
}

func newHandlerMetrics() *handlerMetrics {
	return &handlerMetrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "helexa_house_calls_total",
			Help: "Calls answered by the clearing house, by call and HTTP status.",
		}, []string{"call", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "helexa_house_call_seconds",
			Help:    "Time to answer a call, by call.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 8),
		}, []string{"call"}),
		replays: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "helexa_house_idempotent_replays_total",
			Help: "Retried calls answered from the idempotency table without running again.",
		}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "helexa_house_leases_expired_total",
			Help: "Reservations and grants whose leases expired before their gateway ended them.",
		}),
		grants: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "helexa_house_grants_open",
			Help: "Credit grants outstanding.",
		}),
	}
}

func (m *handlerMetrics) register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.calls, m.duration, m.replays, m.expired, m.grants} {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}

func (m *handlerMetrics) observe(op string, status int, d time.Duration) {
	if op == "" {
		op = "none"
	}
	m.calls.WithLabelValues(op, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(op).Observe(d.Seconds())
}
