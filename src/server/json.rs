//! The shutdown report for a log pipeline (feature `serde`): `serde::Serialize` on
//! [`ShutdownReport`] and what it holds, written by hand so that the shape is the one
//! documented on [`ShutdownReport`], flat and stable: times in seconds (`…_seconds`),
//! clients as `"ip:port"` strings, the reason as its text.

use std::time::{Duration, UNIX_EPOCH};

use serde::ser::{Serialize, SerializeStruct, Serializer};

use super::report::{ConnectionsLeft, HookOutcome, HookReport, ShutdownReport, Straggler};
use crate::shutdown::join::{JoinReport, Panicked};

fn seconds(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

impl Serialize for ShutdownReport {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("ShutdownReport", 19)?;
        s.serialize_field("reason", &self.reason().to_string())?;
        let fired_at = self
            .fired
            .time()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, seconds);
        s.serialize_field("fired_at", &fired_at)?;
        s.serialize_field("complete", &self.is_complete())?;
        s.serialize_field("deadline_seconds", &seconds(self.deadline))?;
        s.serialize_field("deadline_capped", &self.deadline_capped)?;
        s.serialize_field("lame_duck_seconds", &seconds(self.lame_duck))?;
        s.serialize_field(
            "stopped_accepting_seconds",
            &seconds(self.stopped_accepting),
        )?;
        s.serialize_field("drain_seconds", &seconds(self.drained))?;
        s.serialize_field("total_seconds", &seconds(self.total))?;
        s.serialize_field("served_before", &self.served_before)?;
        s.serialize_field("served_during_drain", &self.served_during_drain)?;
        s.serialize_field("rejected", &self.rejected)?;
        s.serialize_field("shed", &self.shed)?;
        s.serialize_field("handler_panics", &self.handler_panics)?;
        s.serialize_field("health_checks", &self.health_checks)?;
        s.serialize_field("stragglers", &self.stragglers)?;
        s.serialize_field("workers", &self.workers)?;
        s.serialize_field("hooks", &self.hooks)?;
        s.serialize_field("connections_left", &self.connections)?;
        s.end()
    }
}

impl Serialize for Straggler {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Straggler", 5)?;
        s.serialize_field("method", self.method.as_str())?;
        s.serialize_field("url", &self.url)?;
        s.serialize_field("peer", &self.peer)?;
        s.serialize_field("age_seconds", &seconds(self.age))?;
        s.serialize_field("worker", &self.worker)?;
        s.end()
    }
}

impl Serialize for HookReport {
    /// `{"name", "outcome": "finished" | "panicked" | "overran", "took_seconds" (finished),
    /// "message" (panicked)}`, the last two `null` otherwise.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (outcome, took, message) = match &self.outcome {
            HookOutcome::Finished(took) => ("finished", Some(seconds(*took)), None),
            HookOutcome::Panicked(message) => ("panicked", None, Some(message.as_str())),
            HookOutcome::Overran => ("overran", None, None),
        };
        let mut s = serializer.serialize_struct("HookReport", 4)?;
        s.serialize_field("name", &self.name)?;
        s.serialize_field("outcome", outcome)?;
        s.serialize_field("took_seconds", &took)?;
        s.serialize_field("message", &message)?;
        s.end()
    }
}

impl Serialize for ConnectionsLeft {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("ConnectionsLeft", 4)?;
        s.serialize_field("idle", &self.idle)?;
        s.serialize_field("arriving", &self.arriving)?;
        s.serialize_field("stuck", &self.stuck)?;
        s.serialize_field("unread", &self.unread)?;
        s.end()
    }
}

impl Serialize for JoinReport {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("JoinReport", 3)?;
        s.serialize_field("finished", self.finished())?;
        s.serialize_field("panicked", self.panicked())?;
        s.serialize_field("running", self.running())?;
        s.end()
    }
}

impl Serialize for Panicked {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Panicked", 2)?;
        s.serialize_field("name", self.name())?;
        s.serialize_field("message", self.message())?;
        s.end()
    }
}
