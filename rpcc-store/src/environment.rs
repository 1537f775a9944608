//! Environment stamps: a state records the `[env.<name>]` it is first used for, and
//! refuses any other (environments never share a state).

use rpcc_core::deploy::StoreError;

use crate::rows::Cols as _;
use crate::{PgStore, SqliteStore, backend};

macro_rules! claim {
    ($store:ty, $read:literal, $insert:literal) => {
        impl $store {
            /// Record `environment` (`None`: an inventory without environments) on first
            /// use; refuse a state stamped with another one.
            pub async fn claim_environment(&self, environment: Option<&str>) -> Result<(), StoreError> {
                let wanted = environment.unwrap_or("");
                let recorded = sqlx::query($read)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(backend)?
                    .map(|r| r.text("value"))
                    .transpose()?;
                match recorded {
                    Some(r) if r == wanted => Ok(()),
                    Some(recorded) => Err(StoreError::WrongEnvironment { recorded, wanted: wanted.to_owned() }),
                    None if wanted.is_empty() => Ok(()),
                    None => {
                        sqlx::query($insert).bind(wanted).execute(&self.pool).await.map_err(backend)?;
                        // Two first users at once: whoever inserted first decides.
                        Box::pin(self.claim_environment(environment)).await
                    }
                }
            }
        }
    };
}

claim!(
    SqliteStore,
    "SELECT value FROM rpcc_meta WHERE key = 'environment'",
    "INSERT INTO rpcc_meta (key, value) VALUES ('environment', ?) ON CONFLICT (key) DO NOTHING"
);
claim!(
    PgStore,
    "SELECT value FROM rpcc_meta WHERE key = 'environment'",
    "INSERT INTO rpcc_meta (key, value) VALUES ('environment', $1) ON CONFLICT (key) DO NOTHING"
);
