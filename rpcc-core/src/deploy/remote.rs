//! The fixed server-side helper and the commands the engine sends to it.
//!
//! Every remote step is one exec: `sh -c <REMOTE_SCRIPT> rpcc <configuration> <command>
//! <args>…`, or `sudo -n -- <installed helper> <command> <args>…` whose configuration is
//! a root-owned file ([`HelperConf`]). The script text never changes, arguments are
//! validated values passed as positional parameters (the transport shell-quotes them)
//! and never paths, and file contents travel as a tar stream on stdin. One exec is one
//! SSH round trip, whatever the number of sites.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::engine::DeployError;
use super::signing::ArchiveSigner;
use crate::generation::{Generation, GenerationPath, Sha256Digest};
use crate::model::{NginxMode, ReloadMethod, Server};
use crate::transport::{Argv, ExecRequest, TransportError, TreeFile, tar_archive};

/// The helper script (POSIX sh, coreutils, tar, flock).
pub const REMOTE_SCRIPT: &str = include_str!("remote.sh");

/// Where an installed helper reads its configuration when the inventory names no
/// `nginx.helper_conf`.
pub const DEFAULT_HELPER_CONF: &str = "/etc/rpcc/helper.conf";

/// The version of the helper's argument grammar, which `inspect` reports as `helper=`.
pub const HELPER_PROTOCOL: &str = "2";

/// The helper as a file to install on a server (`nginx.helper`): the same text with a
/// shell line and the path of its root-owned configuration (`conf`, a [`HelperConf`]
/// file), run as `<helper> <command> <args>…` (root-owned, mode 0755). `conf` must be
/// an absolute path of rpcc's path alphabet (a [`crate::value::RemotePath`]).
pub fn helper_file(conf: &str) -> String {
    format!(
        "#!/bin/sh\n# installed by rpcc {} (`rpcc helper`); replace it when rpcc is upgraded\nrpcc_conf={conf}\n{REMOTE_SCRIPT}",
        env!("CARGO_PKG_VERSION")
    )
}

/// Everything the helper needs that is a path or a name, from a server's nginx settings.
/// An installed helper reads it from a root-owned file ([`HelperConf::to_text`], written
/// by `rpcc bootstrap`) and nowhere else; a helper sent with each command gets it as its
/// first argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HelperConf {
    entries: Vec<(&'static str, String)>,
}

impl HelperConf {
    /// The configuration for `server` (`signing_key`: the path of the public key file, for
    /// a server that accepts only signed archives).
    pub fn for_server(server: &Server, signing_key: Option<&str>) -> Self {
        let n = &server.nginx;
        let (method, unit) = match &n.reload {
            ReloadMethod::Signal => ("signal", String::new()),
            ReloadMethod::Systemctl(u) => ("systemctl", u.to_string()),
            ReloadMethod::Service(u) => ("service", u.to_string()),
        };
        let mode = match n.mode {
            NginxMode::Owned => "owned",
            NginxMode::Include => "include",
        };
        Self {
            entries: vec![
                ("managed_root", n.managed_root.to_string()),
                ("mode", mode.to_owned()),
                ("nginx", n.binary.to_string()),
                ("nginx_root", n.root.to_string()),
                ("pid_file", n.pid.to_string()),
                ("error_log", format!("{}/error.log", n.log_dir)),
                ("reload", method.to_owned()),
                ("unit", unit),
                ("signing_key", signing_key.unwrap_or_default().to_owned()),
            ],
        }
    }

    /// The public key file next to the configuration file `conf` (`<conf without .conf>.pub`).
    pub fn signing_key_path(conf: &str) -> String {
        format!("{}.pub", conf.strip_suffix(".conf").unwrap_or(conf))
    }

    /// The file's text: `key=value` lines.
    pub fn to_text(&self) -> String {
        let mut out = String::from("# rpcc helper configuration (root-owned; written by rpcc bootstrap)\n");
        for (k, v) in &self.entries {
            out.push_str(&format!("{k}={v}\n"));
        }
        out
    }

