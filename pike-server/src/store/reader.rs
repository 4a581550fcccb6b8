//! The store's readers: reads queue up and a few blocking-pool tasks run
//! them one after the other.
//!
//! A redb read is usually microseconds, but it may fault pages in from
//! disk, so it never runs on a runtime worker. Handing each read to
//! tokio's blocking pool on its own costs two thread hand-offs per read
//! (a blocking thread woken, the runtime worker woken back), several
//! times the read itself under load (a profile of uplink at 5,000
//! messages a second spent 16 % of the gateway's CPU in the blocking
//! pool's hand-offs). Here a read joins a queue; at most [`MAX_READERS`]
//! blocking tasks drain it, each running the queued reads back to back
//! until none is left: under load one hand-off carries many reads, and an
//! idle store still starts a read at once. A read that panics fails alone
//! (its caller gets an error) and the reader goes on.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use tokio::sync::oneshot;

/// Blocking tasks reading at once (a slow read, a page faulted in from
/// disk, holds up only its own reader).
pub(crate) const MAX_READERS: usize = 4;

/// A queued read, given the readers' context: it reads and returns the
/// delivery of its result, which runs once the reader has let go of the
/// context (a caller that drops the store on its answer and opens the file
/// again must find it closed).
type Job<C> = Box<dyn FnOnce(&C) -> Deliver + Send>;

/// Hands a read's result to its caller.
type Deliver = Box<dyn FnOnce() + Send>;

/// The read queue of one store, whose reads get a `C` (the database).
///
/// The queue alone holds the context strongly; readers hold the shared
/// state, which names the context weakly and holds it only while a read
/// runs. So dropping the queue drops the context at once, whatever a
/// reader is doing (finding the queue empty, say), unless a read is
/// running on it right then.
pub(crate) struct ReadQueue<C> {
    context: Arc<C>,
    shared: Arc<Shared<C>>,
}

/// What the queue and its readers share.
struct Shared<C> {
    context: Weak<C>,
    state: Mutex<State<C>>,
}

impl<C> std::fmt::Debug for ReadQueue<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self
            .shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("ReadQueue")
            .field("queued", &state.jobs.len())
            .field("readers", &state.readers)
            .finish()
    }
}

struct State<C> {
    jobs: VecDeque<Job<C>>,
    /// Reader tasks running now (at most [`MAX_READERS`]).
    readers: usize,
}

/// Why a read has no result.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ReadFailed {
    /// The read panicked.
    Panicked,
}

impl<C: Send + Sync + 'static> ReadQueue<C> {
    /// A queue whose reads run with `context`.
    pub(crate) fn new(context: Arc<C>) -> Arc<Self> {
        let shared = Arc::new(Shared {
            context: Arc::downgrade(&context),
            state: Mutex::new(State {
                jobs: VecDeque::new(),
                readers: 0,
            }),
        });
        Arc::new(Self { context, shared })
    }

    fn lock(&self) -> MutexGuard<'_, State<C>> {
        self.shared.lock()
    }

    /// Runs `read` on a reader (inline outside a tokio runtime) and
    /// resolves to its result.
    pub(crate) async fn run<T, F>(self: &Arc<Self>, read: F) -> Result<T, ReadFailed>
    where
        T: Send + 'static,
        F: FnOnce(&C) -> T + Send + 'static,
    {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return catch_unwind(AssertUnwindSafe(|| read(&self.context)))
                .map_err(|_| ReadFailed::Panicked);
        };
        let (done, result) = oneshot::channel();
        let job: Job<C> = Box::new(move |context: &C| {
            let result = read(context);
            Box::new(move || {
                // The caller may have gone: nothing to do.
                let _ = done.send(result);
            })
        });
        let start_reader = {
            let mut state = self.lock();
            state.jobs.push_back(job);
            let start = state.readers < MAX_READERS;
            if start {
                state.readers += 1;
            }
            start
        };
        if start_reader {
            // The reader holds the context only while a read runs: a
            // dropped store closes its file even while a reader is winding
            // down.
            let shared = Arc::clone(&self.shared);
            // A reader that cannot start leaves its jobs to the next one.
            drop(runtime.spawn_blocking(move || shared.drain()));
        }
        // A job dropped unrun (it panicked) drops its sender.
        result.await.map_err(|_| ReadFailed::Panicked)
    }
}

impl<C> Shared<C> {
    fn lock(&self) -> MutexGuard<'_, State<C>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs queued jobs until none is left; the reader count goes down
    /// under the same lock that finds the queue empty, so a job queued
    /// meanwhile always finds a reader. Between jobs the reader holds
    /// nothing of the store; a job whose store is gone is dropped unrun
    /// (its caller, if any is left, gets an error).
    fn drain(&self) {
        loop {
            let job = {
                let mut state = self.lock();
                match state.jobs.pop_front() {
                    Some(job) => job,
                    None => {
                        state.readers -= 1;
                        return;
                    }
                }
            };
            let Some(context) = self.context.upgrade() else {
                drop(job);
                continue;
            };
            let delivered = catch_unwind(AssertUnwindSafe(|| job(&context)));
            drop(context);
            match delivered {
                Ok(deliver) => deliver(),
                Err(_) => tracing::error!("a store read panicked; its caller gets an error"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_read_runs_once_and_answers_its_own_caller() {
        let calls = Arc::new(AtomicUsize::new(0));
        let queue = ReadQueue::new(calls.clone());
        let reads: Vec<_> = (0..500u64)
            .map(|i| {
                let queue = queue.clone();
                tokio::spawn(async move {
                    queue
                        .run(move |calls: &AtomicUsize| {
                            calls.fetch_add(1, Ordering::SeqCst);
                            i * 2
                        })
                        .await
                })
            })
            .collect();
        for (i, read) in reads.into_iter().enumerate() {
            assert_eq!(read.await.unwrap(), Ok(i as u64 * 2));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 500);
        assert!(queue.lock().jobs.is_empty());
        assert!(queue.lock().readers <= MAX_READERS);
        // A reader may still be finding the queue empty, but it holds
        // nothing of the store: dropping the queue releases the context
        // (the race CI once caught when readers held the queue itself).
        drop(queue);
        assert_eq!(Arc::strong_count(&calls), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_read_fails_alone() {
        let queue = ReadQueue::new(Arc::new(()));
        let bad = queue.run(|_: &()| -> u32 { panic!("a read that panics") });
        let good = queue.run(|_: &()| 7u32);
        let (bad, good) = tokio::join!(bad, good);
        assert_eq!(bad, Err(ReadFailed::Panicked));
        assert_eq!(good, Ok(7));
        assert_eq!(queue.run(|_: &()| 8u32).await, Ok(8), "the queue goes on");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_dropped_on_its_last_answer_lets_go_of_the_database_at_once() {
        for _ in 0..200 {
            let database = Arc::new(());
            let queue = ReadQueue::new(database.clone());
            assert_eq!(queue.run(|_: &()| 1).await, Ok(1));
            drop(queue);
            // No reader still holds it (reopening the file would fail).
            assert_eq!(Arc::strong_count(&database), 1);
        }
    }

    #[test]
    fn outside_a_runtime_reads_run_inline() {
        let queue = ReadQueue::new(Arc::new(5u32));
        let answer = futures_util::FutureExt::now_or_never(queue.run(|five: &u32| five + 1));
        assert_eq!(answer, Some(Ok(6)));
    }
}
