//! Read-only operations: `plan` (what a deploy would change, with diffs), `drift` (hand
//! edits on a server) and `status` (what each server runs, when, by whom).

use std::collections::BTreeMap;
use std::io::Read as _;

use super::engine::DeployError;
use super::remote::{RemoteCommands, RemoteState};
use crate::generation::{Generation, GenerationPath, Sha256Digest};
use crate::model::{NginxMode, Server};
use crate::store::{DeploymentRecord, DeploymentState, StateStore};
use crate::transport::Transport;

/// How one file changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// New file.
    Added,
    /// Different contents.
    Changed,
    /// No longer in the tree.
    Removed,
}

/// One changed file with its unified diff.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FileChange {
    /// Relative path in the generation.
    pub path: String,
    /// Added, changed or removed.
    pub kind: ChangeKind,
    /// Unified diff (old → new).
    pub diff: String,
}

/// What a deploy would do on one server.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ServerPlan {
    /// Server name.
    pub server: String,
    /// The generation it runs now.
    pub current: Option<String>,
    /// The generation a deploy would activate.
    pub next: String,
    /// Changed files, in path order.
    pub changes: Vec<FileChange>,
    /// Files that stay the same.
    pub unchanged: usize,
    /// The first deploy takes over a hand-made `nginx.conf` (kept as generation 0).
    pub takes_over: Option<String>,
}

impl ServerPlan {
    /// Nothing would change.
    pub fn is_noop(&self) -> bool {
        self.current.as_deref() == Some(self.next.as_str()) && self.changes.is_empty()
    }
}

/// Compare `generation` with what `server` runs: two round trips (hashes, then the
/// changed files' old contents).
pub async fn plan(
    transport: &dyn Transport,
    server: &Server,
    generation: &Generation,
) -> Result<ServerPlan, DeployError> {
    let cmds = RemoteCommands::for_server(server);
    // Compare with the files as they are on the server (hand edits included).
    let live = live_hashes(transport, &cmds).await?;
    let state = RemoteState { current: live.current, manifest: live.files, ..RemoteState::default() };
    let mut kinds: BTreeMap<String, ChangeKind> = BTreeMap::new();
    let mut unchanged = 0;
    for (path, file) in generation.files() {
        match state.manifest.get(path.as_str()) {
            None => {
                kinds.insert(path.to_string(), ChangeKind::Added);
            }
            Some(d) if *d != Sha256Digest::of(&file.bytes) => {
                kinds.insert(path.to_string(), ChangeKind::Changed);
            }
            Some(_) => unchanged += 1,
        }
    }
    for path in state.manifest.keys() {
        if generation.file(path).is_none() {
            kinds.insert(path.clone(), ChangeKind::Removed);
        }
    }
    // A file that holds a secret: owner-only in the new tree, or a certificate's key.
    let secret =
        |path: &str| generation.file(path).is_some_and(|f| f.mode & 0o077 == 0) || crate::certs::is_key_path(path);
    let mut old: BTreeMap<String, String> = BTreeMap::new();
    if let Some(cur) = &state.current {
        // Private keys are never fetched from the server.
        let wanted: Vec<GenerationPath> = kinds
            .iter()
            .filter(|(p, k)| **k != ChangeKind::Added && !secret(p))
            .filter_map(|(p, _)| GenerationPath::parse(p).ok())
            .collect();
        if !wanted.is_empty() {
            let refs: Vec<&GenerationPath> = wanted.iter().collect();
            let out = transport.exec(cmds.fetch(cur, &refs)?).await?;
            let mut archive = tar::Archive::new(&out.stdout[..]);
            if let Ok(entries) = archive.entries() {
                for mut e in entries.flatten() {
                    let path = e.path().map(|p| p.display().to_string()).unwrap_or_default();
                    let mut text = String::new();
                    if e.read_to_string(&mut text).is_ok() {
                        old.insert(path.trim_start_matches("./").to_owned(), text);
                    }
                }
            }
        }
    }
    let changes = kinds
        .into_iter()
        .map(|(path, kind)| {
            if secret(&path) {
                let diff = format!("(private key: contents never shown; {})\n", kind_word(kind));
                return FileChange { path, kind, diff };
            }
            let before = old.get(&path).map_or("", String::as_str);
            let after =
                generation.file(&path).map(|f| String::from_utf8_lossy(&f.bytes).into_owned()).unwrap_or_default();
            let diff = similar::TextDiff::from_lines(before, after.as_str())
                .unified_diff()
                .context_radius(3)
                .header(&format!("a/{path}"), &format!("b/{path}"))
                .to_string();
            FileChange { path, kind, diff }
        })
        .collect();
    let takes_over = (server.nginx.mode == NginxMode::Owned && state.current.is_none())
        .then(|| format!("{} (kept as generation 0 before the first activation)", cmds.main_conf()));
    Ok(ServerPlan {
        server: server.name.to_string(),
        current: state.current,
        next: generation.id().to_owned(),
        changes,
        unchanged,
        takes_over,
    })
}

