//! `rpcc keys …`: generate keys, seal secrets, rotate, retire, import legacy Fernet tokens.
//! Secret values are read from stdin or files, never from argv, and never printed.

use std::io::{Read as _, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Subcommand;
use rpcc_core::deploy::{AuditAction, AuditEvent, AuditSeal, local_actor};
use rpcc_core::keyring::rotate::{RotatePoint, key_usage, rotate_inventory_file, rotate_store};
use rpcc_core::keyring::{KeyId, KeySource, Keyring, KeyringError, RecordId};
use rpcc_core::model::{Inventory, LoadOptions};
use rpcc_core::store::EngineStore;
use secrecy::SecretString;
use zeroize::Zeroizing;

mod fernet;

use fernet::{ImportFernetArgs, import_fernet};

use super::fleet::{fail, state_for, state_path};
use super::secrets::SecretArgs;
use super::{EXIT_INVALID, report_load_error, runtime};

/// The keyring commands.
#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Create a key: appended to the key file (created 0600) so it encrypts from now on,
    /// or printed as an entry for RPCC_KEYS when no key file is given.
    Generate(GenerateArgs),
    /// Show the keyring's key ids, which one encrypts, and what the state store holds.
    List(ListArgs),
    /// Seal a secret read from stdin for a record (e.g. `server/edge-1/password`); prints the envelope.
    Encrypt(EncryptArgs),
    /// Re-seal every secret in the inventories and the state store under the newest key
    /// (resumable, idempotent batches, verified before they commit).
    Rotate(RotateArgs),
    /// Retire a key once no secret uses it: its material is erased from the key file.
    Retire(RetireArgs),
    /// Import legacy Fernet tokens (a `record<TAB>token` file and/or a legacy SQLite
    /// column), re-sealed as envelopes; prints `record<TAB>envelope` lines.
    ImportFernet(ImportFernetArgs),
    /// Create the control plane's archive signing key (Ed25519; a new one rotates it):
    /// prints the `[deploy] signing_key` envelope for the inventory and the public key
    /// that `rpcc bootstrap` installs beside each server's helper configuration.
    SigningKey(SigningKeyArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct SigningKeyArgs {
    #[command(flatten)]
    keys: KeyFileArg,
}

/// Where the keys are.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct KeyFileArg {
    /// The keyring file (mode 0600). Default: `RPCC_KEY_FILE`; or put the keys in `RPCC_KEYS`.
    #[arg(long, value_name = "PATH")]
    key_file: Option<PathBuf>,
}

impl KeyFileArg {
    fn keyring(&self, err: &mut impl Write) -> Result<Keyring, ExitCode> {
        Keyring::load(self.key_file.as_deref()).map_err(|e| fail(err, e, EXIT_INVALID))
    }

    /// The key file named by the flag or `RPCC_KEY_FILE`.
    fn path(&self) -> Option<PathBuf> {
        self.key_file
            .clone()
            .or_else(|| std::env::var_os(Keyring::ENV_KEY_FILE).filter(|v| !v.is_empty()).map(PathBuf::from))
    }
}

#[derive(Debug, clap::Args)]
pub(crate) struct GenerateArgs {
    #[command(flatten)]
    keys: KeyFileArg,
    /// The new key's id (default `k<YYYYMMDD>-<4 hex>`).
    #[arg(long)]
    id: Option<String>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    keys: KeyFileArg,
    /// Also count the state's secrets per key (a SQLite file or a `postgres://` URL).
    #[arg(long, env = "RPCC_STATE")]
    state: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct EncryptArgs {
    /// The record the secret belongs to, e.g. `server/edge-1/password`; the envelope only
    /// opens for this record.
    #[arg(long = "for", value_name = "RECORD")]
    record: String,
    #[command(flatten)]
    keys: KeyFileArg,
    /// Also store the envelope in this state (a SQLite file or a `postgres://` URL).
    #[arg(long)]
    state: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct RotateArgs {
    /// Inventory files whose envelopes are re-sealed in place (formatting kept).
    inventories: Vec<PathBuf>,
    /// The state, a SQLite file or a `postgres://` URL (default: `RPCC_STATE`, else
    /// `.rpcc/state.db` beside the first inventory, when it exists).
    #[arg(long, env = "RPCC_STATE")]
    state: Option<PathBuf>,
    /// Secrets per store transaction.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    batch: u32,
    #[command(flatten)]
    keys: KeyFileArg,
    /// The environment (`[env.<name>]`) to rotate: its servers' secrets, its state and
    /// its keyring; the base's shared secrets and other environments' stay as they are.
    #[arg(long = "env", env = "RPCC_ENV", value_name = "NAME")]
    env: Option<String>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct RetireArgs {
    /// The key id to retire.
    id: String,
    /// Inventory files to check for secrets still sealed by the key.
    inventories: Vec<PathBuf>,
    /// The state to check (as for `rotate`).
    #[arg(long, env = "RPCC_STATE")]
    state: Option<PathBuf>,
    #[command(flatten)]
    keys: KeyFileArg,
    /// The environment (`[env.<name>]`) whose keyring holds the key: its state and its
    /// secrets (and the base's) are checked.
    #[arg(long = "env", env = "RPCC_ENV", value_name = "NAME")]
    env: Option<String>,
}

pub(crate) fn run(cmd: &KeysCommand) -> ExitCode {
    let mut err = std::io::stderr();
    let result = match cmd {
        KeysCommand::Generate(a) => generate(a, &mut err),
        KeysCommand::List(a) => list(a, &mut err),
        KeysCommand::Encrypt(a) => encrypt(a, &mut err),
        KeysCommand::Rotate(a) => rotate(a, &mut err),
        KeysCommand::Retire(a) => retire(a, &mut err),
        KeysCommand::ImportFernet(a) => import_fernet(a, &mut err),
        KeysCommand::SigningKey(a) => signing_key(a, &mut err),
    };
    result.unwrap_or_else(|code| code)
}

fn generate(args: &GenerateArgs, err: &mut impl Write) -> Result<ExitCode, ExitCode> {
    let id = args
        .id
        .as_deref()
        .map(KeyId::parse)
        .transpose()
        .map_err(|why| fail(err, format!("--id {why}"), EXIT_INVALID))?;
    let mut out = std::io::stdout().lock();
    match args.keys.path() {
        Some(path) => {
            let id = Keyring::add_to_file(&path, id).map_err(|e| fail(err, e, EXIT_INVALID))?;
            let _ = writeln!(
                out,
                "added key {id} to {}; it encrypts from now on. Run `rpcc keys rotate` to re-seal existing secrets.",
                path.display()
            );
        }
        None => {
            let (id, entry) = Keyring::generate_entry(id).map_err(|e| fail(err, e, EXIT_INVALID))?;
            let _ = writeln!(out, "{}", entry.as_str());
            let _ = writeln!(
                err,
                "key {id}: add this entry to RPCC_KEYS (comma-separated, newest last) or a 0600 key file; it is key material, keep it secret"
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Record a keyring action in the state's audit log (records and key ids only).
fn audit(
    rt: &tokio::runtime::Runtime,
    store: &dyn EngineStore,
    action: AuditAction,
    outcome: &str,
    detail: &str,
    err: &mut impl Write,
) {
    let event = AuditEvent::now(&local_actor(), action, None, outcome, detail);
    if let Err(e) = rt.block_on(store.append_audit(&event)) {
        let _ = writeln!(err, "warning: the audit log was not written: {e}");
    }
}

/// Whether a SQLite state file may be created by the command.
#[derive(Clone, Copy, PartialEq, Eq)]
enum NewState {
    /// Storing secrets: a new file is a new state.
    Create,
    /// Reading, rotating, retiring: a missing file is a mistyped path.
    Refuse,
}

/// Open the state store (a SQLite file or a `postgres://` URL); its audit entries are
/// keyed under `ring` (HMAC, checkpoint). Key commands serve every environment's state,
/// so no environment is claimed.
fn open_store(
    rt: &tokio::runtime::Runtime,
    state: &Path,
    new: NewState,
    ring: &Keyring,
    err: &mut impl Write,
) -> Result<Arc<dyn EngineStore>, ExitCode> {
    let location = state.to_string_lossy();
    if new == NewState::Refuse
        && let Some(file) = missing_sqlite_file(&location)
    {
        return Err(fail(err, format!("state database {file} does not exist"), EXIT_INVALID));
    }
    let seal = AuditSeal::for_keyring(ring).ok();
    rt.block_on(rpcc_store::open_url(&location, seal, rpcc_store::EnvironmentClaim::Any))
        .map_err(|e| fail(err, format!("state {}: {e}", rpcc_store::redacted_url(&location)), EXIT_INVALID))
}

/// The file a SQLite state location names (a path or `sqlite://…`), when that file does
/// not exist; `None` for an existing file and for a server URL (`postgres://…`).
fn missing_sqlite_file(location: &str) -> Option<&str> {
    let file = location.strip_prefix("sqlite://").unwrap_or(location);
    (!file.contains("://") && !Path::new(file).is_file()).then_some(file)
}

/// The state for messages (a URL's password left out).
fn shown(state: &Path) -> String {
    rpcc_store::redacted_url(&state.to_string_lossy())
}

fn list(args: &ListArgs, err: &mut impl Write) -> Result<ExitCode, ExitCode> {
    let ring = args.keys.keyring(err)?;
    let mut out = std::io::stdout().lock();
    let source = match ring.source() {
        KeySource::Env => "RPCC_KEYS".to_owned(),
        KeySource::File(p) => p.display().to_string(),
        _ => "memory".to_owned(),
    };
    let active = ring.active_id().cloned();
    let _ = writeln!(out, "keyring: {source}");
    for (id, retired) in ring.key_ids() {
        let role = if retired {
            "retired"
        } else if Some(id) == active.as_ref() {
            "active, encrypts"
        } else {
            "active, decrypts only"
        };
        let _ = writeln!(out, "  {id}  {role}");
    }
    if let Some(state) = &args.state {
        let rt = runtime(err)?;
        let store = open_store(&rt, state, NewState::Refuse, &ring, err)?;
        let counts = rt.block_on(store.secret_counts()).map_err(|e| fail(err, e, EXIT_INVALID))?;
        let _ = writeln!(out, "state {}:", shown(state));
        for (id, n) in counts {
            let _ = writeln!(out, "  {id}: {n} secret(s)");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Read the secret from stdin (at most 64 KiB; one trailing newline dropped).
fn read_secret_from_stdin(err: &mut impl Write) -> Result<SecretString, ExitCode> {
    let mut buf = Zeroizing::new(Vec::new());
    std::io::stdin()
        .lock()
        .take(64 * 1024 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| fail(err, format!("cannot read the secret from stdin: {e}"), EXIT_INVALID))?;
    if buf.len() > 64 * 1024 {
        return Err(fail(err, "the secret on stdin is over 64 KiB", EXIT_INVALID));
    }
    if buf.ends_with(b"\n") {
        buf.pop();
        if buf.ends_with(b"\r") {
            buf.pop();
        }
    }
    let text =
        std::str::from_utf8(&buf).map_err(|_| fail(err, "the secret on stdin is not UTF-8 text", EXIT_INVALID))?;
    if text.is_empty() {
        return Err(fail(
            err,
            "the secret on stdin is empty (pipe the value in: `printf %s \"$PW\" | rpcc keys encrypt --for …`)",
            EXIT_INVALID,
        ));
    }
    Ok(SecretString::from(text))
}

fn encrypt(args: &EncryptArgs, err: &mut impl Write) -> Result<ExitCode, ExitCode> {
    let record = RecordId::parse(&args.record).map_err(|e| fail(err, format!("--for: {e}"), EXIT_INVALID))?;
    let ring = args.keys.keyring(err)?;
    let secret = read_secret_from_stdin(err)?;
    let envelope = ring.seal(&record, &secret).map_err(|e| fail(err, e, EXIT_INVALID))?;
    if let Some(state) = &args.state {
        let rt = runtime(err)?;
        let store = open_store(&rt, state, NewState::Create, &ring, err)?;
        rt.block_on(store.put_secret(&record, &envelope)).map_err(|e| fail(err, e, EXIT_INVALID))?;
        let detail = format!("{record} sealed under {}", envelope.key_id());
        audit(&rt, &*store, AuditAction::SecretStore, "ok", &detail, err);
    }
    let _ = writeln!(std::io::stdout().lock(), "{envelope}");
    Ok(ExitCode::SUCCESS)
}

/// A new archive signing key, sealed for `[deploy] signing_key`.
fn signing_key(args: &SigningKeyArgs, err: &mut impl Write) -> Result<ExitCode, ExitCode> {
    let ring = args.keys.keyring(err)?;
    let record = RecordId::parse(rpcc_core::model::DeploySettings::SIGNING_KEY_RECORD)
        .map_err(|e| fail(err, e, EXIT_INVALID))?;
    let (signer, seed) = rpcc_core::deploy::ArchiveSigner::generate();
    let envelope = ring.seal(&record, &seed).map_err(|e| fail(err, e, EXIT_INVALID))?;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "[deploy]\nsigning_key = \"{envelope}\"");
    let _ = write!(
        err,
        "public key (rpcc bootstrap installs it beside each helper's configuration):\n{}",
        signer.public_key_pem()
    );
    Ok(ExitCode::SUCCESS)
}

/// The state a rotate/retire run covers: explicit (a file that must exist, or a
/// `postgres://` URL), or the default beside the first inventory when that file exists.
fn store_path(state: Option<&Path>, inventories: &[PathBuf]) -> Option<PathBuf> {
    match (state, inventories.first()) {
        (Some(p), _) => Some(p.to_path_buf()),
        (None, Some(inv)) => Some(state_path(None, inv)).filter(|p| p.is_file()),
        (None, None) => None,
    }
}

/// The keyring and the state a rotate/retire run covers. Without an environment:
/// `--key-file` (or the environment variables) and [`store_path`]. With one: that
/// environment's keyring and state, as for every fleet command (a contradicting
/// `--key-file`, `RPCC_KEY_FILE`, `RPCC_KEYS` or `--state` is refused), the same in
/// every inventory given; a SQLite state that does not exist yet has nothing to rotate.
fn keyring_and_state(
    keys: &KeyFileArg,
    env: Option<&str>,
    state: Option<&Path>,
    inventories: &[PathBuf],
    err: &mut impl Write,
) -> Result<(Keyring, Option<PathBuf>), ExitCode> {
    let Some(env) = env else { return Ok((keys.keyring(err)?, store_path(state, inventories))) };
    if inventories.is_empty() {
        return Err(fail(err, format!("--env {env} needs the inventory that defines it"), EXIT_INVALID));
    }
    let secrets = SecretArgs { allow_plaintext: true, key_file: keys.key_file.clone(), env: Some(env.to_owned()) };
    let options = LoadOptions::allow_plaintext(true).with_environment(Some(env));
    let mut chosen: Option<(Option<PathBuf>, String)> = None;
    for path in inventories {
        let inv = Inventory::from_toml_file_with(path, &options).map_err(|e| report_load_error(path, &e, err))?;
        let key_file = secrets.key_file_for(&inv).map_err(|why| fail(err, why, EXIT_INVALID))?;
        let own_state = state_for(state, path, &inv).map_err(|why| fail(err, why, EXIT_INVALID))?;
        match &chosen {
            None => chosen = Some((key_file, own_state)),
            Some(first) if *first != (key_file, own_state) => {
                return Err(fail(
                    err,
                    format!(
                        "{}: environment {env} names another keyring or state than the first inventory",
                        path.display()
                    ),
                    EXIT_INVALID,
                ));
            }
            Some(_) => {}
        }
    }
    let (key_file, own_state) = chosen.unwrap_or_default();
    let ring = Keyring::load(key_file.as_deref()).map_err(|e| fail(err, e, EXIT_INVALID))?;
    let state = missing_sqlite_file(&own_state).is_none().then(|| PathBuf::from(&own_state));
    Ok((ring, state))
}

/// `RPCC_FAULT_INJECT=rotate-abort:<point>:<n>` aborts the process (like `kill -9`) at
/// that point of batch (or file) `n`; points: `loaded`, `mid`, `before-commit`,
/// `after-commit`, `before-rename`. Crash tests only (feature `testing-hooks`).
fn rotate_fault() -> Option<(String, usize)> {
    let spec = super::hooks::fault_inject()?;
    let rest = spec.strip_prefix("rotate-abort:")?;
    let (point, n) = rest.split_once(':')?;
    Some((point.to_owned(), n.parse().ok()?))
}

fn rotate(args: &RotateArgs, err: &mut impl Write) -> Result<ExitCode, ExitCode> {
    let (ring, store) =
        keyring_and_state(&args.keys, args.env.as_deref(), args.state.as_deref(), &args.inventories, err)?;
    let Some(active) = ring.active_id().cloned() else {
        return Err(fail(err, KeyringError::NoActiveKey, EXIT_INVALID));
    };
    if args.inventories.is_empty() && store.is_none() {
        return Err(fail(err, "nothing to rotate: give inventory files and/or --state", EXIT_INVALID));
    }
    let fault = rotate_fault();
    let renames = std::sync::atomic::AtomicUsize::new(0);
    let hook = |p: RotatePoint| {
        if let Some((point, n)) = &fault {
            let hit = match p {
                RotatePoint::BatchLoaded { batch } => point == "loaded" && batch == *n,
                RotatePoint::MidBatch { batch } => point == "mid" && batch == *n,
                RotatePoint::BeforeCommit { batch } => point == "before-commit" && batch == *n,
                RotatePoint::AfterCommit { batch } => point == "after-commit" && batch == *n,
                RotatePoint::BeforeRename => {
                    point == "before-rename" && renames.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == *n
                }
                _ => false,
            };
            if hit {
                std::process::abort();
            }
        }
        true
    };
    let mut out = std::io::stdout().lock();
    let mut failed = 0usize;
    for path in &args.inventories {
        match rotate_inventory_file(&ring, path, args.env.as_deref(), Some(&hook)) {
            Ok(r) => {
                let mut left = String::new();
                if r.plaintext > 0 {
                    left.push_str(&format!(", {} plain-text left as is", r.plaintext));
                }
                if r.shared > 0 {
                    left.push_str(&format!(
                        ", {} shared by every environment left as is (the base's servers)",
                        r.shared
                    ));
                }
                let _ = writeln!(out, "{}: {} secret(s) re-sealed under {active}{left}", path.display(), r.rotated);
            }
            Err(e) => {
                failed += 1;
                let _ = writeln!(err, "error: {e}; {} was not changed", path.display());
            }
        }
    }
    if let Some(state) = store {
        let rt = runtime(err)?;
        let store = open_store(&rt, &state, NewState::Refuse, &ring, err)?;
        let batch = usize::try_from(args.batch).unwrap_or(500);
        let result = rt.block_on(rotate_store(&ring, &*store, batch, Some(&hook)));
        let (outcome, detail) = match &result {
            Ok(r) => (
                if r.failed.is_empty() { "ok" } else { "partial" },
                format!(
                    "{} re-sealed under {active} in {} batch(es), {} not openable",
                    r.rotated,
                    r.batches,
                    r.failed.len()
                ),
            ),
            Err(e) => ("failed", e.to_string()),
        };
        // The audit chain too: verified under the old keys, then re-keyed under the new
        // one, so the old key can be retired without leaving entries nobody can check.
        match rt.block_on(store.rekey_audit(&ring)) {
            Ok(0) => {}
            Ok(n) => {
                let _ = writeln!(out, "state {}: {n} audit entr(ies) re-keyed under {active}", shown(&state));
            }
            Err(e) => {
                failed += 1;
                let _ = writeln!(err, "error: state {}: {e}", shown(&state));
            }
        }
        audit(&rt, &*store, AuditAction::KeyRotate, outcome, &detail, err);
        match result {
            Ok(r) => {
                let _ = writeln!(
                    out,
                    "state {}: {} secret(s) re-sealed under {active} in {} batch(es){}",
                    shown(&state),
                    r.rotated,
                    r.batches,
                    if r.conflicts > 0 {
                        format!(", {} changed meanwhile (run again)", r.conflicts)
                    } else {
                        String::new()
                    }
                );
                for (record, why) in &r.failed {
                    failed += 1;
                    let _ = writeln!(err, "error: state: {record}: {why}");
                }
            }
            Err(e) => {
                failed += 1;
                let _ =
                    writeln!(err, "error: state {}: {e}; committed batches stay, run again to finish", shown(&state));
            }
        }
    }
    if failed > 0 {
        let _ = writeln!(err, "{failed} problem(s); every secret is still sealed by a listed key");
        return Err(ExitCode::from(EXIT_INVALID));
    }
    Ok(ExitCode::SUCCESS)
}

fn retire(args: &RetireArgs, err: &mut impl Write) -> Result<ExitCode, ExitCode> {
    let id = KeyId::parse(&args.id).map_err(|why| fail(err, format!("key id {:?} {why}", args.id), EXIT_INVALID))?;
    let (ring, state) =
        keyring_and_state(&args.keys, args.env.as_deref(), args.state.as_deref(), &args.inventories, err)?;
    if !ring.key_ids().any(|(k, _)| k == &id) {
        return Err(fail(err, format!("key {id} is not in the keyring"), EXIT_INVALID));
    }
    if ring.active_id() == Some(&id) {
        return Err(fail(
            err,
            format!("key {id} is the key that encrypts; add a new key (`rpcc keys generate`) and rotate first"),
            EXIT_INVALID,
        ));
    }
    if args.inventories.is_empty() && state.is_none() {
        return Err(fail(
            err,
            "retire needs the inventories and/or --state to check that nothing still uses the key",
            EXIT_INVALID,
        ));
    }
    let rt = runtime(err)?;
    let store = state.as_deref().map(|p| open_store(&rt, p, NewState::Refuse, &ring, err)).transpose()?;
    let usage = rt
        .block_on(key_usage(
            &id,
            &args.inventories,
            args.env.as_deref(),
            store.as_deref().map(|s| s as &dyn rpcc_core::keyring::SecretStore),
            50,
        ))
        .map_err(|e| fail(err, e, EXIT_INVALID))?;
    if let Some(store) = &store {
        let log = rt.block_on(store.audit_log()).map_err(|e| fail(err, e, EXIT_INVALID))?;
        let keyed = rpcc_core::deploy::keyed_under(&log, id.as_str());
        if keyed > 0 {
            let _ = writeln!(
                err,
                "error: key {id} still keys {keyed} audit entr(ies); run `rpcc keys rotate --state` first (it re-keys the audit log)"
            );
            return Err(ExitCode::from(EXIT_INVALID));
        }
    }
    if !usage.is_empty() {
        let _ = writeln!(err, "error: key {id} still seals {} secret(s); run `rpcc keys rotate` first:", usage.len());
        for place in &usage {
            let _ = writeln!(err, "  {place}");
        }
        return Err(ExitCode::from(EXIT_INVALID));
    }
    let mut out = std::io::stdout().lock();
    match ring.source() {
        KeySource::File(path) => {
            Keyring::retire_in_file(path, &id).map_err(|e| fail(err, e, EXIT_INVALID))?;
            if let Some(store) = &store {
                audit(&rt, &**store, AuditAction::KeyRetire, "ok", &format!("{id} retired in {}", path.display()), err);
            }
            let _ = writeln!(out, "key {id} retired in {}: its material is erased", path.display());
        }
        _ => {
            let _ =
                writeln!(out, "no checked secret uses key {id}; replace its entry in RPCC_KEYS with `{id}:retired`");
        }
    }
    Ok(ExitCode::SUCCESS)
}