    /// How the configuration a helper reported (`inspect`'s `conf=` line) differs from
    /// this one: `(key, reported, expected)` for every key that differs.
    pub fn differences(&self, reported: &BTreeMap<String, String>) -> Vec<(String, String, String)> {
        self.entries
            .iter()
            .filter(|(k, _)| *k != "signing_key")
            .filter_map(|(k, v)| {
                let have = reported.get(*k).cloned().unwrap_or_default();
                (have != *v).then(|| ((*k).to_owned(), have, v.clone()))
            })
            .collect()
    }
}

/// Exit codes of the helper (see the script's header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RemoteExit {
    /// 0.
    Ok,
    /// 10: another holder has a live lock.
    LockHeld,
    /// 11: our lock was broken by someone else.
    LockLost,
    /// 12: files do not match their manifest.
    Corrupt,
    /// 13: `nginx -t` refused the tree.
    Rejected,
    /// 14: the reload did not take effect.
    ReloadFailed,
    /// 15: nginx is not running.
    NotRunning,
    /// 16: the generation is not on the server.
    Missing,
    /// 17: include mode and the main config does not include rpcc's tree.
    NotIncluded,
    /// 19: the caller's deadline had passed when the helper got to a change: nothing
    /// changed.
    DeadlinePassed,
    /// 20: the tree loads code (`load_module`, perl, lua, njs) or includes files outside
    /// its generation: refused before any nginx parses it.
    Forbidden,
    /// 21: the server accepts only signed archives and this one's signature is missing
    /// or does not verify with its key.
    Unsigned,
    /// 22: an installed helper's configuration, or a path it names (managed root, nginx
    /// root or binary, signing key), is not root's alone.
    Untrusted,
    /// Anything else (file system errors, usage, a killed shell).
    Other(i32),
}

impl RemoteExit {
    /// Classify an exit code.
    pub fn from_code(code: i32) -> Self {
        match code {
            0 => Self::Ok,
            10 => Self::LockHeld,
            11 => Self::LockLost,
            12 => Self::Corrupt,
            13 => Self::Rejected,
            14 => Self::ReloadFailed,
            15 => Self::NotRunning,
            16 => Self::Missing,
            17 => Self::NotIncluded,
            19 => Self::DeadlinePassed,
            20 => Self::Forbidden,
            21 => Self::Unsigned,
            22 => Self::Untrusted,
            c => Self::Other(c),
        }
    }
}

/// What the server reports about its managed tree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RemoteState {
    /// The generation `current` points at.
    pub current: Option<String>,
    /// The last generation committed as good.
    pub committed: Option<String>,
    /// The remote lock: holder, expiry and acquisition (Unix seconds).
    pub lock: Option<(String, u64, u64)>,
    /// The server's clock (Unix seconds).
    pub now: u64,
    /// Generation directories, newest first.
    pub generations: Vec<String>,
    /// Per-file hashes of the current generation (when asked for).
    pub manifest: BTreeMap<String, Sha256Digest>,
    /// Half-staged trees the lock step removed.
    pub cleaned: Vec<String>,
    /// A stale lock the lock step broke: holder, expiry, acquisition.
    pub broke_stale: Option<(String, u64, u64)>,
    /// The live holder when the lock step failed.
    pub held_by: Option<(String, u64, u64)>,
    /// A generation whose activation was never verified (the helper stopped, or the
    /// reload failed, after the switch): what nginx serves is unknown.
    pub unverified: Option<String>,
    /// The helper's argument grammar (`helper=`; `None`: a helper older than rpcc 0.1's
    /// root-owned configuration).
    pub helper: Option<String>,
    /// The configuration the helper runs with (`conf=`), key by key.
    pub conf: BTreeMap<String, String>,
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

fn lock_triple(s: &str) -> Option<(String, u64, u64)> {
    let mut it = s.split_whitespace();
    let holder = it.next()?.to_owned();
    let exp = it.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    let acq = it.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    Some((holder, exp, acq))
}

