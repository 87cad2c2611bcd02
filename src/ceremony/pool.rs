//! Running the KMS calls of several targets at once, while the main thread keeps the HSM
//! session and the transcript to itself.
//!
//! Up to `concurrency` worker threads take targets in order from a queue and run `work` for
//! each; `work` only calls KMS and reports events through a channel. The main thread handles
//! each event as it arrives (records it, does the HSM part). After the first error no worker
//! starts a new target, in-flight ones finish, and their events are still handled, so the
//! transcript says exactly what happened to each.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::time::Duration;

use crate::error::Error;

/// Runs `work` over `items` on up to `concurrency` threads; `handle` runs on the calling
/// thread for every event. `work` returns false when its item failed: no worker then starts
/// another item (the main thread may not have handled the failure yet). Returns the first
/// error (from `handle`) once every started item has finished.
pub fn run<T, E>(
    concurrency: usize,
    items: Vec<T>,
    work: impl Fn(T, &Sender<E>) -> bool + Sync,
    mut handle: impl FnMut(E) -> Result<(), Error>,
) -> Result<(), Error>
where
    T: Send,
    E: Send,
{
    let workers = concurrency.max(1).min(items.len());
    if workers == 0 {
        return Ok(());
    }
    let queue = Mutex::new(items.into_iter().collect::<VecDeque<T>>());
    let stop = AtomicBool::new(false);
    let mut first_error: Option<Error> = None;
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<E>();
        for _ in 0..workers {
            let tx = tx.clone();
            let (queue, stop, work) = (&queue, &stop, &work);
            scope.spawn(move || {
                loop {
                    if stop.load(Ordering::SeqCst) || crate::cancel::is_cancelled() {
                        break;
                    }
                    // The queue holds plain items; a poisoned lock (a panicked worker) still
                    // holds a usable queue.
                    let next = queue
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .pop_front();
                    match next {
                        Some(item) => {
                            if !work(item, &tx) {
                                stop.store(true, Ordering::SeqCst);
                            }
                        }
                        None => break,
                    }
                }
            });
        }
        drop(tx);
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(event) => {
                    if let Err(e) = handle(event) {
                        stop.store(true, Ordering::SeqCst);
                        first_error.get_or_insert(e);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    if crate::cancel::is_cancelled() {
                        stop.store(true, Ordering::SeqCst);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
    });
    if first_error.is_none() && crate::cancel::is_cancelled() {
        first_error = Some(
            crate::prompt::PromptError::Cancelled {
                id: "the KMS calls".into(),
            }
            .into(),
        );
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
