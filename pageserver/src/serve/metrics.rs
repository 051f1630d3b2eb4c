//! Prometheus metrics (`GET /metrics`): request latency histograms by method, route and
//! status, recorded by a middleware around every request; and, read from each project's
//! store at scrape time, branch count, page cache hits and misses, WAL bytes written and
//! bytes GC reclaimed, labelled by project; with `--remote`, each project's replication:
//! its recovery point's lag, bytes and objects uploaded, failed syncs, and whether it was
//! fenced.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use pagefork_engine::{LayerCacheStats, StoreStats};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::projects::Projects;
use crate::replication::Replication;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    /// The route's pattern (`/v1/projects/{project}/branches`), not the path, so the
    /// label set stays small.
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProjectLabels {
    project: String,
}

/// The server's metrics registry.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Histogram>,
}

impl Metrics {
    pub(crate) fn new(projects: Arc<Projects>, replication: Arc<Replication>) -> Metrics {
        let mut registry = Registry::default();
        // 10 µs to about 42 s, doubling.
        let requests = Family::<RequestLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_01, 2.0, 23))
        });
        registry.register(
            "pagefork_http_request_duration_seconds",
            "Time to answer an HTTP request, by method, route and status",
            requests.clone(),
        );
        registry.register_collector(Box::new(StoreCollector {
            projects,
            replication,
        }));
        Metrics { registry, requests }
    }

    /// The metrics in Prometheus' text format.
    pub(crate) fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// Middleware: times each request and records it under its route.
pub(crate) async fn record_request(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    // Only the standard methods get their own label, so no client can grow the label
    // sets without bound.
    let method = match request.method().as_str() {
        known @ ("GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS") => known,
        _ => "other",
    }
    .to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    tracing::info!(%method, %path, status, elapsed_us = elapsed.as_micros() as u64, "request");
    metrics
        .requests
        .get_or_create(&RequestLabels {
            method,
            route,
            status,
        })
        .observe(elapsed.as_secs_f64());
    response
}

/// Reads each project's store counters at scrape time.
#[derive(Debug)]
struct StoreCollector {
    projects: Arc<Projects>,
    replication: Arc<Replication>,
}

/// One project's figures, read once per scrape.
struct ProjectSnapshot {
    project: String,
    branches: u64,
    stats: StoreStats,
    /// Its replication, with `--remote`.
    remote: Option<pagefork_remote::ReplicaStatus>,
    /// The layer files the bucket does not hold yet, with `--remote`.
    queued: Option<pagefork_remote::Queued>,
    /// Its layer cache, with local disk as a cache of the bucket.
    layer_cache: Option<pagefork_engine::LayerCacheStats>,
}

/// Encodes one metric with a value per project (projects without one are left out).
fn encode_per_project(
    encoder: &mut DescriptorEncoder<'_>,
    snapshots: &[ProjectSnapshot],
    (name, help, counter): (&str, &str, bool),
    value: impl Fn(&ProjectSnapshot) -> Option<u64>,
) -> Result<(), std::fmt::Error> {
    let metric_type = if counter {
        ConstCounter::new(0u64).metric_type()
    } else {
        ConstGauge::new(0i64).metric_type()
    };
    let mut metric = encoder.encode_descriptor(name, help, None, metric_type)?;
    for snapshot in snapshots {
        let Some(value) = value(snapshot) else {
            continue;
        };
        let labels = ProjectLabels {
            project: snapshot.project.clone(),
        };
        let family = metric.encode_family(&labels)?;
        if counter {
            ConstCounter::new(value).encode(family)?;
        } else {
            ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX)).encode(family)?;
        }
    }
    Ok(())
}

