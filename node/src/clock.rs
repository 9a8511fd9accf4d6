//! Time as the node reads it: a [`Clock`] says what time it is and waits. Running nodes use
//! [`SystemClock`]; tests and simulations use a [`ManualClock`] that moves only when told to, so
//! a run that depends on time is reproducible.
//!
//! Cores never hold a clock: their driver reads it and passes `now` in. A leaf module: every
//! layer may use it.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use xchg_protocol::Timestamp;

/// A sleeping future that borrows nothing, so it can be kept across an event loop's turns.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Where time comes from.
pub trait Clock: Send + Sync + Debug {
    /// The wall-clock time now.
    fn now(&self) -> Timestamp;

    /// Resolves once `d` has passed by this clock.
    fn sleep(&self, d: Duration) -> Sleep;

    /// Resolves once this clock reads `deadline` or later (at once if it already does).
    fn sleep_until(&self, deadline: Timestamp) -> Sleep {
        let left = deadline.millis().saturating_sub(self.now().millis());
        self.sleep(Duration::from_millis(left))
    }
}

/// The operating system's clock; waiting uses tokio's monotonic timer, so a step of the wall
/// clock does not stretch or cut a wait already under way.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }

    fn sleep(&self, d: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(d))
    }
}

/// A clock that stands still until [`ManualClock::advance`] or [`ManualClock::set`] moves it;
/// waits end when it is moved past their deadline. Clones share one time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<watch::Sender<u64>>,
}

impl ManualClock {
    /// A clock reading `start`.
    pub fn new(start: Timestamp) -> Self {
        ManualClock {
            now: Arc::new(watch::Sender::new(start.millis())),
        }
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self.now.send_modify(|now| *now = now.saturating_add(ms));
    }

    /// Sets the clock to `t`, forward or back (a wall clock can be stepped back; waits already
    /// under way keep their deadlines).
    pub fn set(&self, t: Timestamp) {
        self.now.send_replace(t.millis());
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(*self.now.borrow())
    }

    fn sleep(&self, d: Duration) -> Sleep {
        let deadline = self
            .now()
            .plus_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let mut now = self.now.subscribe();
        Box::pin(async move {
            // The sender lives as long as a clone of the clock: when none is left, time no
            // longer moves and the wait never ends.
            if now.wait_for(|t| *t >= deadline.millis()).await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}

/// The operating system's clock moved by an offset that can change while it runs (a machine
/// whose clock is ahead or behind, in simulations); waiting is tokio's, like [`SystemClock`].
/// Clones share one offset.
#[derive(Debug, Clone, Default)]
pub struct SkewedClock {
    offset_ms: Arc<std::sync::atomic::AtomicI64>,
}

impl SkewedClock {
    /// A clock `offset_ms` ahead of the system clock (behind when negative).
    pub fn new(offset_ms: i64) -> Self {
        SkewedClock {
            offset_ms: Arc::new(std::sync::atomic::AtomicI64::new(offset_ms)),
        }
    }

    /// Sets the offset from the system clock.
    pub fn set_offset(&self, offset_ms: i64) {
        self.offset_ms
            .store(offset_ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// The offset from the system clock.
    pub fn offset(&self) -> i64 {
        self.offset_ms.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Clock for SkewedClock {
    fn now(&self) -> Timestamp {
        let system = Timestamp::now().millis();
        let offset = self.offset();
        Timestamp(if offset >= 0 {
            system.saturating_add(offset.unsigned_abs())
        } else {
            system.saturating_sub(offset.unsigned_abs())
        })
    }

    fn sleep(&self, d: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skewed_clock_reads_the_system_clock_moved_by_its_offset() {
        let clock = SkewedClock::new(-120_000);
        let shared = clock.clone();
        let before = Timestamp::now().millis();
        let behind = clock.now().millis();
        assert!(behind + 120_000 >= before && behind + 120_000 <= Timestamp::now().millis());
        shared.set_offset(60_000);
        let ahead = clock.now().millis();
        assert!(ahead >= before + 60_000, "clones share the offset");
    }
    use futures::FutureExt as _;

    #[test]
    fn a_manual_clock_wakes_a_sleeper_only_once_moved_past_its_deadline() {
        let clock = ManualClock::new(Timestamp(1_000));
        let mut nap = clock.sleep(Duration::from_millis(500));
        let mut until = clock.sleep_until(Timestamp(1_200));
        assert!((&mut nap).now_or_never().is_none(), "time has not moved");
        clock.advance(Duration::from_millis(200));
        assert_eq!(clock.now(), Timestamp(1_200));
        assert!(
            (&mut until).now_or_never().is_some(),
            "its deadline is reached"
        );
        assert!((&mut nap).now_or_never().is_none(), "300 ms to go");
        clock.set(Timestamp(1_500));
        assert!(nap.now_or_never().is_some());
        assert!(
            clock.sleep(Duration::ZERO).now_or_never().is_some(),
            "a zero wait ends at once"
        );
    }

    #[test]
    fn clones_of_a_manual_clock_share_one_time() {
        let clock = ManualClock::new(Timestamp(0));
        let other = clock.clone();
        other.advance(Duration::from_secs(3));
        assert_eq!(clock.now(), Timestamp(3_000));
    }
}
