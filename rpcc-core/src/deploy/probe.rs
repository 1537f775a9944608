//! The `HealthProbe` role: after a reload, is every site served by the new config?

use crate::model::{Server, Site};

/// Checks one site on one server after a reload (rpcc-monitor's `HttpHealthProbe` sends
/// an HTTP request with the site's `Host` to the server itself).
#[async_trait::async_trait]
pub trait HealthProbe: Send + Sync {
    /// `Ok(())` when the site answers as expected; `Err(reason)` otherwise.
    async fn probe(&self, server: &Server, site: &Site) -> Result<(), String>;
}
