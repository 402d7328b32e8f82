package uploader

// metrics.go owns the engine's Prometheus collectors.

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tracesync/tracesync/store"
)

// Metrics are the engine's Prometheus collectors. Create them with
// NewMetrics and pass them in Config.Metrics; one Metrics serves one Engine.
type Metrics struct {
	uploads        prometheus.Counter
	links          prometheus.Counter
	failures       *prometheus.CounterVec // by reason
	quarantined    *prometheus.CounterVec // by reason
	bytes          prometheus.Counter
	latency        prometheus.Histogram
	queueDepth     prometheus.Gauge
	inFlight       prometheus.Gauge
	concurrency    prometheus.Gauge
	retries        prometheus.Counter
	deletes        *prometheus.CounterVec // by result
	deletesPending prometheus.Gauge
	heldBack       prometheus.Gauge
	paused         prometheus.Gauge
	segments       prometheus.Counter
	behind         prometheus.Gauge
	oldestUnsent   atomic.Int64 // unix nanoseconds; 0 when nothing waits
	after          *afterMetrics

	mu     sync.Mutex // guards counts
	counts func() (store.Counts, error)
}

// NewMetrics creates the engine's collectors and registers them with reg
// (nil: not registered). Names start with tracesync_.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		uploads: prometheus.NewCounter(prometheus.CounterOpts{Name: "tracesync_uploads_total",
			Help: "Contents uploaded (presign, PUT and create succeeded, or traces adopted after a crash)."}),
		links: prometheus.NewCounter(prometheus.CounterOpts{Name: "tracesync_links_total",
			Help: "Paths linked to an already uploaded content (no upload)."}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tracesync_upload_failures_total",
			Help: "Failed upload or delete attempts, by reason (transient, permanent, auth, represign, changed, unreadable)."}, []string{"reason"}),
		quarantined: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tracesync_quarantined_total",
			Help: "Files quarantined, by reason (invalid, too-large, unreadable, rejected, incomplete, unsupported)."}, []string{"reason"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "tracesync_uploaded_bytes_total",
			Help: "Bytes sent to presigned URLs by successful uploads."}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tracesync_upload_duration_seconds",
			Help:    "Duration of one successful upload attempt (presign, PUT, create).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 14)}),
		queueDepth: prometheus.NewGauge(prometheus.GaugeOpts{Name: "tracesync_queue_depth",
			Help: "Uploads waiting for a worker (queued, waiting for a backoff, or for the lock on their upload name)."}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{Name: "tracesync_uploads_in_flight",
			Help: "Uploads and deletes running now."}),
		concurrency: prometheus.NewGauge(prometheus.GaugeOpts{Name: "tracesync_concurrency_limit",
			Help: "Uploads and deletes allowed in flight at once now: the adaptive limit (--workers auto), or the fixed --workers."}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{Name: "tracesync_retries_total",
			Help: "Transient failures scheduled for a retry."}),
		deletes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tracesync_deletes_total",
			Help: "Remote trace deletes, by result (deleted, already-gone, failed)."}, []string{"result"}),
		deletesPending: prometheus.NewGauge(prometheus.GaugeOpts{Name: "tracesync_deletes_pending",
			Help: "Remote trace deletes still to do."}),
		heldBack: prometheus.NewGauge(prometheus.GaugeOpts{Name: "tracesync_removals_held_back",
			Help: "Tracked files whose removal the mass-delete guard held back (see tracesync reconcile)."}),
		paused: prometheus.NewGauge(prometheus.GaugeOpts{Name: "tracesync_pool_paused",
			Help: "1 while the worker pool is paused (API key rejected or API unreachable)."}),
		segments: prometheus.NewCounter(prometheus.CounterOpts{Name: "tracesync_segments_uploaded_total",
			Help: "Segments of .jsonl files uploaded (a whole .jsonl is one; each append after it, another)."}),
		behind: prometheus.NewGauge(prometheus.GaugeOpts{Name: "tracesync_bytes_behind",
			Help: "Bytes written to growing .jsonl files and not yet recorded as sent."}),
	}
	unsent := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tracesync_oldest_unsent_seconds",
		Help: "How long the oldest bytes of a growing .jsonl not yet sent have waited since tracesync saw them (0: none wait)."},
		func() float64 {
			at := m.oldestUnsent.Load()
			if at == 0 {
				return 0
			}
			return time.Since(time.Unix(0, at)).Seconds()
		})
	m.after = newAfterMetrics(reg)
	if reg != nil {
		reg.MustRegister(m.uploads, m.links, m.failures, m.quarantined, m.bytes, m.latency, m.queueDepth, m.inFlight, m.concurrency,
			m.retries, m.deletes, m.deletesPending, m.heldBack, m.paused, m.segments, m.behind, unsent, filesCollector{m})
	}
	return m
}

var filesDesc = prometheus.NewDesc("tracesync_files", "Tracked paths by state, from the store.", []string{"state"}, nil)

// filesCollector reads the files-by-state counts from the store at scrape time.
type filesCollector struct{ m *Metrics }

func (c filesCollector) Describe(ch chan<- *prometheus.Desc) { ch <- filesDesc }

func (c filesCollector) Collect(ch chan<- prometheus.Metric) {
	c.m.mu.Lock()
	counts := c.m.counts
	c.m.mu.Unlock()
	if counts == nil {
		return
	}
	cs, err := counts()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(filesDesc, err)
		return
	}
	for _, s := range store.States {
		ch <- prometheus.MustNewConstMetric(filesDesc, prometheus.GaugeValue, float64(cs.Files[s]), string(s))
	}
}

func (m *Metrics) setCounts(fn func() (store.Counts, error)) {
	if m == nil {
		return
	}
	m.mu.Lock()
	m.counts = fn
	m.mu.Unlock()
}

// setLag publishes the bytes behind and the time the oldest of them was seen.
func (m *Metrics) setLag(behind int64, oldest time.Time) {
	m.behind.Set(float64(behind))
	if oldest.IsZero() {
		m.oldestUnsent.Store(0)
		return
	}
	m.oldestUnsent.Store(oldest.UnixNano())
}
