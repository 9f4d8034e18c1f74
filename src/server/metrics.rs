//! `GET /metrics`: the server's metrics in the Prometheus text format (version 0.0.4), from
//! `prometheus-client`'s registry, one per server (no process-wide recorder: several servers in one
//! test process keep their own numbers).
//!
//! What is counted, and where: a call's start and end, and its engine's drop and lateness counters,
//! once per call in the driver; turn latencies once per turn (the engine's `CallEvent::Latency`);
//! backend failures as the driver sees them. Nothing is counted per audio frame. Every label is
//! from a closed set (carrier, end reason, latency stage, backend and error kind, outbox kind):
//! no phone number, name or transcript ever becomes a label.

use std::sync::atomic::{AtomicI64, AtomicU64};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::AppState;
use crate::backends::BackendError;
use crate::model::{EndReason, TurnLatency};

/// Upper bounds (seconds) of the turn latency buckets: from a fast prompt-cache hit to a slow
/// recogniser.
const LATENCY_BUCKETS: [f64; 13] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0,
];

/// Upper bounds (seconds) of the delivery lag buckets: from a text sent at once to a webhook
/// retried for an hour.
const DELIVERY_LAG_BUCKETS: [f64; 12] = [
    0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0,
];

/// Upper bounds (seconds) of the inbound frame gap buckets: carriers send a frame every 20 ms;
/// the socket hands the server two at a time once a stream is steady (`socket.rs`), so most gaps
/// are near 0 or 40 ms, and what matters is the tail: a network or server stall.
pub const FRAME_GAP_BUCKETS: [f64; 10] = [0.005, 0.01, 0.02, 0.03, 0.045, 0.06, 0.1, 0.2, 0.5, 1.0];

/// A call's own tally of the gaps between the caller-audio messages it received: plain counts
/// per bucket (no lock, no atomic per frame), added to `receptionist_inbound_frame_gap_seconds`
/// once when the call ends.
#[derive(Debug, Default)]
pub struct FrameGaps {
    last: Option<std::time::Instant>,
    /// Per bucket of [`FRAME_GAP_BUCKETS`], then one for longer gaps: (count, sum in seconds).
    buckets: [(u32, f64); FRAME_GAP_BUCKETS.len() + 1],
}

impl FrameGaps {
    /// A message with caller audio arrived at `now`.
    pub fn arrived(&mut self, now: std::time::Instant) {
        if let Some(last) = self.last.replace(now) {
            let gap = now.saturating_duration_since(last).as_secs_f64();
            let i = FRAME_GAP_BUCKETS.partition_point(|&upper| upper < gap);
            let b = &mut self.buckets[i];
            b.0 += 1;
            b.1 += gap;
        }
    }

    /// Gaps counted so far.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.0 as u64).sum()
    }
}

