//! Absorbs the wakes an upstream connection causes while its own task is polling it.
//!
//! hyper hands a request to its connection, and the response back, through channels; each hand-
//! over wakes the other side. Here both sides are polled by one task (the client connection's),
//! so every hand-over woke that same task while it was running: tokio then queued it again
//! behind every other ready connection, for a poll that found nothing new. Counted on the proxy,
//! that was two wasted polls out of four per request, and requests that waited behind them.
//!
//! The filter is the waker the connection and its handles see. While the task polls them, a
//! wake is only noted, and the poller polls again at once; at any other time (the app's bytes
//! arriving, say) it wakes the task as usual.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

/// Polls one after another before a poller gives up absorbing wakes and lets the task be
/// rescheduled (a connection that keeps waking itself must not starve the others).
const MAX_TURNS: usize = 8;

#[derive(Default)]
struct Filter {
    /// The task that polls the connection now.
    task: AtomicWaker,
    /// Set while that task polls through the filter.
    polling: AtomicBool,
    /// A wake arrived while polling.
    woken: AtomicBool,
}

impl Wake for Filter {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.polling.load(Ordering::SeqCst) {
            self.woken.store(true, Ordering::SeqCst);
        } else {
            self.task.wake();
        }
    }
}

/// One per upstream connection, for its lifetime (the connection keeps the filter's waker in
/// its I/O registration and channels).
pub(crate) struct WakeFilter {
    filter: Arc<Filter>,
    waker: Waker,
}

impl Default for WakeFilter {
    fn default() -> Self {
        let filter = Arc::new(Filter::default());
        let waker = Waker::from(Arc::clone(&filter));
        Self { filter, waker }
    }
}

impl WakeFilter {
    /// Polls `poll` with the filtered waker for the task in `cx`, again while it woke itself,
    /// up to [`MAX_TURNS`] times.
    pub(crate) fn poll<T>(
        &self,
        cx: &mut Context<'_>,
        mut poll: impl FnMut(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        self.filter.task.register(cx.waker());
        let mut filtered = Context::from_waker(&self.waker);
        for _ in 0..MAX_TURNS {
            self.filter.woken.store(false, Ordering::SeqCst);
            self.filter.polling.store(true, Ordering::SeqCst);
            let polled = poll(&mut filtered);
            self.filter.polling.store(false, Ordering::SeqCst);
            // A wake between the poll's end and the store above was only noted: look at it.
            if polled.is_ready() || !self.filter.woken.swap(false, Ordering::SeqCst) {
                return polled;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl WakeFilter {
    /// Runs `f`, which hands the connection work (a request into its channel), without waking
    /// the task for it. Only for a caller that polls through [`WakeFilter::poll`] right after:
    /// that poll sees whatever the dropped wake was for.
    pub(crate) fn quietly<T>(&self, f: impl FnOnce() -> T) -> T {
        self.filter.polling.store(true, Ordering::SeqCst);
        let out = f();
        self.filter.polling.store(false, Ordering::SeqCst);
        out
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    struct CountingWake(AtomicUsize);

    impl Wake for CountingWake {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn wakes_during_a_poll_are_absorbed_and_later_ones_reach_the_task() {
        let task = Arc::new(CountingWake(AtomicUsize::new(0)));
        let task_waker = Waker::from(Arc::clone(&task));
        let mut cx = Context::from_waker(&task_waker);
        let filter = WakeFilter::default();

        // Woken by itself on the first turn, ready on the second: no task wake.
        let mut turns = 0;
        let polled = filter.poll(&mut cx, |cx| {
            turns += 1;
            if turns == 1 {
                cx.waker().wake_by_ref();
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        });
        assert_eq!((polled, turns), (Poll::Ready(()), 2));
        assert_eq!(task.0.load(Ordering::SeqCst), 0);

        // Pending with a waker kept for later: a later wake reaches the task.
        let mut kept = None;
        let polled: Poll<()> = filter.poll(&mut cx, |cx| {
            kept = Some(cx.waker().clone());
            Poll::Pending
        });
        assert!(polled.is_pending());
        assert_eq!(task.0.load(Ordering::SeqCst), 0);
        kept.unwrap().wake();
        assert_eq!(task.0.load(Ordering::SeqCst), 1);

        // Work handed over quietly wakes nobody; the poll that follows does it.
        let kept = kept_waker(&filter, &mut cx);
        filter.quietly(|| kept.wake_by_ref());
        assert_eq!(task.0.load(Ordering::SeqCst), 1);
    }

    fn kept_waker(filter: &WakeFilter, cx: &mut Context<'_>) -> Waker {
        let mut kept = None;
        let _: Poll<()> = filter.poll(cx, |cx| {
            kept = Some(cx.waker().clone());
            Poll::Pending
        });
        kept.expect("polled once")
    }

    #[test]
    fn a_poller_that_always_wakes_itself_yields_to_the_task() {
        let task = Arc::new(CountingWake(AtomicUsize::new(0)));
        let task_waker = Waker::from(Arc::clone(&task));
        let mut cx = Context::from_waker(&task_waker);
        let filter = WakeFilter::default();
        let mut turns = 0;
        let polled: Poll<()> = filter.poll(&mut cx, |cx| {
            turns += 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        });
        assert!(polled.is_pending());
        assert_eq!(turns, MAX_TURNS);
        assert_eq!(task.0.load(Ordering::SeqCst), 1, "rescheduled once");
    }
}