impl RemoteState {
    /// Parse the helper's `key=value` report (and an optional `--manifest--` section in
    /// `sha256sum` format).
    pub fn parse(stdout: &[u8]) -> Self {
        let text = String::from_utf8_lossy(stdout);
        let mut state = Self::default();
        let mut in_manifest = false;
        for line in text.lines() {
            if in_manifest {
                if let Some((hash, path)) = line.split_once("  ")
                    && let Some(d) = Sha256Digest::from_hex(hash)
                {
                    state.manifest.insert(path.trim_start_matches("./").to_owned(), d);
                }
                continue;
            }
            if line == "--manifest--" {
                in_manifest = true;
                continue;
            }
            let Some((k, v)) = line.split_once('=') else { continue };
            match k {
                "current" => state.current = non_empty(v),
                "committed" => state.committed = non_empty(v),
                "lock" => state.lock = lock_triple(v),
                "now" => state.now = v.parse().unwrap_or(0),
                "generations" => state.generations = v.split_whitespace().map(str::to_owned).collect(),
                "cleaned" => state.cleaned.push(v.to_owned()),
                "broke-stale" => state.broke_stale = lock_triple(v),
                "held" => state.held_by = lock_triple(v),
                "unverified" => state.unverified = non_empty(v),
                "helper" => state.helper = non_empty(v),
                "conf" => {
                    state.conf = v
                        .split_whitespace()
                        .filter_map(|kv| kv.split_once('='))
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .collect();
                }
                _ => {}
            }
        }
        state
    }
}

/// How an activation is checked by the helper.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// The tree already passed `nginx -t` (or is a known-good generation).
    Tested,
    /// Single parse: the master's own parse is the validation; a refusal switches
    /// `current` back at once (exit 13). `verify`: check the tree's hashes first.
    SingleParse {
        /// Hash-check the tree before switching (not staged and checked by this run).
        verify: bool,
    },
}

/// Builds the helper invocations for one server.
#[derive(Clone, Debug)]
pub struct RemoteCommands {
    managed_root: String,
    root: String,
    conf: HelperConf,
    helper: Option<String>,
    signer: Option<std::sync::Arc<ArchiveSigner>>,
    timeout: Duration,
    clock: Option<ServerClock>,
}

/// The server's clock as one report read it: `now` (Unix seconds, truncated) and the
/// local instant that report arrived. The server read its clock before that instant, so
/// at any later local instant `t` the server's clock shows at least
/// `now + (t - received)`.
#[derive(Clone, Copy, Debug)]
pub struct ServerClock {
    /// The server's `now=` (Unix seconds).
    pub now: u64,
    /// When the report carrying it arrived here.
    pub received: Instant,
}

impl ServerClock {
    /// A deadline on the server's clock that passes before `timeout` from now has passed
    /// here (one second earlier, for the truncation of `now` and the helper's last step):
    /// a helper that checks it never starts a change after the caller gave up.
    pub fn deadline(&self, timeout: Duration) -> u64 {
        let ahead = self.received.elapsed() + timeout;
        (self.now + ahead.as_secs()).saturating_sub(1).max(1)
    }
}

impl RemoteCommands {
    /// Commands for `server`'s nginx settings.
    pub fn for_server(server: &Server) -> Self {
        let n = &server.nginx;
        Self {
            managed_root: n.managed_root.to_string(),
            root: n.root.to_string(),
            conf: HelperConf::for_server(server, None),
            helper: n.helper.as_ref().map(ToString::to_string),
            signer: None,
            timeout: secs(120),
            clock: None,
        }
    }

    /// Sign every staged archive with `signer` (a server whose helper configuration names
    /// a signing key refuses unsigned ones).
    pub fn with_signer(mut self, signer: Option<std::sync::Arc<ArchiveSigner>>) -> Self {
        self.signer = signer;
        self
    }

    /// The configuration the helper is expected to run with.
    pub fn conf(&self) -> &HelperConf {
        &self.conf
    }

    /// Whether commands go to an installed helper (through `sudo -n`).
    pub fn installed_helper(&self) -> Option<&str> {
        self.helper.as_deref()
    }

