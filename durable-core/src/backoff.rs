//! [`Backoff`]: the one retry schedule of the workspace — exponential, capped, starting over
//! after a success. The dict's listener, the shared subscriptions, ZooKeeper's sessions and
//! the SQL pool's busy retries all use it.

use std::time::Duration;

/// Delays between attempts: `first`, doubling up to `max`; [`Backoff::reset`] after a
/// success.
///
/// ```
/// use std::time::Duration;
/// use durable_core::Backoff;
///
/// let mut backoff = Backoff::RECONNECT;
/// let delays: Vec<u64> = (0..5).map(|_| backoff.next_delay().as_millis() as u64).collect();
/// assert_eq!(delays, [50, 100, 200, 250, 250]);
/// backoff.reset();
/// assert_eq!(backoff.next_delay(), Duration::from_millis(50));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Reconnecting to a store that went away: 50 ms, doubling to 250 ms — recovery within
    /// about a quarter second of the store coming back, at four attempts a second while it
    /// is away.
    pub const RECONNECT: Backoff = Backoff::new(Duration::from_millis(50), Duration::from_millis(250));

    /// Retrying a busy database within one operation (SQLite's lock while another process
    /// writes): 4 ms, doubling to 128 ms; the operation's timeout ends the retries.
    pub const BUSY: Backoff = Backoff::new(Duration::from_millis(4), Duration::from_millis(128));

    /// `first`, doubling up to `max`.
    pub const fn new(first: Duration, max: Duration) -> Self {
        Self { first, max, next: first }
    }

    /// The delay before the next attempt; the one after is twice as long, up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    /// The delay [`Backoff::next_delay`] would give, without moving on.
    pub fn peek(&self) -> Duration {
        self.next
    }

    /// Starts over at the first delay (after a success).
    pub fn reset(&mut self) {
        self.next = self.first;
    }

    /// The longest delay.
    pub fn max(&self) -> Duration {
        self.max
    }
}