/// How long a scrape waits for the outbox count before leaving it out.
const OUTBOX_QUERY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CarrierLabel {
    carrier: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabel {
    stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendErrorLabel {
    backend: &'static str,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

type HistogramFamily<S> = Family<S, Histogram, fn() -> Histogram>;

/// The server's metrics. Cheap to update from any thread.
pub struct Metrics {
    registry: Registry,
    calls_active: Gauge<i64, AtomicI64>,
    calls_started: Family<CarrierLabel, Counter>,
    calls_ended: Family<ReasonLabel, Counter>,
    turn_latency: HistogramFamily<StageLabel>,
    stt_frames_dropped: Counter<u64, AtomicU64>,
    recording_frames_late: Counter<u64, AtomicU64>,
    recording_gap_ms: Counter<u64, AtomicU64>,
    backend_errors: Family<BackendErrorLabel, Counter>,
    outbox_pending: Family<KindLabel, Gauge>,
    draining: Gauge<i64, AtomicI64>,
    journal_bytes: Gauge<i64, AtomicI64>,
    journal_calls: Gauge<i64, AtomicI64>,
    journal_write_failures: Counter<u64, AtomicU64>,
    delivery_lag: HistogramFamily<KindLabel>,
    frame_gaps: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("receptionist");
        let m = Self {
            calls_active: Gauge::default(),
            calls_started: Family::default(),
            calls_ended: Family::default(),
            turn_latency: Family::new_with_constructor(|| Histogram::new(LATENCY_BUCKETS)),
            stt_frames_dropped: Counter::default(),
            recording_frames_late: Counter::default(),
            recording_gap_ms: Counter::default(),
            backend_errors: Family::default(),
            outbox_pending: Family::default(),
            draining: Gauge::default(),
            journal_bytes: Gauge::default(),
            journal_calls: Gauge::default(),
            journal_write_failures: Counter::default(),
            delivery_lag: Family::new_with_constructor(|| Histogram::new(DELIVERY_LAG_BUCKETS)),
            frame_gaps: Histogram::new(FRAME_GAP_BUCKETS),
            registry: Registry::default(),
        };
        registry.register(
            "calls_active",
            "Calls in progress on this node",
            m.calls_active.clone(),
        );
        registry.register(
            "calls_started",
            "Calls whose media stream started, by carrier",
            m.calls_started.clone(),
        );
        registry.register(
            "calls_ended",
            "Calls ended, by end reason",
            m.calls_ended.clone(),
        );
        registry.register(
            "turn_latency_seconds",
            "Per-turn latency by stage: endpointing (silence waited), stt (end of turn to transcript), llm_first and llm (transcript to the language model's first result and to its end, when consulted), tts (what to say known to reply audio), total (caller's last speech to first agent audio)",
            m.turn_latency.clone(),
        );
        registry.register(
            "stt_frames_dropped",
            "Caller audio frames the recogniser feed dropped because they were not taken in time",
            m.stt_frames_dropped.clone(),
        );
        registry.register(
            "recording_frames_late",
            "Caller audio frames that arrived too late to be placed in the recording",
            m.recording_frames_late.clone(),
        );
        registry.register(
            "recording_gap_milliseconds",
            "Recording written as silence because the recorder's queue was full (a slow or stalled disk): the call went on",
            m.recording_gap_ms.clone(),
        );
        registry.register(
            "backend_errors",
            "Speech backend failures seen by calls, by backend (stt, tts) and kind (timeout, unavailable, failed)",
            m.backend_errors.clone(),
        );
        registry.register(
            "outbox_pending",
            "Outbox rows (texts, email, webhooks, evaluations) waiting to be delivered, by kind; read from the database at each scrape",
            m.outbox_pending.clone(),
        );
        registry.register(
            "draining",
            "1 while the server is draining (shutting down: no new calls), else 0",
            m.draining.clone(),
        );
        registry.register(
            "journal_bytes",
            "Bytes of call records held in this node's journal because the database did not take them (replayed when it is back)",
            m.journal_bytes.clone(),
        );
        registry.register(
            "journal_calls",
            "Calls with records in this node's journal",
            m.journal_calls.clone(),
        );
        registry.register(
            "journal_write_failures",
            "Failed writes to the call journal (a full or read-only disk while the database is away); retried, the records held in memory",
            m.journal_write_failures.clone(),
        );
        registry.register(
            "delivery_lag_seconds",
            "From an outbox row's creation (the call's end, a status change) to its delivery, by kind (sms, email, webhook, evaluate): retries included",
            m.delivery_lag.clone(),
        );
        registry.register(
            "inbound_frame_gap_seconds",
            "Time between consecutive caller-audio messages as the server received them, added when each call ends (the socket hands over two messages at a time once a stream is steady: the tail is what matters)",
            m.frame_gaps.clone(),
        );
        Self { registry, ..m }
    }

    /// Add a call's frame gaps to the histogram: each bucket's gaps observed at their mean, so the
    /// bucket counts and the sum are exact.
    pub fn frame_gaps(&self, gaps: &FrameGaps) {
        for &(count, sum) in &gaps.buckets {
            if count > 0 {
                let mean = sum / count as f64;
                for _ in 0..count {
                    self.frame_gaps.observe(mean);
                }
            }
        }
    }

    /// An outbox row of `kind` was delivered `lag_s` seconds after it was queued.
    pub fn delivered(&self, kind: crate::store::outbox::OutboxKind, lag_s: f64) {
        self.delivery_lag
            .get_or_create(&KindLabel {
                kind: kind.as_str(),
            })
            .observe(lag_s);
    }

    /// The journal's byte gauge (updated by `persist::Journal`).
    pub fn journal_bytes(&self) -> Gauge<i64, AtomicI64> {
        self.journal_bytes.clone()
    }

    /// The journal's call gauge.
    pub fn journal_calls(&self) -> Gauge<i64, AtomicI64> {
        self.journal_calls.clone()
    }

    pub fn journal_write_failed(&self) {
        self.journal_write_failures.inc();
    }

    /// A call's media stream started on `carrier`; it counts as active until the guard drops.
    pub fn call_started(&self, carrier: &str) -> ActiveCall {
        self.calls_started
            .get_or_create(&CarrierLabel {
                carrier: carrier_label(carrier),
            })
            .inc();
        self.calls_active.inc();
        ActiveCall(self.calls_active.clone())
    }

    /// A call ended: its reason, and its engine's counters (whole-call totals).
    pub fn call_ended(&self, reason: EndReason, stt_frames_dropped: u64, late_frames: u64) {
        self.calls_ended
            .get_or_create(&ReasonLabel {
                reason: reason.as_str(),
            })
            .inc();
        if stt_frames_dropped > 0 {
            self.stt_frames_dropped.inc_by(stt_frames_dropped);
        }
        if late_frames > 0 {
            self.recording_frames_late.inc_by(late_frames);
        }
    }

    /// A call's recording missed `ms` (written as silence) because the recorder could not keep
    /// up.
    pub fn recording_gap(&self, ms: u64) {
        self.recording_gap_ms.inc_by(ms);
    }

    /// One turn's latencies (the language model's stages when it was consulted).
    pub fn turn(&self, l: &TurnLatency) {
        for (stage, ms) in [
            ("endpointing", Some(l.endpointing_ms)),
            ("stt", Some(l.stt_ms)),
            ("llm_first", l.llm_first_ms),
            ("llm", l.llm_ms),
            ("tts", Some(l.tts_ms)),
            ("total", Some(l.total_ms)),
        ] {
            if let Some(ms) = ms {
                self.turn_latency
                    .get_or_create(&StageLabel { stage })
                    .observe(ms as f64 / 1000.0);
            }
        }
    }

    /// A speech backend failed: `backend` is `stt` or `tts`.
    pub fn backend_error(&self, backend: &'static str, e: &BackendError) {
        let kind = match e {
            BackendError::Timeout => "timeout",
            BackendError::Unavailable(_) => "unavailable",
            BackendError::Failed(_) => "failed",
        };
        self.backend_errors
            .get_or_create(&BackendErrorLabel { backend, kind })
            .inc();
    }

    /// The server is draining (or not).
    pub fn set_draining(&self, draining: bool) {
        self.draining.set(i64::from(draining));
    }

    /// Pending outbox rows by kind, as just counted.
    fn set_outbox_pending(&self, counts: &[(String, i64)]) {
        self.outbox_pending.clear();
        for (kind, n) in counts {
            let kind = match kind.as_str() {
                "sms" => "sms",
                "email" => "email",
                "webhook" => "webhook",
                "evaluate" => "evaluate",
                _ => "other",
            };
            self.outbox_pending
                .get_or_create(&KindLabel { kind })
                .inc_by(*n);
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        // writing to a String cannot fail; a metric that fails to encode is a bug
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            tracing::error!(error = %e, "cannot encode the metrics");
        }
        out
    }
}

/// Counts a call as active while it lives.
pub struct ActiveCall(Gauge<i64, AtomicI64>);

impl Drop for ActiveCall {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The carrier as a label: only names this server uses.
fn carrier_label(carrier: &str) -> &'static str {
    match carrier {
        "twilio" => "twilio",
        "telnyx" => "telnyx",
        "plivo" => "plivo",
        "vonage" => "vonage",
        "signalwire" => "signalwire",
        "exotel" => "exotel",
        "web" => "web",
        _ => "other",
    }
}

/// The server's metrics: calls, turn latencies, dropped and late frames, backend errors, the
/// outbox and the drain.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "meta",
    responses((status = 200, description = "Prometheus text format, version 0.0.4: `receptionist_calls_active`, `receptionist_calls_started_total{carrier}`, `receptionist_calls_ended_total{reason}`, `receptionist_turn_latency_seconds{stage}` (histogram), `receptionist_stt_frames_dropped_total`, `receptionist_recording_frames_late_total`, `receptionist_backend_errors_total{backend,kind}`, `receptionist_outbox_pending{kind}`, `receptionist_draining`", content_type = "text/plain", body = String)),
)]
pub async fn metrics(State(state): State<AppState>) -> Response {
    // the outbox's depth is read now (an index range on pending rows); a database that does not
    // answer in time leaves it out of this scrape rather than holding the scrape up
    match tokio::time::timeout(OUTBOX_QUERY_TIMEOUT, state.store.pending_outbox_by_kind()).await {
        Ok(Ok(counts)) => state.metrics.set_outbox_pending(&counts),
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot count the outbox for metrics"),
        Err(_) => tracing::warn!("counting the outbox for metrics timed out"),
    }
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        )],
        state.metrics.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_render_in_the_prometheus_text_format() {
        let m = Metrics::new();
        let call = m.call_started("twilio");
        m.call_started("+15551234567"); // never a label: counted as "other"
        m.turn(&TurnLatency {
            turn: 1,
            endpointing_ms: 700,
            stt_ms: 120,
            llm_first_ms: None,
            llm_ms: None,
            tts_ms: 30,
            total_ms: 860,
        });
        m.turn(&TurnLatency {
            turn: 2,
            endpointing_ms: 700,
            stt_ms: 120,
            llm_first_ms: Some(300),
            llm_ms: None,
            tts_ms: 30,
            total_ms: 1160,
        });
        m.backend_error("tts", &BackendError::Timeout);
        m.call_ended(EndReason::Completed, 3, 0);
        m.set_outbox_pending(&[("sms".into(), 2), ("nonsense".into(), 1)]);
        let text = m.render();
        for line in [
            "# TYPE receptionist_calls_active gauge",
            "receptionist_calls_active 1",
            "receptionist_calls_started_total{carrier=\"twilio\"} 1",
            "receptionist_calls_started_total{carrier=\"other\"} 1",
            "receptionist_calls_ended_total{reason=\"completed\"} 1",
            "# TYPE receptionist_turn_latency_seconds histogram",
            "receptionist_turn_latency_seconds_count{stage=\"total\"} 2",
            "receptionist_turn_latency_seconds_bucket{stage=\"total\",le=\"1\"} 1",
            "receptionist_turn_latency_seconds_bucket{stage=\"total\",le=\"0.75\"} 0",
            "receptionist_turn_latency_seconds_count{stage=\"llm_first\"} 1",
            "receptionist_stt_frames_dropped_total 3",
            "receptionist_recording_frames_late_total 0",
            "receptionist_backend_errors_total{backend=\"tts\",kind=\"timeout\"} 1",
            "receptionist_outbox_pending{kind=\"sms\"} 2",
            "receptionist_outbox_pending{kind=\"other\"} 1",
            "receptionist_draining 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
        }
        assert!(!text.contains("+1555"), "{text}");
        assert!(
            !text.contains("stage=\"llm\""),
            "not consulted to its end: {text}"
        );
        drop(call);
        assert!(
            m.render()
                .lines()
                .any(|l| l == "receptionist_calls_active 0")
        );
    }

    #[test]
    fn frame_gaps_and_delivery_lag_render_with_exact_counts_and_sums() {
        let m = Metrics::new();
        let mut gaps = FrameGaps::default();
        let t0 = std::time::Instant::now();
        // 20 ms apart, then a 300 ms stall, then two in one wake-up
        for ms in [0, 20, 40, 340, 340] {
            gaps.arrived(t0 + std::time::Duration::from_millis(ms));
        }
        assert_eq!(gaps.count(), 4);
        m.frame_gaps(&gaps);
        m.delivered(crate::store::outbox::OutboxKind::Sms, 1.5);
        let text = m.render();
        for line in [
            "receptionist_inbound_frame_gap_seconds_count 4",
            "receptionist_inbound_frame_gap_seconds_bucket{le=\"0.005\"} 1",
            "receptionist_inbound_frame_gap_seconds_bucket{le=\"0.02\"} 3",
            "receptionist_inbound_frame_gap_seconds_bucket{le=\"0.2\"} 3",
            "receptionist_inbound_frame_gap_seconds_bucket{le=\"0.5\"} 4",
            "receptionist_delivery_lag_seconds_count{kind=\"sms\"} 1",
            "receptionist_delivery_lag_seconds_bucket{kind=\"sms\",le=\"2\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
        }
        let sum = text
            .lines()
            .find_map(|l| l.strip_prefix("receptionist_inbound_frame_gap_seconds_sum "))
            .unwrap();
        assert!((sum.parse::<f64>().unwrap() - 0.34).abs() < 1e-9, "{sum}");
    }
}