    /// Why an installed helper that reported `state` cannot deploy this server: too old
    /// for this rpcc, or configured (its root-owned file) for other paths than the
    /// inventory names. `None`: it matches (and always for a helper sent with each
    /// command, whose configuration is the inventory's).
    pub fn conf_mismatch(&self, state: &RemoteState) -> Option<String> {
        let helper = self.helper.as_deref()?;
        if state.helper.as_deref() != Some(HELPER_PROTOCOL) {
            return Some(format!(
                "the helper installed at {helper} is older than this rpcc (it takes paths from its arguments); install the new one and its configuration with `rpcc bootstrap`"
            ));
        }
        let diffs = self.conf.differences(&state.conf);
        (!diffs.is_empty()).then(|| {
            let what: Vec<String> = diffs
                .iter()
                .map(|(k, have, want)| format!("{k} is {have:?} on the server, {want:?} in the inventory"))
                .collect();
            format!(
                "the configuration of the helper at {helper} does not match the inventory ({}); run `rpcc bootstrap` to rewrite it",
                what.join("; ")
            )
        })
    }

    /// Give every changing command a deadline on the server's clock (read by an
    /// earlier report), so that the helper starts no change after this side has given
    /// up waiting for it. Without a clock (or a report of `now=0`), no deadline.
    pub fn with_server_clock(mut self, clock: Option<ServerClock>) -> Self {
        self.clock = clock.filter(|c| c.now > 0);
        self
    }

    /// The deadline word for a command that may run for `timeout` (`0`: none).
    fn deadline(&self, timeout: Duration) -> String {
        self.clock.map_or(0, |c| c.deadline(timeout)).to_string()
    }

    /// Bound every command by `timeout` (activation: the reload bound plus this).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// `<managed_root>`.
    pub fn managed_root(&self) -> &str {
        &self.managed_root
    }

    /// The main config nginx loads (`<root>/nginx.conf`).
    pub fn main_conf(&self) -> String {
        format!("{}/nginx.conf", self.root)
    }

    fn argv(&self, command: &str, args: &[&str]) -> Result<Argv, TransportError> {
        let rest = std::iter::once(command.to_owned()).chain(args.iter().map(|a| (*a).to_owned()));
        match &self.helper {
            // The installed helper through sudo: the sudoers entry names this file only,
            // and it reads every path from its root-owned configuration.
            Some(helper) => {
                Argv::new("sudo", ["-n".to_owned(), "--".to_owned(), helper.clone()].into_iter().chain(rest))
            }
            None => Argv::new(
                "sh",
                ["-c".to_owned(), REMOTE_SCRIPT.to_owned(), "rpcc".to_owned(), self.conf.to_text()]
                    .into_iter()
                    .chain(rest),
            ),
        }
    }

    /// Read-only report; with the current generation's per-file hashes if `manifest`.
    pub fn inspect(&self, manifest: bool) -> Result<ExecRequest, TransportError> {
        Ok(ExecRequest::new(self.argv("inspect", &[if manifest { "1" } else { "0" }])?).timeout(self.timeout))
    }

    /// Take (or renew) the remote lock; clean half-staged trees; report. `dead_holder`
    /// names a holder known to be dead whose lock may be broken before it expires.
    pub fn lock(&self, holder: &str, ttl: Duration, dead_holder: Option<&str>) -> Result<ExecRequest, TransportError> {
        let ttl = ttl.as_secs().max(1).to_string();
        let deadline = self.deadline(self.timeout);
        let mut args = vec![holder, ttl.as_str(), deadline.as_str()];
        args.extend(dead_holder);
        Ok(ExecRequest::new(self.argv("lock", &args)?).timeout(self.timeout))
    }

    /// Release the lock if we hold it.
    pub fn unlock(&self, holder: &str) -> Result<ExecRequest, TransportError> {
        Ok(ExecRequest::new(self.argv("unlock", &[holder])?).timeout(self.timeout))
    }

    /// Unpack `tar` into a staging directory, hard-link listed files from `previous`,
    /// verify every hash, rename into `generations/<id>`.
    pub fn stage(
        &self,
        holder: &str,
        ttl: Duration,
        id: &str,
        previous: Option<&str>,
        tar: Vec<u8>,
        timeout: Duration,
    ) -> Result<ExecRequest, TransportError> {
        let ttl = ttl.as_secs().max(1).to_string();
        let deadline = self.deadline(timeout);
        let signature = self.signer.as_ref().map_or_else(|| "-".to_owned(), |s| s.sign_stage(id, &tar));
        Ok(ExecRequest::new(self.argv("stage", &[holder, &ttl, &deadline, id, previous.unwrap_or("-"), &signature])?)
            .stdin(tar)
            .timeout(timeout))
    }

