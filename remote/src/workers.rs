//! A few worker threads fed by a crossbeam channel: the uploads of a sync and the
//! downloads of an attach run on them, several requests at once (object storage answers
//! one request slowly and many in parallel well). Results come back in the items' order;
//! after the first failure the workers take no new item, and that failure is returned.

use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use crate::error::Result;

/// Requests in flight at once.
pub(crate) const WORKERS: usize = 4;

/// `work` on every item, on up to `WORKERS` threads.
pub(crate) fn run_all<T: Send, R: Send>(
    items: Vec<T>,
    work: impl Fn(T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let count = items.len();
    let (queue, jobs) = crossbeam::channel::unbounded();
    for job in items.into_iter().enumerate() {
        // The receiver lives until the workers are done: sending cannot fail.
        let _ = queue.send(job);
    }
    drop(queue);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..count).map(|_| None).collect());
    let failure = Mutex::new(None);
    let failed = AtomicBool::new(false);
    std::thread::scope(|scope| {
        for _ in 0..WORKERS.min(count) {
            scope.spawn(|| {
                while let Ok((number, item)) = jobs.recv() {
                    if failed.load(Ordering::SeqCst) {
                        return;
                    }
                    match work(item) {
                        Ok(result) => {
                            if let Some(slot) = results.lock().get_mut(number) {
                                *slot = Some(result);
                            }
                        }
                        Err(error) => {
                            failed.store(true, Ordering::SeqCst);
                            failure.lock().get_or_insert(error);
                            return;
                        }
                    }
                }
            });
        }
    });
    if let Some(error) = failure.into_inner() {
        return Err(error);
    }
    Ok(results.into_inner().into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::RemoteError;

    #[test]
    fn results_come_back_in_order_and_the_first_failure_stops_the_rest() {
        let doubled = run_all((0..100).collect(), |n: u32| Ok(n * 2)).expect("no failure");
        assert_eq!(doubled, (0..100).map(|n| n * 2).collect::<Vec<_>>());
        let done = std::sync::atomic::AtomicUsize::new(0);
        let failed = run_all((0..1000).collect(), |n: u32| {
            done.fetch_add(1, Ordering::SeqCst);
            if n == 3 {
                return Err(RemoteError::Stopped {
                    location: "x".to_owned(),
                });
            }
            Ok(n)
        });
        assert!(matches!(failed, Err(RemoteError::Stopped { .. })));
        assert!(done.load(Ordering::SeqCst) < 1000);
    }
}
