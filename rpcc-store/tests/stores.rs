//! The store suite, run on both backends: SQLite on real database files and PostgreSQL
//! on a real server (rpcc-testkit's `PgServer`: the distribution's package, loopback, a
//! throwaway cluster per test process). Each check is one function; `both!` makes a
//! test per backend.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rpcc_core::deploy::{AuditAction, AuditEvent, DeploymentState, NewDeployment, StoreError};
use rpcc_core::store::EngineStore;
use rpcc_store::{PgStore, SqliteStore};
use rpcc_testkit::PgServer;

/// One backend's database, opened as many times as a check needs (each open is what
/// another process or control plane would hold).
enum Db {
    Sqlite { _dir: tempfile::TempDir, path: std::path::PathBuf },
    Postgres { server: PgServer, url: String },
}

impl Db {
    fn sqlite() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("state/rpcc.db");
        Ok(Self::Sqlite { _dir: dir, path })
    }

    fn postgres() -> anyhow::Result<Self> {
        let server = PgServer::start()?;
        let url = server.fresh_database()?;
        Ok(Self::Postgres { server, url })
    }

    async fn open(&self) -> anyhow::Result<Arc<dyn EngineStore>> {
        Ok(match self {
            Self::Sqlite { path, .. } => Arc::new(SqliteStore::open(path).await?),
            Self::Postgres { url, .. } => Arc::new(PgStore::open(url).await?),
        })
    }

    async fn open_watch(&self) -> anyhow::Result<Arc<dyn rpcc_store::WatchStore>> {
        Ok(match self {
            Self::Sqlite { path, .. } => {
                rpcc_store::open_watch_url(path.to_str().unwrap_or_default(), None, rpcc_store::EnvironmentClaim::Any)
                    .await?
            }
            Self::Postgres { url, .. } => {
                rpcc_store::open_watch_url(url, None, rpcc_store::EnvironmentClaim::Any).await?
            }
        })
    }

    /// Run one SQL statement behind the store's back (tampering).
    async fn sql(&self, statement: &str) -> anyhow::Result<()> {
        match self {
            Self::Sqlite { path, .. } => {
                let store = SqliteStore::open(path).await?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(statement)).execute(store.pool()).await?;
                store.close().await;
            }
            Self::Postgres { url, .. } => {
                let store = PgStore::open(url).await?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(statement)).execute(store.pool()).await?;
                store.close().await;
            }
        }
        Ok(())
    }

    /// Whether `needle` appears anywhere in what the database keeps (the SQLite file;
    /// a full pg_dump of the PostgreSQL database).
    fn stores_bytes(&self, needle: &[u8]) -> anyhow::Result<bool> {
        let raw = match self {
            Self::Sqlite { path, .. } => {
                let mut raw = std::fs::read(path)?;
                if let Ok(wal) = std::fs::read(path.with_extension("db-wal")) {
                    raw.extend(wal);
                }
                raw
            }
            Self::Postgres { server, url } => server.dump(url)?.into_bytes(),
        };
        Ok(raw.windows(needle.len()).any(|w| w == needle))
    }
}