    /// A [`RemoteCommands::stage`] request that then runs `nginx -t` on the staged tree
    /// as [`RemoteCommands::validate`] does, in the same round trip: `valid=<id>` when
    /// nginx accepts it, exit 13 when it refuses it. A helper older than this stages
    /// only (no `valid=` line): validate separately then.
    pub fn then_validate(&self, stage: ExecRequest) -> Result<ExecRequest, TransportError> {
        let mut args = stage.argv.args().to_vec();
        args.push("test".to_owned());
        Ok(ExecRequest { argv: Argv::new(stage.argv.program(), args)?, ..stage })
    }

    /// Run `nginx -t` on a staged generation as nginx will load it; first verify its
    /// hashes when `verify` (a generation this run did not just stage and check).
    pub fn validate(&self, id: &str, verify: bool, timeout: Duration) -> Result<ExecRequest, TransportError> {
        let verify = if verify { "1" } else { "0" };
        Ok(ExecRequest::new(self.argv("validate", &[id, verify])?).timeout(timeout))
    }

    /// Flip `current` to `id`, reload nginx and wait until new workers run (or nginx
    /// logs an `[emerg]`; with [`Activation::SingleParse`] `current` then goes back).
    pub fn activate(
        &self,
        holder: &str,
        ttl: Duration,
        id: &str,
        reload_timeout: Duration,
        check: Activation,
    ) -> Result<ExecRequest, TransportError> {
        let ticks = (reload_timeout.as_millis() / 20).max(1).to_string(); // 20 ms polls
        let ttl = ttl.as_secs().max(1).to_string();
        let (parse, verify) = match check {
            Activation::Tested => ("test", "0"),
            Activation::SingleParse { verify } => ("master", if verify { "1" } else { "0" }),
        };
        let deadline = self.deadline(reload_timeout + self.timeout);
        let args = [holder, &ttl, &deadline, id, &ticks, parse, verify];
        Ok(ExecRequest::new(self.argv("activate", &args)?).timeout(reload_timeout + self.timeout))
    }

    /// Record `id` as good, prune to `keep` generations, release the lock.
    pub fn commit(&self, holder: &str, ttl: Duration, id: &str, keep: u32) -> Result<ExecRequest, TransportError> {
        let ttl = ttl.as_secs().max(1).to_string();
        let deadline = self.deadline(self.timeout);
        Ok(ExecRequest::new(self.argv("commit", &[holder, &ttl, &deadline, id, &keep.to_string()])?)
            .timeout(self.timeout))
    }

    /// Hash every file of the live generation.
    pub fn hashes(&self) -> Result<ExecRequest, TransportError> {
        let mut r = ExecRequest::new(self.argv("hashes", &[])?).timeout(self.timeout);
        r.output_limit = 64 << 20;
        Ok(r)
    }

