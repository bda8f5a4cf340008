//! A background thread of lameduck's own (the supervisor, the shedder, the late responder):
//! one way to start it, tell it to stop, and join it within a bound.

use std::time::Duration;

use super::latch::Latch;
use super::pool::Pool;
use crate::error::Error;

/// A named thread that runs until its stop latch opens (or its work ends).
pub(crate) struct Helper {
    pool: Pool,
    stop: Latch,
}

impl Helper {
    /// Starts `work` on a thread named `<name>-1`; `work` gets the latch that asks it to stop,
    /// and must return soon after it opens.
    ///
    /// # Errors
    ///
    /// [`Error::Spawn`] if the thread could not be started.
    pub(crate) fn start(
        name: &str,
        work: impl FnOnce(&Latch) + Send + 'static,
    ) -> Result<Helper, Error> {
        let stop = Latch::new();
        let mut pool = Pool::with_prefix(name);
        let asked = stop.clone();
        pool.spawn(move || work(&asked))?;
        Ok(Helper { pool, stop })
    }

    /// Asks it to stop, without waiting.
    pub(crate) fn ask_to_stop(&self) {
        self.stop.open();
    }

    /// Asks it to stop and waits up to `bound` for it to end. Returns `false`, having left
    /// it running, if it did not end in time.
    pub(crate) fn stop(mut self, bound: Duration) -> bool {
        self.ask_to_stop();
        self.pool.join_timeout(bound).is_complete()
    }
}