macro_rules! both {
    ($check:ident) => {
        mod $check {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() -> anyhow::Result<()> {
                super::$check(&super::Db::sqlite()?).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() -> anyhow::Result<()> {
                super::$check(&super::Db::postgres()?).await
            }
        }
    };
}

fn event(i: usize) -> AuditEvent {
    AuditEvent::now("ops@cp", AuditAction::Deploy, Some("edge-1"), "succeeded", &format!("run {i}"))
}

both!(deployments_persist_across_reopen_and_crashes_become_abandoned);
async fn deployments_persist_across_reopen_and_crashes_become_abandoned(db: &Db) -> anyhow::Result<()> {
    let store = db.open().await?;
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
    drop(store);

    let store = db.open().await?; // migrations are not applied twice
    assert_eq!(store.abandon_running("edge-1").await?, 1);
    let rows = store.deployments(Some("edge-1"), 10).await?;
    let states: Vec<_> = rows.iter().map(|d| (d.generation.as_str(), d.state)).collect();
    assert_eq!(states, [("g2", DeploymentState::Abandoned), ("g1", DeploymentState::Succeeded)]);
    assert_eq!(store.deployments(None, 1).await?.len(), 1);
    // A fleet's last deployments in one call: one per server that has any.
    let b1 = store.start_deployment(&NewDeployment { server: "edge-2".into(), ..new("h1") }).await?;
    store.finish_deployment(b1, DeploymentState::RolledBack, "probe").await?;
    let mut last = store.last_deployments(&["edge-1", "edge-2", "edge-3", "it's; DROP TABLE x"]).await?;
    last.sort_by(|a, b| a.server.cmp(&b.server));
    let got: Vec<_> = last.iter().map(|d| (d.server.as_str(), d.generation.as_str(), d.state)).collect();
    assert_eq!(got, [("edge-1", "g2", DeploymentState::Abandoned), ("edge-2", "h1", DeploymentState::RolledBack)]);
    assert!(store.deployments(Some("other"), 10).await?.is_empty());
    assert!(matches!(store.finish_deployment(999, DeploymentState::Failed, "").await, Err(StoreError::Corrupt { .. })));
    Ok(())
}

both!(audit_tampering_is_detected);
async fn audit_tampering_is_detected(db: &Db) -> anyhow::Result<()> {
    let store = db.open().await?;
    for i in 0..10 {
        store.append_audit(&event(i)).await?;
    }
    assert_eq!(store.verify_audit().await?.broken, None);
    assert_eq!(store.audit_head().await?.map(|h| h.0), Some(10));

    db.sql("UPDATE audit_log SET outcome = 'rolled_back' WHERE seq = 4").await?;
    let v = store.verify_audit().await?;
    assert_eq!(v.broken.as_ref().map(|b| b.0), Some(4), "{v:?}");
    assert!(v.broken.as_ref().is_some_and(|b| b.1.contains("edited")));
    db.sql("UPDATE audit_log SET outcome = 'succeeded' WHERE seq = 4").await?;
    assert_eq!(store.verify_audit().await?.broken, None, "restoring the value restores the chain");

    db.sql("DELETE FROM audit_log WHERE seq = 7").await?;
    assert_eq!(store.verify_audit().await?.broken.map(|b| b.0), Some(8));
    Ok(())
}

both!(concurrent_appenders_keep_one_chain);
/// Four appenders over two opens of one database (two processes, or two control planes
/// on PostgreSQL): 200 entries, one unbroken chain.
async fn concurrent_appenders_keep_one_chain(db: &Db) -> anyhow::Result<()> {
    let a = db.open().await?;
    let b = db.open().await?;
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

both!(a_cancelled_audit_append_leaves_no_open_transaction);
/// An audit append whose future is dropped inside its transaction (a timeout while it
/// waits for the chain's lock, held here by another session) must not leave a pooled
/// connection inside `BEGIN` holding that lock: the next appends, on this pool and on
/// another one, go through at once and the database shows no open transaction.
async fn a_cancelled_audit_append_leaves_no_open_transaction(db: &Db) -> anyhow::Result<()> {
    let store = db.open().await?;
    store.append_audit(&event(0)).await?;
    // Another session holds the chain: SQLite's write lock, PostgreSQL's audit key.
    let (hold, release, pool_check): (&str, &str, Option<&str>) = match db {
        Db::Sqlite { .. } => ("BEGIN IMMEDIATE", "ROLLBACK", None),
        Db::Postgres { .. } => (
            "SELECT pg_advisory_lock(125827029336065)",
            "SELECT pg_advisory_unlock(125827029336065)",
            Some(
                "SELECT COUNT(*) AS n FROM pg_stat_activity WHERE datname = current_database() \
                 AND state LIKE 'idle in transaction%'",
            ),
        ),
    };
    let cancelled = match db {
        Db::Sqlite { path, .. } => {
            let other = SqliteStore::open(path).await?;
            let mut conn = other.pool().acquire().await?;
            sqlx::raw_sql(hold).execute(&mut *conn).await?;
            let cancelled = tokio::time::timeout(Duration::from_millis(500), store.append_audit(&event(1))).await;
            sqlx::raw_sql(release).execute(&mut *conn).await?;
            cancelled
        }
        Db::Postgres { url, .. } => {
            let other = PgStore::open(url).await?;
            let mut conn = other.pool().acquire().await?;
            sqlx::raw_sql(hold).execute(&mut *conn).await?;
            let cancelled = tokio::time::timeout(Duration::from_millis(500), store.append_audit(&event(1))).await;
            sqlx::raw_sql(release).execute(&mut *conn).await?;
            cancelled
        }
    };
    assert!(cancelled.is_err(), "the append waited for the chain and was cancelled: {cancelled:?}");
    // The next use of the pool (every connection of it, by appending more often than it
    // has connections) and another control plane's both go through.
    let again = Duration::from_secs(10);
    for i in 2..20 {
        tokio::time::timeout(again, store.append_audit(&event(i))).await.map_err(|_| {
            anyhow::anyhow!("append {i} on the same pool blocked: a connection is still inside BEGIN")
        })??;
    }
    let fresh = db.open().await?;
    tokio::time::timeout(again, fresh.append_audit(&event(20)))
        .await
        .map_err(|_| anyhow::anyhow!("another pool's append blocked: the chain is still locked"))??;
    if let (Some(query), Db::Postgres { url, .. }) = (pool_check, db) {
        let other = PgStore::open(url).await?;
        let row = sqlx::query(query).fetch_one(other.pool()).await?;
        let open: i64 = sqlx::Row::try_get(&row, "n")?;
        assert_eq!(open, 0, "sessions idle inside a transaction");
    }
    let v = store.verify_audit().await?;
    assert_eq!((v.entries, v.broken), (20, None), "the cancelled append left no entry");
    Ok(())
}

both!(server_lock_serializes_holders_and_times_out_naming_the_holder);
async fn server_lock_serializes_holders_and_times_out_naming_the_holder(db: &Db) -> anyhow::Result<()> {
    let a = db.open().await?;
    let b = db.open().await?;
    let held = a.lock_server("edge-1", "first@cp", Duration::from_secs(1)).await?;
    let err = b.lock_server("edge-1", "second@cp", Duration::from_millis(200)).await.expect_err("held by the first");
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

both!(secret_swaps_are_compare_and_swap_and_only_envelopes_are_stored);
async fn secret_swaps_are_compare_and_swap_and_only_envelopes_are_stored(db: &Db) -> anyhow::Result<()> {
    use rpcc_core::keyring::{KeyId, Keyring, RecordId, SecretSwap};
    use secrecy::SecretString;

    let store = db.open().await?;
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

    // Record 7 changes meanwhile: its swap is skipped, the other 2,499 apply.
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
    // Paging walks records in byte order from a cursor.
    let a_id = KeyId::parse("a").map_err(anyhow::Error::msg)?;
    let page = store.secrets_not_under(&a_id, Some(&records[100]), 3).await?;
    assert_eq!(page.iter().map(|(r, _)| r.clone()).collect::<Vec<_>>(), records[101..104].to_vec());
    // What the database keeps holds envelopes only, never a plain value.
    drop(store);
    assert!(!db.stores_bytes(b"v-serv")?);
    Ok(())
}

both!(certificates_are_stored_with_their_sealed_key_replaced_and_removed_together);
async fn certificates_are_stored_with_their_sealed_key_replaced_and_removed_together(db: &Db) -> anyhow::Result<()> {
    use rpcc_core::certs::{CertificateOrigin, CertificateRecord, key_record};
    use rpcc_core::generation::Sha256Digest;
    use rpcc_core::keyring::{KeyId, Keyring};
    use secrecy::{ExposeSecret as _, SecretString};

    let store = db.open().await?;
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
    let store = db.open().await?;
    assert_eq!(store.certificates().await?, vec![first.clone()]);
    let sealed = store.secret(&record).await?.expect("key stored");
    assert!(sealed.as_str().starts_with("rpcc:v1:k1:"));
    assert_eq!(ring.open(&record, &sealed)?.expose_secret(), "KEY-1");
    assert!(!db.stores_bytes(b"KEY-1")?, "the key is never stored in the clear");

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

/// Run by [`a_dead_control_planes_lock_is_released_by_the_server`] in a child process:
/// take the lock of `edge-1`, say so, and hold it until killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_holder_child() -> anyhow::Result<()> {
    let Ok(url) = std::env::var("RPCC_TEST_LOCK_CHILD_URL") else { return Ok(()) };
    let store = PgStore::open(&url).await?;
    let _held =
        rpcc_core::deploy::StateStore::lock_server(&store, "edge-1", "child@cp", Duration::from_secs(5)).await?;
    println!("rpcc-child-locked");
    tokio::time::sleep(Duration::from_secs(120)).await;
    Ok(())
}

/// PostgreSQL locks end with the holder's session: a control plane killed with SIGKILL
/// while deploying does not leave its server locked (the SQLite store's flock behaves
/// the same way on one machine).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_control_planes_lock_is_released_by_the_server() -> anyhow::Result<()> {
    use std::io::BufRead as _;
    let Db::Postgres { url, .. } = &Db::postgres()? else { unreachable!() };
    /// Killed however the test ends.
    struct Child(std::process::Child);
    impl Drop for Child {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Child(
        std::process::Command::new(std::env::current_exe()?)
            .args(["--exact", "lock_holder_child", "--nocapture", "--test-threads", "1"])
            .env("RPCC_TEST_LOCK_CHILD_URL", url)
            .stdout(std::process::Stdio::piped())
            .spawn()?,
    );
    let stdout = child.0.stdout.take().expect("piped");
    let mut lines = std::io::BufReader::new(stdout).lines();
    assert!(lines.any(|l| l.is_ok_and(|l| l.contains("rpcc-child-locked"))), "the child took the lock");
    let store = PgStore::open(url).await?;
    let err = rpcc_core::deploy::StateStore::lock_server(&store, "edge-1", "parent@cp", Duration::from_millis(200))
        .await
        .expect_err("the child holds it");
    assert!(matches!(&err, StoreError::LockTimeout { holder, .. } if holder.starts_with("child@cp")), "{err}");
    child.0.kill()?; // SIGKILL: no destructor runs, the socket is closed by the kernel
    child.0.wait()?;
    let t = Instant::now();
    let _got =
        rpcc_core::deploy::StateStore::lock_server(&store, "edge-1", "parent@cp", Duration::from_secs(10)).await?;
    assert!(t.elapsed() < Duration::from_secs(5), "released within {:?}", t.elapsed());
    Ok(())
}

both!(watch_members_expire_without_a_heartbeat_and_leave_at_once);
async fn watch_members_expire_without_a_heartbeat_and_leave_at_once(db: &Db) -> anyhow::Result<()> {
    let (a, b) = (db.open_watch().await?, db.open_watch().await?);
    let ttl = 500;
    assert_eq!(a.heartbeat("w2", 1_000, ttl).await?, ["w2"]);
    assert_eq!(b.heartbeat("w1", 1_100, ttl).await?, ["w1", "w2"]);
    // w2 stops heartbeating: gone once its last heartbeat is older than the ttl.
    assert_eq!(b.heartbeat("w1", 1_500, ttl).await?, ["w1", "w2"]);
    assert_eq!(b.heartbeat("w1", 1_501, ttl).await?, ["w1"]);
    // Back again; then a clean leave removes it at once.
    assert_eq!(a.heartbeat("w2", 1_600, ttl).await?, ["w1", "w2"]);
    a.leave("w2").await?;
    assert_eq!(b.heartbeat("w1", 1_650, ttl).await?, ["w1"]);
    // Samples on the same store.
    let sample =
        |at_ms| rpcc_store::MetricSample { server: "s0".into(), at_ms, cpu: 1.0, mem: 2.0, load1: 0.5, disk_max: 40.0 };
    a.record_samples(&[sample(10), sample(20), sample(20)]).await?;
    assert_eq!(b.samples("s0", 0).await?.len(), 2);
    assert_eq!(b.prune_samples(15).await?, 1);
    Ok(())
}

both!(a_check_is_claimed_by_one_member_per_gap);
async fn a_check_is_claimed_by_one_member_per_gap(db: &Db) -> anyhow::Result<()> {
    let (a, b) = (db.open_watch().await?, db.open_watch().await?);
    let keys = |k: &[&str]| k.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    // First claims win; a second member asking for the same keys 10 ms later gets only
    // the ones nobody claimed.
    assert_eq!(sorted(a.claim_checks(&keys(&["s1", "s2"]), 1_000, 500).await?), ["s1", "s2"]);
    assert_eq!(
        sorted(b.claim_checks(&keys(&["s2", "s3", "site:a.example"]), 1_010, 500).await?),
        ["s3", "site:a.example"]
    );
    // Once the gap has passed the key can be claimed again, exactly at the boundary too.
    assert!(b.claim_checks(&keys(&["s1"]), 1_499, 500).await?.is_empty());
    assert_eq!(b.claim_checks(&keys(&["s1"]), 1_500, 500).await?, ["s1"]);
    assert!(a.claim_checks(&[], 9_000, 500).await?.is_empty());
    // Many keys in one statement (a 5,000-site fleet), hostile names included.
    let many: Vec<String> = (0..5_000).map(|i| format!("site:{i}.example\"'")).collect();
    assert_eq!(a.claim_checks(&many, 2_000, 500).await?.len(), 5_000);
    assert!(b.claim_checks(&many, 2_001, 500).await?.is_empty());
    Ok(())
}

both!(a_state_belongs_to_the_first_environment_that_uses_it);
async fn a_state_belongs_to_the_first_environment_that_uses_it(db: &Db) -> anyhow::Result<()> {
    use rpcc_store::EnvironmentClaim;
    let url = match db {
        Db::Sqlite { path, .. } => path.to_string_lossy().into_owned(),
        Db::Postgres { url, .. } => url.clone(),
    };
    // No environment yet: nothing recorded, anyone may claim it.
    rpcc_store::open_url(&url, None, EnvironmentClaim::For(None)).await?;
    rpcc_store::open_url(&url, None, EnvironmentClaim::For(Some("staging"))).await?;
    rpcc_store::open_url(&url, None, EnvironmentClaim::For(Some("staging"))).await?;
    for other in [Some("production"), None] {
        let err =
            rpcc_store::open_url(&url, None, EnvironmentClaim::For(other)).await.expect_err("another environment");
        assert!(matches!(&err, StoreError::WrongEnvironment { recorded, .. } if recorded == "staging"), "{err}");
        assert!(err.to_string().contains("environments never share a state"), "{err}");
    }
    // Read-only tools still read it.
    let store = rpcc_store::open_url(&url, None, EnvironmentClaim::Any).await?;
    assert!(store.deployments(None, 1).await?.is_empty());
    Ok(())
}
