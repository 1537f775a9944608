//! The SQLite store on real database files.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rpcc_core::deploy::{AuditAction, AuditEvent, DeploymentState, NewDeployment, StateStore, StoreError};
use rpcc_store::SqliteStore;

fn event(i: usize) -> AuditEvent {
    AuditEvent::now("ops@cp", AuditAction::Deploy, Some("edge-1"), "succeeded", &format!("run {i}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployments_persist_across_reopen_and_crashes_become_abandoned() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("state/rpcc.db");
    let store = SqliteStore::open(&path).await?;
    let new = |g: &str| NewDeployment {
        server: "edge-1".into(),
        action: AuditAction::Deploy,
        generation: g.into(),
        previous: None,
        actor: "ops@cp".into(),
    };
    let a = store.start_deployment(&new("g1")).await?;
    store.finish_deployment(a, DeploymentState::Succeeded, "ok").await?;
    let _crashed = store.start_deployment(&new("g2")).await?;
    store.close().await;

    let store = SqliteStore::open(&path).await?; // migrations are not applied twice
    assert_eq!(store.abandon_running("edge-1").await?, 1);
    let rows = store.deployments(Some("edge-1"), 10).await?;
    let states: Vec<_> = rows.iter().map(|d| (d.generation.as_str(), d.state)).collect();
    assert_eq!(states, [("g2", DeploymentState::Abandoned), ("g1", DeploymentState::Succeeded)]);
    assert!(store.deployments(Some("other"), 10).await?.is_empty());
    assert!(matches!(store.finish_deployment(999, DeploymentState::Failed, "").await, Err(StoreError::Corrupt { .. })));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_tampering_is_detected() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(&dir.path().join("a.db")).await?;
    for i in 0..10 {
        store.append_audit(&event(i)).await?;
    }
    assert_eq!(store.verify_audit().await?.broken, None);

    sqlx::query("UPDATE audit_log SET outcome = 'rolled_back' WHERE seq = 4").execute(store.pool()).await?;
    let v = store.verify_audit().await?;
    assert_eq!(v.broken.as_ref().map(|b| b.0), Some(4), "{v:?}");
    assert!(v.broken.as_ref().is_some_and(|b| b.1.contains("edited")));
    sqlx::query("UPDATE audit_log SET outcome = 'succeeded' WHERE seq = 4").execute(store.pool()).await?;
    assert_eq!(store.verify_audit().await?.broken, None, "restoring the value restores the chain");

    sqlx::query("DELETE FROM audit_log WHERE seq = 7").execute(store.pool()).await?;
    assert_eq!(store.verify_audit().await?.broken.map(|b| b.0), Some(8));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appenders_on_one_file_keep_one_chain() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("c.db");
    let a = Arc::new(SqliteStore::open(&path).await?);
    let b = Arc::new(SqliteStore::open(&path).await?);
    let mut tasks = Vec::new();
    for (k, s) in [a.clone(), b.clone(), a.clone(), b.clone()].into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            for i in 0..50 {
                s.append_audit(&event(k * 1000 + i)).await?;
            }
            Ok::<_, StoreError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let v = a.verify_audit().await?;
    assert_eq!((v.entries, v.broken), (200, None));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_lock_serializes_holders_and_times_out_naming_the_holder() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("l.db");
    let a = SqliteStore::open(&path).await?;
    let b = SqliteStore::open(&path).await?;
    let held = a.lock_server("edge-1", "first@cp", Duration::from_secs(1)).await?;
    let err = b.lock_server("edge-1", "second@cp", Duration::from_millis(200)).await.unwrap_err();
    match &err {
        StoreError::LockTimeout { server, holder, .. } => {
            assert_eq!(server, "edge-1");
            assert!(holder.starts_with("first@cp"), "{holder}");
        }
        other => panic!("{other:?}"),
    }
    assert!(err.is_retryable());
    // Another server is independent.
    let _other = b.lock_server("edge-2", "second@cp", Duration::from_millis(200)).await?;
    // The waiter gets the lock as soon as the holder lets go.
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(held);
    });
    let t = Instant::now();
    let _got = b.lock_server("edge-1", "second@cp", Duration::from_secs(5)).await?;
    assert!(t.elapsed() >= Duration::from_millis(250));
    release.await?;
    assert!(a.lock_server("../etc", "x", Duration::ZERO).await.is_err());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_swaps_are_compare_and_swap_in_one_transaction_and_only_envelopes_are_stored() -> anyhow::Result<()> {
    use rpcc_core::keyring::{KeyId, Keyring, RecordId, SecretStore as _, SecretSwap};
    use secrecy::SecretString;

    let dir = tempfile::tempdir()?;
    let path = dir.path().join("s.db");
    let store = SqliteStore::open(&path).await?;
    let (_, a) = Keyring::generate_entry(KeyId::parse("a").ok())?;
    let (_, b) = Keyring::generate_entry(KeyId::parse("b").ok())?;
    let old = Keyring::parse(&a, "t")?;
    let new = Keyring::parse(&format!("{}\n{}", a.as_str(), b.as_str()), "t")?;
    let records: Vec<RecordId> =
        (0..2500).map(|i| RecordId::parse(&format!("server/s{i:04}/password"))).collect::<Result<_, _>>()?;
    let items: Vec<_> = records
        .iter()
        .map(|r| Ok((r.clone(), old.seal(r, &SecretString::from(format!("v-{r}")))?)))
        .collect::<anyhow::Result<_>>()?;
    store.put_secrets(&items).await?;
    assert_eq!(store.secret_counts().await?, vec![("a".to_owned(), 2500)]);

    // Record 7 changes meanwhile: its swap is skipped, the other 2,499 apply (3 chunks).
    let changed = old.seal(&records[7], &SecretString::from("changed"))?;
    let swaps: Vec<SecretSwap> = items
        .iter()
        .map(|(r, e)| Ok(SecretSwap { record: r.clone(), old: e.clone(), new: new.seal(r, &new.open(r, e)?)? }))
        .collect::<anyhow::Result<_>>()?;
    store.put_secret(&records[7], &changed).await?;
    assert_eq!(store.replace_secrets(&swaps).await?, 2499);
    assert_eq!(store.secret(&records[7]).await?, Some(changed));
    let b_id = KeyId::parse("b").map_err(anyhow::Error::msg)?;
    assert_eq!(store.secrets_not_under(&b_id, None, 10).await?.len(), 1);
    assert_eq!(
        store.secrets_under(&KeyId::parse("a").map_err(anyhow::Error::msg)?, 10).await?,
        vec![records[7].clone()]
    );
    // The database file holds envelopes only, never a plain value.
    store.close().await;
    let raw = std::fs::read(&path)?;
    assert!(!raw.windows(6).any(|w| w == b"v-serv"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_stored_with_their_sealed_key_replaced_and_removed_together() -> anyhow::Result<()> {
    use rpcc_core::certs::{CertificateOrigin, CertificateRecord, CertificateStore as _, key_record};
    use rpcc_core::generation::Sha256Digest;
    use rpcc_core::keyring::{KeyId, Keyring, SecretStore as _};
    use secrecy::{ExposeSecret as _, SecretString};

    let dir = tempfile::tempdir()?;
    let path = dir.path().join("s.db");
    let store = SqliteStore::open(&path).await?;
    let (_, k) = Keyring::generate_entry(KeyId::parse("k1").ok())?;
    let ring = Keyring::parse(&k, "t")?;
    let record = key_record("app.example.com")?;
    let names = vec!["app.example.com".to_owned(), "www.app.example.com".to_owned()];
    let cert = |pem: &str, not_after: i64| {
        CertificateRecord::new(
            "app.example.com",
            names.clone(),
            CertificateOrigin::Acme,
            pem.to_owned(),
            Sha256Digest::of(pem.as_bytes()),
            "CN=Test CA".into(),
            0,
            not_after,
        )
    };
    let first = cert("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", 1_000);
    store.put_certificate(&first, &ring.seal(&record, &SecretString::from("KEY-1"))?).await?;
    // Reopened: the row and its key are there, and the key is only an envelope.
    drop(store);
    let store = SqliteStore::open(&path).await?;
    assert_eq!(store.certificates().await?, vec![first.clone()]);
    let sealed = store.secret(&record).await?.expect("key stored");
    assert!(sealed.as_str().starts_with("rpcc:v1:k1:"));
    assert_eq!(ring.open(&record, &sealed)?.expose_secret(), "KEY-1");
    let raw = std::fs::read(&path)?;
    assert!(!raw.windows(5).any(|w| w == b"KEY-1"), "the key is never stored in the clear");

    // Replaced as a pair.
    let second = cert("-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n", 2_000);
    store.put_certificate(&second, &ring.seal(&record, &SecretString::from("KEY-2"))?).await?;
    assert_eq!(store.certificates().await?, vec![second]);
    assert_eq!(ring.open(&record, &store.secret(&record).await?.expect("key"))?.expose_secret(), "KEY-2");

    // Removed as a pair.
    assert!(store.remove_certificate("app.example.com").await?);
    assert!(store.certificates().await?.is_empty() && store.secret(&record).await?.is_none());
    assert!(!store.remove_certificate("app.example.com").await?);
    Ok(())
}
