//! An `ObjectStore` that injects faults into a real client, for tests of remote storage:
//! the Nth request fails (as a server error would, after the client's own retries), every
//! request fails while a switch is on, the next put to a key fails (before or after it is
//! carried out), or each request is delayed. Requests are counted
//! in the order they start.

use std::collections::BTreeSet;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};
use parking_lot::Mutex;

/// What to inject, shared by the test and the store.
#[derive(Debug, Default)]
pub struct FaultPlan {
    requests: AtomicU64,
    fail_at: Mutex<BTreeSet<u64>>,
    fail_all: AtomicBool,
    delay_ms: AtomicU64,
    failed: AtomicU64,
    /// The next put to a key containing this fails: `true` once carried out (its answer
    /// lost on the way back), `false` without being carried out.
    next_put_to: Mutex<Option<(String, bool)>>,
}

impl FaultPlan {
    /// Fails the request numbered `n` (counting from 0 from now on) once.
    pub fn fail_request(&self, n: u64) {
        let base = self.requests.load(Ordering::SeqCst);
        self.fail_at.lock().insert(base + n);
    }

    /// The next put to a key containing `key_part` fails, after being carried out if
    /// `carried_out` (as a reply lost on its way back would), else before.
    pub fn fail_next_put_to(&self, key_part: &str, carried_out: bool) {
        *self.next_put_to.lock() = Some((key_part.to_owned(), carried_out));
    }

    /// Whether the put to `path` is the one `fail_next_put_to` planned (then it is no
    /// longer planned), and whether it is carried out first.
    fn planned_put_failure(&self, path: &str) -> Option<bool> {
        let mut planned = self.next_put_to.lock();
        let carried_out = match &*planned {
            Some((part, carried_out)) if path.contains(part.as_str()) => *carried_out,
            _ => return None,
        };
        *planned = None;
        self.failed.fetch_add(1, Ordering::SeqCst);
        Some(carried_out)
    }

    /// Fails every request while `on`.
    pub fn fail_all(&self, on: bool) {
        self.fail_all.store(on, Ordering::SeqCst);
    }

    /// Delays every request by `delay`.
    pub fn delay(&self, delay: Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Clears every fault still planned.
    pub fn clear(&self) {
        self.fail_at.lock().clear();
        self.fail_all(false);
        self.delay(Duration::ZERO);
    }

    /// Requests started so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    /// Requests failed on purpose so far.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::SeqCst)
    }

    /// Counts a request; an error if it is to fail.
    async fn admit(&self, operation: &str, path: &str) -> Result<()> {
        let number = self.requests.fetch_add(1, Ordering::SeqCst);
        let delay = self.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if self.fail_all.load(Ordering::SeqCst) || self.fail_at.lock().remove(&number) {
            self.failed.fetch_add(1, Ordering::SeqCst);
            return Err(object_store::Error::Generic {
                store: "faulty",
                source: format!(
                    "injected fault: request {number} ({operation} {path}) answered 503 Slow Down"
                )
                .into(),
            });
        }
        Ok(())
    }
}

/// A real client with faults injected per a [`FaultPlan`].
#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    plan: Arc<FaultPlan>,
}

impl FaultyStore {
    /// `inner` with faults from `plan`.
    pub fn new(inner: Arc<dyn ObjectStore>, plan: Arc<FaultPlan>) -> FaultyStore {
        FaultyStore { inner, plan }
    }
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.plan.admit("put", location.as_ref()).await?;
        let lost = |carried_out: bool| object_store::Error::Generic {
            store: "faulty",
            source: format!(
                "injected fault: put {location} failed ({})",
                if carried_out {
                    "after it was carried out"
                } else {
                    "before"
                }
            )
            .into(),
        };
        match self.plan.planned_put_failure(location.as_ref()) {
            Some(false) => Err(lost(false)),
            Some(true) => {
                self.inner.put_opts(location, payload, opts).await?;
                Err(lost(true))
            }
            None => self.inner.put_opts(location, payload, opts).await,
        }
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.plan.admit("put multipart", location.as_ref()).await?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.plan.admit("get", location.as_ref()).await?;
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.plan.admit("get ranges", location.as_ref()).await?;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let plan = Arc::clone(&self.plan);
        let inner = Arc::clone(&self.inner);
        let admitted = locations
            .then(move |location| {
                let plan = Arc::clone(&plan);
                async move {
                    let location = location?;
                    plan.admit("delete", location.as_ref()).await?;
                    Ok(location)
                }
            })
            .boxed();
        inner.delete_stream(admitted)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let plan = Arc::clone(&self.plan);
        let inner = Arc::clone(&self.inner);
        let prefix = prefix.cloned();
        futures::stream::once(async move {
            let label = prefix.as_ref().map(|p| p.to_string()).unwrap_or_default();
            match plan.admit("list", &label).await {
                Ok(()) => inner.list(prefix.as_ref()),
                Err(error) => futures::stream::once(async move { Err(error) }).boxed(),
            }
        })
        .flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let label = prefix.map(|p| p.to_string()).unwrap_or_default();
        self.plan.admit("list", &label).await?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.plan.admit("copy", from.as_ref()).await?;
        self.inner.copy_opts(from, to, options).await
    }
}
