//! The built-in health endpoints: readiness, which says when to stop sending traffic, and
//! liveness, which says the process still serves.

use tiny_http::{Request, ResponseBox};

use crate::tinyhttp;

/// The paths of the health endpoints, if configured.
#[derive(Clone, Debug, Default)]
pub(crate) struct Health {
    pub(crate) readiness: Option<String>,
    pub(crate) liveness: Option<String>,
}

impl Health {
    /// The response of a health endpoint, if `request` is for one: readiness is `200` until
    /// shutdown fires and `503` from then on; liveness is `200` while the server serves.
    pub(crate) fn answer(
        &self,
        request: &Request,
        fired: bool,
        retry_after: std::time::Duration,
    ) -> Option<ResponseBox> {
        let path = request.url().split('?').next().unwrap_or("");
        if self.readiness.as_deref() == Some(path) {
            Some(if fired {
                tinyhttp::unavailable(retry_after, "shutting down")
            } else {
                tinyhttp::plain(200, "ready\n")
            })
        } else if self.liveness.as_deref() == Some(path) {
            Some(tinyhttp::plain(200, "alive\n"))
        } else {
            None
        }
    }
}