fn kind_word(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Added => "added",
        ChangeKind::Changed => "changed",
        ChangeKind::Removed => "removed",
    }
}

/// How a server's live tree compares with what rpcc recorded.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum DriftState {
    /// Live files match the recorded generation.
    Clean,
    /// Files were edited, added or removed by hand.
    Drifted {
        /// Files whose contents differ.
        modified: Vec<String>,
        /// Files rpcc did not write.
        added: Vec<String>,
        /// Files missing.
        removed: Vec<String>,
    },
    /// The server runs a generation this store never recorded.
    Unknown,
    /// Nothing deployed yet.
    NotDeployed,
}

/// Drift of one server.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DriftReport {
    /// Server name.
    pub server: String,
    /// The live generation.
    pub live: Option<String>,
    /// The generation of the last successful deploy in the store.
    pub recorded: Option<String>,
    /// The comparison.
    pub drift: DriftState,
}

/// Hash the live tree (one round trip) and compare it with the recorded manifest.
/// Changes nothing.
pub async fn drift(
    transport: &dyn Transport,
    server: &Server,
    store: &dyn StateStore,
) -> Result<DriftReport, DeployError> {
    let cmds = RemoteCommands::for_server(server);
    let LiveTree { current: live_id, files } = live_hashes(transport, &cmds).await?;
    let live: BTreeMap<String, String> = files.into_iter().map(|(p, d)| (p, d.to_hex())).collect();
    let name = server.name.as_str();
    let recorded = last_good(store, name).await?.map(|d| d.generation);
    let drift = match &live_id {
        None => DriftState::NotDeployed,
        Some(id) => match store.generation(name, id).await? {
            None => DriftState::Unknown,
            Some(manifest) => {
                let want: BTreeMap<String, String> =
                    manifest.files.iter().map(|f| (f.path.to_string(), f.sha256.to_hex())).collect();
                let modified: Vec<String> = want
                    .iter()
                    .filter(|(p, h)| live.get(*p).is_some_and(|l| l != *h))
                    .map(|(p, _)| p.clone())
                    .collect();
                let removed: Vec<String> = want.keys().filter(|p| !live.contains_key(*p)).cloned().collect();
                let added: Vec<String> = live.keys().filter(|p| !want.contains_key(*p)).cloned().collect();
                if modified.is_empty() && removed.is_empty() && added.is_empty() {
                    DriftState::Clean
                } else {
                    DriftState::Drifted { modified, added, removed }
                }
            }
        },
    };
    Ok(DriftReport { server: name.to_owned(), live: live_id, recorded, drift })
}

/// The live generation and the hashes of its files as they are on the server.
struct LiveTree {
    current: Option<String>,
    files: BTreeMap<String, Sha256Digest>,
}

