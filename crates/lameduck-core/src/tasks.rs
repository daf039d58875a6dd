//! Long-running work that must end before the process does.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Named tasks that are told to stop at Closing and awaited within the budget.
///
/// Each task gets a [`CancellationToken`] that fires when Closing starts; it should finish its
/// current unit of work and return. Tasks still running at the forced close are *abandoned*:
/// their names are reported and they are aborted.
#[derive(Debug, Clone)]
pub struct TrackedTasks {
    tracker: TaskTracker,
    stop: CancellationToken,
    running: Arc<Mutex<Running>>,
}

#[derive(Debug, Default)]
struct Running {
    next_id: u64,
    /// Name, abort handle, and whether it is busy work (see [`TrackedTasks::spawn_resident`]).
    tasks: BTreeMap<u64, (String, tokio::task::AbortHandle, bool)>,
}

impl TrackedTasks {
    pub(crate) fn new(stop: CancellationToken) -> Self {
        Self {
            tracker: TaskTracker::new(),
            stop,
            running: Arc::default(),
        }
    }

    /// Spawns `task(token)` on the current tokio runtime; `token` fires at Closing.
    pub fn spawn<F, Fut>(&self, name: impl Into<String>, task: F) -> JoinHandle<Fut::Output>
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future + Send + 'static,
        Fut::Output: Send + 'static,
    {
        self.track(name.into(), true, task)
    }

    /// Like [`TrackedTasks::spawn`], for a task that lives as long as the process (the child
    /// process `lameduck run` supervises, a consumer loop): awaited at Closing like any other,
    /// but not busy work, so [`TrackedTasks::busy`] does not count it.
    pub fn spawn_resident<F, Fut>(
        &self,
        name: impl Into<String>,
        task: F,
    ) -> JoinHandle<Fut::Output>
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future + Send + 'static,
        Fut::Output: Send + 'static,
    {
        self.track(name.into(), false, task)
    }

    fn track<F, Fut>(&self, name: String, busy: bool, task: F) -> JoinHandle<Fut::Output>
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future + Send + 'static,
        Fut::Output: Send + 'static,
    {
        let future = task(self.stop.child_token());
        let running = Arc::clone(&self.running);
        let mut guard = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        let id = guard.next_id;
        guard.next_id += 1;
        let handle = self.tracker.spawn(async move {
            let output = future.await;
            running
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .tasks
                .remove(&id);
            output
        });
        guard.tasks.insert(id, (name, handle.abort_handle(), busy));
        handle
    }

    /// How many tracked tasks are running.
    pub fn len(&self) -> usize {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .tasks
            .len()
    }

    /// How many tasks of busy work (not resident ones) are still running: long work the
    /// gate waits for before it lets the pod go.
    pub fn busy(&self) -> usize {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .tasks
            .values()
            .filter(|(_, _, busy)| *busy)
            .count()
    }

    /// Whether no tracked task is running.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn tracker(&self) -> &TaskTracker {
        &self.tracker
    }

    /// Aborts every task still running and returns their names.
    pub(crate) fn abandon_all(&self) -> Vec<String> {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::take(&mut running.tasks)
            .into_values()
            .map(|(name, abort, _)| {
                abort.abort();
                name
            })
            .collect()
    }
}
