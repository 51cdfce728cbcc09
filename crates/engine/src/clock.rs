//! What time the engine decides at. Decisions read the time once, here, and hand it
//! to the store, so a gate's soak time and freeze windows are judged at a time a test
//! can set: [`Clock::system`] in the server, [`Clock::manual`] in tests that move time
//! forward instead of sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// The engine's clock, in milliseconds since the Unix epoch. Cheap to clone; clones
/// of a manual clock share its time.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    manual: Option<Arc<AtomicI64>>,
}

impl Clock {
    /// The system's clock.
    pub fn system() -> Clock {
        Clock::default()
    }

    /// A clock standing at `start` until moved with [`Clock::advance`].
    pub fn manual(start: i64) -> Clock {
        Clock {
            manual: Some(Arc::new(AtomicI64::new(start))),
        }
    }

    /// Now, in milliseconds since the Unix epoch.
    pub fn now_millis(&self) -> i64 {
        match &self.manual {
            Some(time) => time.load(Ordering::SeqCst),
            None => store::now_millis(),
        }
    }

    /// Moves a manual clock forward by `by`; the system's clock cannot be moved, so
    /// there it does nothing.
    pub fn advance(&self, by: Duration) {
        if let Some(time) = &self.manual {
            let millis = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
            time.fetch_add(millis, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told_and_its_clones_follow() {
        let clock = Clock::manual(1_000);
        let clone = clock.clone();
        assert_eq!(clock.now_millis(), 1_000);
        clone.advance(Duration::from_secs(6));
        assert_eq!(clock.now_millis(), 7_000);
        let system = Clock::system();
        let before = system.now_millis();
        system.advance(Duration::from_secs(3600));
        assert!(system.now_millis() - before < 3_600_000);
    }
}