async fn live_hashes(transport: &dyn Transport, cmds: &RemoteCommands) -> Result<LiveTree, DeployError> {
    let out = transport.exec(cmds.hashes()?).await?;
    if !out.success() {
        return Err(DeployError::Remote {
            step: super::engine::DeployStep::Inspect,
            code: -1,
            message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    let mut tree = LiveTree { current: None, files: BTreeMap::new() };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some(id) = line.strip_prefix("current=") {
            tree.current = (!id.is_empty()).then(|| id.to_owned());
        } else if let Some((hash, path)) = line.split_once("  ")
            && let Some(d) = Sha256Digest::from_hex(hash)
        {
            tree.files.insert(path.trim_start_matches("./").to_owned(), d);
        }
    }
    Ok(tree)
}

/// The newest successful deploy or rollback of `server`.
pub async fn last_good(store: &dyn StateStore, server: &str) -> Result<Option<DeploymentRecord>, DeployError> {
    Ok(store.deployments(Some(server), 200).await?.into_iter().find(|d| d.state == DeploymentState::Succeeded))
}

/// The generation to roll back to when none is named: the one the server ran before
/// its last successful deploy.
pub async fn previous_generation(
    store: &dyn StateStore,
    server: &str,
    live: Option<&str>,
) -> Result<Option<String>, DeployError> {
    let history = store.deployments(Some(server), 200).await?;
    let mut good = history.iter().filter(|d| d.state == DeploymentState::Succeeded);
    let Some(last) = good.next() else { return Ok(None) };
    if live.is_some_and(|l| l != last.generation) {
        // The server runs something else than the last recorded success: go back to that.
        return Ok(Some(last.generation.clone()));
    }
    Ok(last.previous.clone())
}

/// What one server runs, from the server itself and from the store.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ServerStatus {
    /// Server name.
    pub server: String,
    /// Live state (`None` with `error` when unreachable).
    pub current: Option<String>,
    /// The committed generation on the server.
    pub committed: Option<String>,
    /// A remote lock: holder and expiry.
    pub lock: Option<(String, u64)>,
    /// Generations on the server, newest first.
    pub generations: Vec<String>,
    /// The last deployment recorded here.
    pub last: Option<DeploymentRecord>,
    /// Why the server could not be read.
    pub error: Option<String>,
}

/// Read `server`'s state (one round trip) and its last recorded deployment.
pub async fn status(transport: &dyn Transport, server: &Server, store: &dyn StateStore) -> ServerStatus {
    let last = store.deployments(Some(server.name.as_str()), 1).await.ok().and_then(|v| v.into_iter().next());
    status_with_last(transport, server, last).await
}

/// [`status`] with the last recorded deployment already read (a fleet's in one query:
/// [`StateStore::last_deployments`]).
pub async fn status_with_last(
    transport: &dyn Transport,
    server: &Server,
    last: Option<DeploymentRecord>,
) -> ServerStatus {
    let name = server.name.to_string();
    let cmds = RemoteCommands::for_server(server);
    let live = match cmds.inspect(false) {
        Ok(req) => transport.exec(req).await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match live {
        Ok(out) if out.success() => {
            let s = RemoteState::parse(&out.stdout);
            let error = cmds.conf_mismatch(&s);
            ServerStatus {
                server: name,
                current: s.current,
                committed: s.committed,
                lock: s.lock.map(|(h, exp, _)| (h, exp)),
                generations: s.generations,
                last,
                error,
            }
        }
        Ok(out) => ServerStatus::unreachable(name, last, String::from_utf8_lossy(&out.stderr).trim().to_owned()),
        Err(e) => ServerStatus::unreachable(name, last, e),
    }
}

impl ServerStatus {
    /// A server that could not be read (`error` says why), with its last recorded deployment.
    pub fn unreachable(server: String, last: Option<DeploymentRecord>, error: String) -> Self {
        Self { server, current: None, committed: None, lock: None, generations: vec![], last, error: Some(error) }
    }
}