impl Collector for StoreCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let snapshots: Vec<ProjectSnapshot> = self
            .projects
            .list()
            .into_iter()
            .map(|(project, store)| ProjectSnapshot {
                remote: self
                    .replication
                    .get(&project)
                    .map(|replicator| replicator.status()),
                queued: self
                    .replication
                    .get(&project)
                    .and_then(|replicator| replicator.queued().ok()),
                project,
                branches: store.branch_count() as u64,
                stats: store.stats(),
                layer_cache: store.layer_cache_stats(),
            })
            .collect();
        let encoder = &mut encoder;
        encode_per_project(
            encoder,
            &snapshots,
            ("pagefork_branches", "Live branches", false),
            |snapshot| Some(snapshot.branches),
        )?;
        encode_per_project(
            encoder,
            &snapshots,
            (
                "pagefork_page_cache_hits",
                "Page reads the page cache answered",
                true,
            ),
            |snapshot| Some(snapshot.stats.cache_hits),
        )?;
        encode_per_project(
            encoder,
            &snapshots,
            (
                "pagefork_page_cache_misses",
                "Page reads the page cache did not answer",
                true,
            ),
            |snapshot| Some(snapshot.stats.cache_misses),
        )?;
        encode_per_project(
            encoder,
            &snapshots,
            (
                "pagefork_wal_bytes",
                "Bytes of WAL written over the store's life (its end LSN)",
                true,
            ),
            |snapshot| Some(snapshot.stats.wal_end.0),
        )?;
        encode_per_project(
            encoder,
            &snapshots,
            (
                "pagefork_gc_reclaimed_bytes",
                "Bytes of layer files GC removed since the server started (gross: a rewritten file counts whole; what GC wrote is not subtracted)",
                true,
            ),
            |snapshot| Some(snapshot.stats.gc_bytes_removed),
        )?;
        encode_per_project(
            encoder,
            &snapshots,
            (
                "pagefork_remote_lag_bytes",
                "Bytes of WAL written since the recovery point in object storage (what losing the disk would lose)",
                false,
            ),
            |snapshot| {
                let remote = snapshot.remote.as_ref()?;
                let synced = remote.recovery_point.map_or(0, |lsn| lsn.0);
                Some(snapshot.stats.wal_end.0.saturating_sub(synced))
            },
        )?;
        encode_per_project(
            encoder,
            &snapshots,
            (
                "pagefork_remote_queued_layers",
                "Layer files the bucket does not hold yet (flushed since the last sync)",
                false,
            ),
            |snapshot| snapshot.queued.map(|queued| queued.layers),
        )?;
        encode_per_project(
            encoder,
            &snapshots,
            (
                "pagefork_remote_queued_bytes",
                "Bytes the next sync uploads: layer files the bucket does not hold and the WAL since the recovery point",
                false,
            ),
            |snapshot| {
                let remote = snapshot.remote.as_ref()?;
                let synced = remote.recovery_point.map_or(0, |lsn| lsn.0);
                let wal = snapshot.stats.wal_end.0.saturating_sub(synced);
                Some(snapshot.queued?.layer_bytes + wal)
            },
        )?;
        encode_per_project(
            encoder,
            &snapshots,
            (
                "pagefork_remote_uploaded_bytes",
                "Bytes uploaded to object storage since the server started",
                true,
            ),
            |snapshot| snapshot.remote.as_ref().map(|remote| remote.uploaded_bytes),
        )?;
        encode_per_project(
            encoder,
            &snapshots,
            (
                "pagefork_remote_uploaded_objects",
                "Objects uploaded to object storage since the server started",
                true,
            ),
            |snapshot| {
                snapshot
                    .remote
                    .as_ref()
                    .map(|remote| remote.uploaded_objects)
            },
        )?;
        encode_per_project(
            encoder,
            &snapshots,
            (
                "pagefork_remote_sync_failures",
                "Syncs to object storage that failed since the server started",
                true,
            ),
            |snapshot| snapshot.remote.as_ref().map(|remote| remote.failures),
        )?;
        encode_per_project(
            encoder,
            &snapshots,
            (
                "pagefork_remote_fenced",
                "1 once a newer process attached to the project's location (this server publishes nothing more there)",
                false,
            ),
            |snapshot| {
                snapshot
                    .remote
                    .as_ref()
                    .map(|remote| u64::from(remote.fenced_by.is_some()))
            },
        )?;
        type CacheMetric = (
            &'static str,
            &'static str,
            bool,
            fn(&LayerCacheStats) -> u64,
        );
        let cache_metrics: [CacheMetric; 4] = [
            (
                "pagefork_layer_cache_resident_bytes",
                "Bytes of layer files on local disk, with local disk as a cache of the bucket",
                false,
                |stats| stats.resident_bytes,
            ),
            (
                "pagefork_layer_cache_evicted_layers",
                "Layer files only in the bucket, downloaded by the first read that needs one",
                false,
                |stats| stats.evicted_layers,
            ),
            (
                "pagefork_layer_cache_downloaded_bytes",
                "Bytes of evicted layer files downloaded again since the server started",
                true,
                |stats| stats.downloaded_bytes,
            ),
            (
                "pagefork_layer_cache_evictions",
                "Layer files evicted from local disk since the server started",
                true,
                |stats| stats.evictions,
            ),
        ];
        for (name, help, counter, value) in cache_metrics {
            encode_per_project(encoder, &snapshots, (name, help, counter), |snapshot| {
                snapshot.layer_cache.as_ref().map(value)
            })?;
        }
        Ok(())
    }
}
