//! openraft's async runtime for the zone: Tokio, with one difference — an RPC may stretch the
//! timeout openraft put around it to what the bytes it carries need.
//!
//! openraft 0.9 bounds every AppendEntries by the heartbeat interval (250 ms by default),
//! whether it is an empty heartbeat or megabytes of entries for a follower that is catching up.
//! A large batch that cannot arrive within a heartbeat is then retried, and fails, for ever. The
//! timeout openraft builds ([`ZoneRuntime::timeout`]) lets the future it guards push its
//! deadline later ([`stretch_timeout`]): the zone's network client does so for an
//! AppendEntries in proportion to its encoded size, so heartbeats keep their short bound and a
//! replication RPC gets the time its bytes take.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use openraft::async_runtime::TokioOneShotSender;
use openraft::{AsyncRuntime, OptionalSend, TokioInstant};
use tokio::task::futures::TaskLocalFuture;
use tokio::time::Instant;

/// The later deadline asked for by a guarded future, shared with its [`Stretchable`].
type Asked = Arc<Mutex<Option<Instant>>>;

tokio::task_local! {
    /// The later deadline asked for by the future a [`Stretchable`] guards.
    static STRETCH: Asked;
}

/// Moves the deadline of the openraft timeout that guards the running future to `budget` from
/// now, if that is later than the deadline it has. Outside such a timeout it does nothing.
pub fn stretch_timeout(budget: Duration) {
    let until = Instant::now() + budget;
    let _ = STRETCH.try_with(|slot| {
        if let Ok(mut s) = slot.lock() {
            *s = Some(s.map_or(until, |earlier| earlier.max(until)));
        }
    });
}

/// The zone's runtime: Tokio, with a timeout the guarded future can stretch.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ZoneRuntime;

/// The error of a [`Stretchable`] timeout that expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline has elapsed")
    }
}

impl std::error::Error for Elapsed {}

/// A timeout whose guarded future may move its deadline later ([`stretch_timeout`]).
pub struct Stretchable<F: Future> {
    inner: Pin<Box<TaskLocalFuture<Asked, F>>>,
    sleep: Pin<Box<tokio::time::Sleep>>,
    stretch: Asked,
}

impl<F: Future> Stretchable<F> {
    fn new(deadline: Instant, future: F) -> Self {
        let stretch = Arc::new(Mutex::new(None));
        Stretchable {
            inner: Box::pin(STRETCH.scope(stretch.clone(), future)),
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
            stretch,
        }
    }
}

impl<F: Future> Future for Stretchable<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(value) = self.inner.as_mut().poll(cx) {
            return Poll::Ready(Ok(value));
        }
        let asked = self.stretch.lock().ok().and_then(|mut s| s.take());
        if let Some(later) = asked
            && later > self.sleep.deadline()
        {
            self.sleep.as_mut().reset(later);
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRuntime for ZoneRuntime {
    type JoinError = tokio::task::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = tokio::task::JoinHandle<T>;
    type Sleep = tokio::time::Sleep;
    type Instant = TokioInstant;
    type TimeoutError = Elapsed;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = Stretchable<T>;
    type ThreadLocalRng = rand::rngs::ThreadRng;
    type OneshotSender<T: OptionalSend> = TokioOneShotSender<T>;
    type OneshotReceiver<T: OptionalSend> = tokio::sync::oneshot::Receiver<T>;
    type OneshotReceiverError = tokio::sync::oneshot::error::RecvError;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        tokio::task::spawn(future)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        tokio::time::sleep(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        tokio::time::sleep_until(deadline)
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        Stretchable::new(Instant::now() + duration, future)
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        Stretchable::new(deadline, future)
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        join_error.is_panic()
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        rand::thread_rng()
    }

    fn oneshot<T>() -> (Self::OneshotSender<T>, Self::OneshotReceiver<T>)
    where
        T: OptionalSend,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (TokioOneShotSender(tx), rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_guarded_future_that_stretches_its_timeout_gets_the_time_it_asked_for() {
        let stretched = ZoneRuntime::timeout(Duration::from_millis(250), async {
            stretch_timeout(Duration::from_secs(2));
            tokio::time::sleep(Duration::from_millis(1500)).await;
            7
        });
        assert_eq!(stretched.await, Ok(7));
    }

    #[tokio::test(start_paused = true)]
    async fn a_guarded_future_that_does_not_stretch_times_out_as_before() {
        let plain = ZoneRuntime::timeout(Duration::from_millis(250), async {
            tokio::time::sleep(Duration::from_millis(300)).await;
        });
        assert_eq!(plain.await, Err(Elapsed));
        // Stretching never shortens, and does nothing outside a guarded future.
        stretch_timeout(Duration::from_secs(1));
        let shorter = ZoneRuntime::timeout(Duration::from_millis(500), async {
            stretch_timeout(Duration::from_millis(10));
            tokio::time::sleep(Duration::from_millis(400)).await;
        });
        assert_eq!(shorter.await, Ok(()));
    }
}