    /// A tar of `paths` from generation `id`.
    pub fn fetch(&self, id: &str, paths: &[&GenerationPath]) -> Result<ExecRequest, TransportError> {
        let list: String = paths.iter().map(|p| format!("{p}\n")).collect();
        let mut r = ExecRequest::new(self.argv("fetch", &[id])?).stdin(list.into_bytes()).timeout(self.timeout);
        r.output_limit = 256 << 20;
        Ok(r)
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// The stage archive: changed files, `.rpcc/sha256` for every file, and `.rpcc/links`
/// naming unchanged files the server hard-links from the live generation. Returns
/// (archive, files sent, files linked).
pub(super) fn stage_archive(
    generation: &Generation,
    live: Option<&BTreeMap<String, Sha256Digest>>,
) -> Result<(Vec<u8>, usize, usize), DeployError> {
    let mut sums = String::new();
    let mut links = String::new();
    let mut modes: Vec<String> = Vec::new();
    let mut files: Vec<TreeFile<'_>> = Vec::new();
    let mut linked = 0;
    for (path, file) in generation.files() {
        let digest = Sha256Digest::of(&file.bytes);
        sums.push_str(&format!("{digest}  {path}\n"));
        modes.push(format!("{:o} {path}\n", file.mode & 0o7777));
        if live.and_then(|m| m.get(path.as_str())) == Some(&digest) {
            links.push_str(&format!("{path}\n"));
            linked += 1;
        } else {
            files.push(TreeFile { path: path.as_str(), bytes: &file.bytes, mode: file.mode });
        }
    }
    // Byte order, as `LC_ALL=C sort` on the server orders `find -printf '%m %P'`.
    modes.sort_unstable();
    let modes = modes.concat();
    let sent = files.len();
    files.push(TreeFile { path: ".rpcc/sha256", bytes: sums.as_bytes(), mode: 0o644 });
    files.push(TreeFile { path: ".rpcc/modes", bytes: modes.as_bytes(), mode: 0o644 });
    if linked > 0 {
        files.push(TreeFile { path: ".rpcc/links", bytes: links.as_bytes(), mode: 0o644 });
    }
    let tar = tar_archive(&files).map_err(|e| TransportError::Io { target: "local".into(), source: e })?;
    Ok((tar, sent, linked))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::generation::GenerationFile;

    #[test]
    fn parses_a_report_with_manifest() {
        let h = Sha256Digest::of(b"a").to_hex();
        let out = format!(
            "cleaned=.staging-ab\ncurrent=ab12\ncommitted=\nlock=me 200 100\nnow=150\ngenerations=ab12 0\n--manifest--\n{h}  nginx.conf\n{h}  ./sites/a.conf\n"
        );
        let s = RemoteState::parse(out.as_bytes());
        assert_eq!(s.current.as_deref(), Some("ab12"));
        assert_eq!(s.committed, None);
        assert_eq!(s.lock, Some(("me".into(), 200, 100)));
        assert_eq!(s.now, 150);
        assert_eq!(s.generations, ["ab12", "0"]);
        assert_eq!(s.cleaned, [".staging-ab"]);
        assert_eq!(s.manifest.len(), 2);
        assert!(s.manifest.contains_key("sites/a.conf"));
    }

    #[test]
    fn empty_lock_line_means_no_lock() {
        let s = RemoteState::parse(b"lock=\ncurrent=\n");
        assert_eq!(s.lock, None);
        assert_eq!(s.current, None);
    }

    fn generation(files: &[(&str, &str)]) -> Generation {
        Generation::new(
            "abc".into(),
            files
                .iter()
                .map(|(p, b)| {
                    (GenerationPath::parse(p).unwrap(), GenerationFile { bytes: Arc::from(b.as_bytes()), mode: 0o644 })
                })
                .collect(),
        )
    }

    #[test]
    fn stage_archive_links_only_files_with_the_same_hash() {
        let g = generation(&[("nginx.conf", "main"), ("sites/a.conf", "a"), ("sites/b.conf", "b2")]);
        let live: BTreeMap<String, Sha256Digest> =
            [("sites/a.conf".to_owned(), Sha256Digest::of(b"a")), ("sites/b.conf".to_owned(), Sha256Digest::of(b"b1"))]
                .into();
        let (tar, sent, linked) = stage_archive(&g, Some(&live)).unwrap();
        assert_eq!((sent, linked), (2, 1));
        let mut archive = tar::Archive::new(&tar[..]);
        let mut names = Vec::new();
        let mut links = String::new();
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            let p = e.path().unwrap().display().to_string();
            if p == ".rpcc/links" {
                std::io::Read::read_to_string(&mut e, &mut links).unwrap();
            }
            names.push(p);
        }
        assert_eq!(names, ["nginx.conf", "sites/b.conf", ".rpcc/sha256", ".rpcc/modes", ".rpcc/links"]);
        assert_eq!(links, "sites/a.conf\n");

        let (_, sent, linked) = stage_archive(&g, None).unwrap();
        assert_eq!((sent, linked), (3, 0));
    }
}
