//! The store roles' methods whose SQL is the same on both backends (`$n` placeholders
//! work in SQLite too), written once and stamped onto [`crate::SqliteStore`] and
//! [`crate::PgStore`]. What differs stays with each backend, as inherent methods the
//! stamped code calls: how an audit append is serialized (`audit_begin`), the
//! per-server lock (`lock_server_here`), a fleet's last deployments
//! (`last_deployments_here`) and batched secret swaps (`swap_secrets_here`).

/// Implement `StateStore`, `SecretStore` and `CertificateStore` for `$store` (with a
/// `pool` field and the inherent methods named above); `$conn` is its connection type,
/// `$begin` the statement that opens an audit append's transaction and `$lock` the
/// statement run first inside it to lock the chain, if `$begin` does not already.
macro_rules! shared_store_impls {
    ($store:ty, $conn:ty, $begin:expr, $lock:expr) => {
        impl $store {
            /// Run `work` in one transaction with the audit chain locked (`$begin`, then
            /// `$lock`): committed when it succeeds, rolled back when it fails. The
            /// transaction is the pool's own (`sqlx::Transaction`): when this future is
            /// dropped half-way (a timeout, a cancelled task) the rollback is queued and
            /// runs before the connection is handed out again, so no connection ever goes
            /// back to the pool inside `BEGIN` (holding the chain's lock).
            async fn in_audit_transaction<T>(
                &self,
                work: impl AsyncFnOnce(&mut $conn) -> Result<T, StoreError>,
            ) -> Result<T, StoreError> {
                let mut tx = self.pool.begin_with($begin).await.map_err($crate::backend)?;
                let lock: Option<&'static str> = $lock;
                if let Some(lock) = lock {
                    sqlx::raw_sql(lock).execute(&mut *tx).await.map_err($crate::backend)?;
                }
                let result = work(&mut *tx).await;
                if result.is_ok() {
                    tx.commit().await.map_err($crate::backend)?;
                } else {
                    tx.rollback().await.map_err($crate::backend)?;
                }
                result
            }

            /// Re-key the audit chain under this store's seal (after `rpcc keys rotate`,
            /// so the old key can be retired): the chain is locked as for an append and
            /// verified with `keyring`, then every keyed entry's MAC and link is
            /// rewritten in one transaction, and the checkpoint moves to the new head.
            /// Returns how many entries changed.
            pub async fn rekey_audit(&self, keyring: &rpcc_core::keyring::Keyring) -> Result<u64, StoreError> {
                let Some(seal) = &self.seal else { return Ok(0) };
                let result = self
                    .in_audit_transaction(async |conn: &mut $conn| {
                    let rows = sqlx::query($crate::AUDIT_SELECT).fetch_all(&mut *conn).await.map_err($crate::backend)?;
                    let records = rows.iter().map($crate::rows::audit_record).collect::<Result<Vec<_>, _>>()?;
                    let changed =
                        rpcc_core::deploy::rekey_chain(&records, keyring, seal).map_err(|v| v.rekey_refusal())?;
                    for r in &changed {
                        sqlx::query("UPDATE audit_log SET prev_hash = $1, hash = $2 WHERE seq = $3")
                            .bind(&r.prev_hash)
                            .bind(&r.hash)
                            .bind(r.seq)
                            .execute(&mut *conn)
                            .await
                            .map_err($crate::backend)?;
                    }
                    Ok(changed)
                })
                    .await;
                let changed = result?;
                if let Some(head) = changed.last()
                    && let Err(e) = seal.rewrite_checkpoint(head)
                {
                    tracing::error!(error = %e, "audit checkpoint not moved to the re-keyed head");
                }
                Ok(changed.len() as u64)
            }

            /// Insert or replace one sealed secret inside the caller's transaction.
            async fn upsert_secret(
                conn: &mut $conn,
                record: &rpcc_core::keyring::RecordId,
                envelope: &rpcc_core::keyring::Envelope,
                now_ms: i64,
            ) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO secrets (record, key_id, envelope, updated_ms) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (record) DO UPDATE SET key_id = excluded.key_id, envelope = excluded.envelope, \
                     updated_ms = excluded.updated_ms",
                )
                .bind(record.as_str())
                .bind(envelope.key_id().as_str())
                .bind(envelope.as_str())
                .bind(now_ms)
                .execute(conn)
                .await
                .map_err($crate::backend)?;
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl rpcc_core::deploy::StateStore for $store {
            async fn record_generation(
                &self,
                server: &str,
                manifest: &rpcc_core::generation::Manifest,
            ) -> Result<(), StoreError> {
                let json = serde_json::to_string(manifest).map_err($crate::corrupt)?;
                sqlx::query(
                    "INSERT INTO generations (server, id, tree_sha256, manifest, recorded_ms) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (server, id) DO NOTHING",
                )
                .bind(server)
                .bind(&manifest.id)
                .bind(manifest.tree_sha256.to_hex())
                .bind(json)
                .bind(rpcc_core::deploy::unix_ms())
                .execute(&self.pool)
                .await
                .map_err($crate::backend)?;
                Ok(())
            }

            async fn generation(
                &self,
                server: &str,
                id: &str,
            ) -> Result<Option<rpcc_core::generation::Manifest>, StoreError> {
                use $crate::rows::Cols as _;
                let row = sqlx::query("SELECT manifest FROM generations WHERE server = $1 AND id = $2")
                    .bind(server)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::backend)?;
                match row {
                    None => Ok(None),
                    Some(r) => serde_json::from_str(&r.text("manifest")?)
                        .map(Some)
                        .map_err(|e| $crate::corrupt(format!("manifest of {server}/{id}: {e}"))),
                }
            }

            async fn start_deployment(&self, d: &rpcc_core::deploy::NewDeployment) -> Result<i64, StoreError> {
                use $crate::rows::Cols as _;
                let row = sqlx::query(
                    "INSERT INTO deployments (server, action, generation, previous, state, actor, started_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                )
                .bind(&d.server)
                .bind(d.action.as_str())
                .bind(&d.generation)
                .bind(&d.previous)
                .bind(rpcc_core::deploy::DeploymentState::Running.as_str())
                .bind(&d.actor)
                .bind(rpcc_core::deploy::unix_ms())
                .fetch_one(&self.pool)
                .await
                .map_err($crate::backend)?;
                row.int("id")
            }

            async fn finish_deployment(
                &self,
                id: i64,
                state: rpcc_core::deploy::DeploymentState,
                detail: &str,
            ) -> Result<(), StoreError> {
                let done =
                    sqlx::query("UPDATE deployments SET state = $1, detail = $2, finished_ms = $3 WHERE id = $4")
                        .bind(state.as_str())
                        .bind(detail)
                        .bind(rpcc_core::deploy::unix_ms())
                        .bind(id)
                        .execute(&self.pool)
                        .await
                        .map_err($crate::backend)?;
                if done.rows_affected() == 1 { Ok(()) } else { Err($crate::corrupt(format!("no deployment {id}"))) }
            }

            async fn abandon_running(&self, server: &str) -> Result<u64, StoreError> {
                let done = sqlx::query(
                    "UPDATE deployments SET state = $1, finished_ms = $2, \
                     detail = 'the control plane stopped mid-way' WHERE server = $3 AND state = $4",
                )
                .bind(rpcc_core::deploy::DeploymentState::Abandoned.as_str())
                .bind(rpcc_core::deploy::unix_ms())
                .bind(server)
                .bind(rpcc_core::deploy::DeploymentState::Running.as_str())
                .execute(&self.pool)
                .await
                .map_err($crate::backend)?;
                Ok(done.rows_affected())
            }

            async fn deployments(
                &self,
                server: Option<&str>,
                limit: u32,
            ) -> Result<Vec<rpcc_core::deploy::DeploymentRecord>, StoreError> {
                // Two statements rather than `($1 IS NULL OR server = $1)`, which no index
                // serves: per server, the newest rows come straight from its index.
                let rows = match server {
                    Some(name) => sqlx::query(
                        "SELECT id, server, action, generation, previous, state, actor, started_ms, finished_ms, \
                         detail FROM deployments WHERE server = $1 ORDER BY id DESC LIMIT $2",
                    )
                    .bind(name),
                    None => sqlx::query(
                        "SELECT id, server, action, generation, previous, state, actor, started_ms, finished_ms, \
                         detail FROM deployments ORDER BY id DESC LIMIT $1",
                    ),
                }
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err($crate::backend)?;
                rows.iter().map($crate::rows::deployment).collect()
            }

            async fn last_deployments(
                &self,
                servers: &[&str],
            ) -> Result<Vec<rpcc_core::deploy::DeploymentRecord>, StoreError> {
                self.last_deployments_here(servers).await
            }

            async fn append_audit(
                &self,
                event: &rpcc_core::deploy::AuditEvent,
            ) -> Result<rpcc_core::deploy::AuditRecord, StoreError> {
                use $crate::rows::Cols as _;
                // The chain is locked before its head is read, so two appenders (processes,
                // control planes) never chain from the same entry.
                let result = self
                    .in_audit_transaction(async |conn: &mut $conn| {
                    let head = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
                        .fetch_optional(&mut *conn)
                        .await
                        .map_err($crate::backend)?;
                    let (seq, prev_hash) = match head {
                        Some(r) => (r.int("seq")? + 1, r.text("hash")?),
                        None => (1, rpcc_core::deploy::AUDIT_GENESIS.to_owned()),
                    };
                    let hash = rpcc_core::deploy::next_hash(self.seal.as_deref(), event, seq, &prev_hash)?;
                    sqlx::query(
                        "INSERT INTO audit_log (seq, at_ms, actor, action, server, generation, outcome, detail, \
                         prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                    )
                    .bind(seq)
                    .bind(event.at_ms)
                    .bind(&event.actor)
                    .bind(event.action.as_str())
                    .bind(&event.server)
                    .bind(&event.generation)
                    .bind(&event.outcome)
                    .bind(&event.detail)
                    .bind(&prev_hash)
                    .bind(&hash)
                    .execute(&mut *conn)
                    .await
                    .map_err($crate::backend)?;
                    Ok(rpcc_core::deploy::AuditRecord { seq, event: event.clone(), prev_hash, hash })
                })
                    .await;
                if let (Ok(record), Some(seal)) = (&result, &self.seal)
                    && let Err(e) = seal.advance(record)
                {
                    tracing::error!(error = %e, "audit checkpoint not written: a deleted tail would go unnoticed");
                }
                result
            }

            async fn audit_log(&self) -> Result<Vec<rpcc_core::deploy::AuditRecord>, StoreError> {
                let rows = sqlx::query($crate::AUDIT_SELECT).fetch_all(&self.pool).await.map_err($crate::backend)?;
                rows.iter().map($crate::rows::audit_record).collect()
            }

            async fn lock_server(
                &self,
                server: &str,
                holder: &str,
                wait: std::time::Duration,
            ) -> Result<rpcc_core::deploy::LocalLock, StoreError> {
                self.lock_server_here(server, holder, wait).await
            }
        }

        #[async_trait::async_trait]
        impl rpcc_core::keyring::SecretStore for $store {
            async fn put_secrets(
                &self,
                items: &[(rpcc_core::keyring::RecordId, rpcc_core::keyring::Envelope)],
            ) -> Result<(), StoreError> {
                let mut tx = self.pool.begin().await.map_err($crate::backend)?;
                let now = rpcc_core::deploy::unix_ms();
                for (record, envelope) in items {
                    Self::upsert_secret(&mut tx, record, envelope, now).await?;
                }
                tx.commit().await.map_err($crate::backend)
            }

            async fn secret(
                &self,
                record: &rpcc_core::keyring::RecordId,
            ) -> Result<Option<rpcc_core::keyring::Envelope>, StoreError> {
                let row = sqlx::query("SELECT record, envelope FROM secrets WHERE record = $1")
                    .bind(record.as_str())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::backend)?;
                row.as_ref().map($crate::rows::secret).transpose().map(|r| r.map(|(_, e)| e))
            }

            async fn secrets_not_under(
                &self,
                key: &rpcc_core::keyring::KeyId,
                after: Option<&rpcc_core::keyring::RecordId>,
                limit: usize,
            ) -> Result<Vec<(rpcc_core::keyring::RecordId, rpcc_core::keyring::Envelope)>, StoreError> {
                let rows = sqlx::query(
                    "SELECT record, envelope FROM secrets WHERE key_id <> $1 AND record > $2 ORDER BY record LIMIT $3",
                )
                .bind(key.as_str())
                .bind(after.map_or("", rpcc_core::keyring::RecordId::as_str))
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_all(&self.pool)
                .await
                .map_err($crate::backend)?;
                rows.iter().map($crate::rows::secret).collect()
            }

            async fn secrets_under(
                &self,
                key: &rpcc_core::keyring::KeyId,
                limit: usize,
            ) -> Result<Vec<rpcc_core::keyring::RecordId>, StoreError> {
                let rows = sqlx::query("SELECT record, envelope FROM secrets WHERE key_id = $1 ORDER BY record LIMIT $2")
                    .bind(key.as_str())
                    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::backend)?;
                rows.iter().map(|r| $crate::rows::secret(r).map(|(rec, _)| rec)).collect()
            }

            async fn replace_secrets(&self, swaps: &[rpcc_core::keyring::SecretSwap]) -> Result<usize, StoreError> {
                if swaps.is_empty() {
                    return Ok(0);
                }
                self.swap_secrets_here(swaps).await
            }

            async fn secret_counts(&self) -> Result<Vec<(String, u64)>, StoreError> {
                let rows = sqlx::query("SELECT key_id, COUNT(*) AS n FROM secrets GROUP BY key_id ORDER BY key_id")
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::backend)?;
                rows.iter().map($crate::rows::key_count).collect()
            }
        }

        #[async_trait::async_trait]
        impl rpcc_core::certs::CertificateStore for $store {
            async fn put_certificate(
                &self,
                cert: &rpcc_core::certs::CertificateRecord,
                key: &rpcc_core::keyring::Envelope,
            ) -> Result<(), StoreError> {
                let record = rpcc_core::certs::key_record(&cert.site)
                    .map_err(|e| $crate::corrupt(format!("certificate of {:?}: {e}", cert.site)))?;
                let names = serde_json::to_string(&cert.names).map_err(|e| $crate::corrupt(e.to_string()))?;
                let mut tx = self.pool.begin().await.map_err($crate::backend)?;
                Self::upsert_secret(&mut tx, &record, key, cert.stored_ms).await?;
                sqlx::query(
                    "INSERT INTO certificates (site, names, origin, chain_pem, fingerprint, issuer, not_before, \
                     not_after, stored_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (site) DO UPDATE \
                     SET names = excluded.names, origin = excluded.origin, chain_pem = excluded.chain_pem, \
                     fingerprint = excluded.fingerprint, issuer = excluded.issuer, \
                     not_before = excluded.not_before, not_after = excluded.not_after, stored_ms = excluded.stored_ms",
                )
                .bind(&cert.site)
                .bind(names)
                .bind(cert.origin.as_str())
                .bind(&cert.chain_pem)
                .bind(cert.fingerprint.to_hex())
                .bind(&cert.issuer)
                .bind(cert.not_before)
                .bind(cert.not_after)
                .bind(cert.stored_ms)
                .execute(&mut *tx)
                .await
                .map_err($crate::backend)?;
                tx.commit().await.map_err($crate::backend)
            }

            async fn certificates(&self) -> Result<Vec<rpcc_core::certs::CertificateRecord>, StoreError> {
                let rows = sqlx::query(
                    "SELECT site, names, origin, chain_pem, fingerprint, issuer, not_before, not_after, stored_ms \
                     FROM certificates ORDER BY site",
                )
                .fetch_all(&self.pool)
                .await
                .map_err($crate::backend)?;
                rows.iter().map($crate::rows::certificate).collect()
            }

            async fn remove_certificate(&self, site: &str) -> Result<bool, StoreError> {
                let mut tx = self.pool.begin().await.map_err($crate::backend)?;
                if let Ok(record) = rpcc_core::certs::key_record(site) {
                    sqlx::query("DELETE FROM secrets WHERE record = $1")
                        .bind(record.as_str())
                        .execute(&mut *tx)
                        .await
                        .map_err($crate::backend)?;
                }
                let gone = sqlx::query("DELETE FROM certificates WHERE site = $1")
                    .bind(site)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::backend)?
                    .rows_affected();
                tx.commit().await.map_err($crate::backend)?;
                Ok(gone > 0)
            }
        }
    };
}

pub(crate) use shared_store_impls;
