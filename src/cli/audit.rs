//! `rpcc audit verify` (the keyed chain, every MAC, the checkpoint outside the
//! database) and `rpcc audit list` (read the log: by server, since a time, as JSON).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use rpcc_core::deploy::{AuditRecord, default_checkpoint, read_checkpoint, verify_chain_keyed};
use rpcc_core::keyring::{Keyring, KeyringError};

use super::EXIT_INVALID;
use super::deploy::{format_ms, open_store, print_json};
use super::fleet::{EXIT_FAILED, fail};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum AuditCommand {
    /// Check the audit log: every link, every MAC (with the keyring), and the newest
    /// entries against the checkpoint kept outside the database (`RPCC_AUDIT_CHECKPOINT`,
    /// else beside the key file: the one `apply` and `watch` write); exit 3 if anything
    /// was edited, forged, removed or cannot be checked, or if there is no checkpoint
    /// (unless `--no-checkpoint`).
    Verify(VerifyArgs),
    /// Print audit entries, oldest first.
    List(ListArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct VerifyArgs {
    /// The inventory file (locates the default state database).
    inventory: PathBuf,
    /// The state database.
    #[arg(long, env = "RPCC_STATE")]
    state: Option<PathBuf>,
    /// The keyring file (mode 0600). Default: `RPCC_KEY_FILE`; or the keys in `RPCC_KEYS`.
    #[arg(long, value_name = "PATH")]
    key_file: Option<PathBuf>,
    /// The checkpoint file (default: `RPCC_AUDIT_CHECKPOINT`, else `<key file>.audit-head`).
    #[arg(long, value_name = "PATH")]
    checkpoint: Option<PathBuf>,
    /// Verify the chain without a checkpoint. Without one, deleting the newest entries
    /// (truncating the log's tail) leaves a valid chain and goes unnoticed, so by default
    /// a missing checkpoint fails the verification.
    #[arg(long)]
    no_checkpoint: bool,
    /// Fail on plain-hash (unkeyed) entries too: for a log keyed from its first entry,
    /// so that a log rewritten entirely without the key cannot pass.
    #[arg(long)]
    require_keyed: bool,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ListArgs {
    /// The inventory file (locates the default state database).
    inventory: PathBuf,
    /// The state database.
    #[arg(long, env = "RPCC_STATE")]
    state: Option<PathBuf>,
    /// Only entries about this server.
    #[arg(long)]
    server: Option<String>,
    /// Only entries at or after this time: `2026-12-01`, `2026-12-01T08:30[:00][Z]` (UTC),
    /// or an age such as `90m`, `24h`, `7d`.
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Machine-readable output (one JSON array).
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(cmd: &AuditCommand) -> ExitCode {
    match cmd {
        AuditCommand::Verify(args) => verify(args),
        AuditCommand::List(args) => list(args),
    }
}

/// The whole audit log of the state database for `inventory`.
fn read_log(state: Option<&Path>, inventory: &Path, err: &mut impl Write) -> Result<Vec<AuditRecord>, ExitCode> {
    let (rt, store) = open_store(state, inventory, err)?;
    rt.block_on(store.audit_log()).map_err(|e| fail(err, e, EXIT_FAILED))
}

fn verify(args: &VerifyArgs) -> ExitCode {
    let mut err = std::io::stderr();
    let keyring = match Keyring::load(args.key_file.as_deref()) {
        Ok(k) => Some(k),
        Err(KeyringError::NoKeys) => None,
        Err(e) => return fail(&mut err, e, EXIT_INVALID),
    };
    let checkpoint_path = args.checkpoint.clone().or_else(|| keyring.as_ref().and_then(default_checkpoint));
    let checkpoint = match checkpoint_path.as_deref().map(read_checkpoint).transpose() {
        Ok(c) => c.flatten(),
        Err(e) => return fail(&mut err, e, EXIT_FAILED),
    };
    let log = match read_log(args.state.as_deref(), &args.inventory, &mut err) {
        Ok(l) => l,
        Err(c) => return c,
    };
    let v = verify_chain_keyed(&log, keyring.as_ref(), checkpoint.as_ref());
    let missing_checkpoint = checkpoint.is_none() && !args.no_checkpoint;
    let unkeyed_refused = args.require_keyed && v.unkeyed > 0;
    let ok = v.is_verified() && !missing_checkpoint && !unkeyed_refused;
    if args.json {
        print_json(&serde_json::json!({
            "verified": ok,
            "verification": v,
            "checkpoint_file": checkpoint_path,
            "checkpoint_missing": missing_checkpoint,
            "unkeyed_refused": unkeyed_refused,
        }));
        return if ok { ExitCode::SUCCESS } else { ExitCode::from(EXIT_FAILED) };
    }
    let mut out = std::io::stdout().lock();
    if let Some((seq, why)) = &v.broken {
        let _ = writeln!(out, "audit log TAMPERED: entry {seq}: {why}");
        return ExitCode::from(EXIT_FAILED);
    }
    if v.unverifiable > 0 {
        let _ = writeln!(
            out,
            "audit log NOT VERIFIED: {} keyed entr{} could not be checked (their key is not in this keyring; \
             set RPCC_KEYS, --key-file or RPCC_KEY_FILE)",
            v.unverifiable,
            if v.unverifiable == 1 { "y" } else { "ies" }
        );
        return ExitCode::from(EXIT_FAILED);
    }
    if unkeyed_refused {
        let _ = writeln!(
            out,
            "audit log NOT VERIFIED: {} plain-hash entr{} (--require-keyed): written without the key, or rewritten",
            v.unkeyed,
            if v.unkeyed == 1 { "y" } else { "ies" }
        );
        return ExitCode::from(EXIT_FAILED);
    }
    if missing_checkpoint {
        let _ = writeln!(out, "{}", no_checkpoint_refusal(checkpoint_path.as_deref()));
        return ExitCode::from(EXIT_FAILED);
    }
    let _ = writeln!(
        out,
        "audit log intact: {} entries, {} keyed (MAC verified), {} unkeyed",
        v.entries, v.keyed, v.unkeyed
    );
    match v.checkpoint {
        Some(seq) => {
            let _ = writeln!(out, "checkpoint: entry {seq} matches the copy kept outside the database");
        }
        None => {
            let _ = writeln!(
                out,
                "note: verified without a checkpoint (--no-checkpoint): deleted newest entries would not show"
            );
        }
    }
    if v.unkeyed > 0 {
        let _ = writeln!(
            out,
            "note: unkeyed entries prove nothing against someone who can write the database; with a keyring \
             configured, new entries are keyed"
        );
    }
    ExitCode::SUCCESS
}

/// Why a verification without a checkpoint fails (`path`: where it was looked for).
fn no_checkpoint_refusal(path: Option<&Path>) -> String {
    let why = "without a checkpoint, deleting the newest entries (truncating the tail of the log) leaves a valid \
               chain and is undetectable";
    let fix = "pass --no-checkpoint to verify the chain alone";
    match path {
        Some(p) => format!("audit log NOT VERIFIED: the checkpoint {} is missing: {why}; {fix}", p.display()),
        None => format!(
            "audit log NOT VERIFIED: no checkpoint (no key file, no --checkpoint, RPCC_AUDIT_CHECKPOINT unset): \
             {why}; {fix}"
        ),
    }
}

/// Unix milliseconds from `--since`.
fn parse_since(text: &str, now_ms: i64) -> Result<i64, String> {
    let age = |n: &str, unit_ms: i64| n.parse::<i64>().ok().filter(|n| *n >= 0).map(|n| now_ms - n * unit_ms);
    let relative = match text.char_indices().last() {
        Some((i, 'm')) => age(&text[..i], 60_000),
        Some((i, 'h')) => age(&text[..i], 3_600_000),
        Some((i, 'd')) => age(&text[..i], 86_400_000),
        _ => None,
    };
    if let Some(ms) = relative {
        return Ok(ms);
    }
    let bad = || format!("--since {text:?}: expected 2026-12-01, 2026-12-01T08:30[:00][Z] or an age like 24h");
    let text = text.strip_suffix('Z').unwrap_or(text);
    let (date, time) = text.split_once(['T', ' ']).unwrap_or((text, "00:00:00"));
    let num = |s: Option<&str>| s.and_then(|s| s.parse::<i64>().ok());
    let mut d = date.split('-');
    let (y, mo, day) = (num(d.next()), num(d.next()), num(d.next()));
    let mut t = time.split(':');
    let (h, mi, s) = (num(t.next()), num(t.next()), num(t.next()).or(Some(0)));
    if d.next().is_some() || t.next().is_some() {
        return Err(bad());
    }
    match (y, mo, day, h, mi, s) {
        (Some(y), Some(mo), Some(day), Some(h), Some(mi), Some(s)) => {
            rpcc_core::time::unix_utc(y, mo, day, h, mi, s).map(|secs| secs * 1000).ok_or_else(bad)
        }
        _ => Err(bad()),
    }
}

fn list(args: &ListArgs) -> ExitCode {
    let mut err = std::io::stderr();
    let since = match args.since.as_deref().map(|s| parse_since(s, rpcc_core::deploy::unix_ms())).transpose() {
        Ok(s) => s,
        Err(e) => return fail(&mut err, e, EXIT_INVALID),
    };
    let log = match read_log(args.state.as_deref(), &args.inventory, &mut err) {
        Ok(l) => l,
        Err(c) => return c,
    };
    let rows: Vec<&AuditRecord> = log
        .iter()
        .filter(|r| args.server.as_deref().is_none_or(|s| r.event.server.as_deref() == Some(s)))
        .filter(|r| since.is_none_or(|t| r.event.at_ms >= t))
        .collect();
    if args.json {
        print_json(&rows);
        return ExitCode::SUCCESS;
    }
    let mut out = std::io::stdout().lock();
    for r in &rows {
        let e = &r.event;
        let _ = writeln!(
            out,
            "{:>6}  {}  {:<12} {:<12} {:<12} by {}{}",
            r.seq,
            format_ms(e.at_ms),
            e.action.as_str(),
            e.server.as_deref().unwrap_or("-"),
            e.outcome,
            e.actor,
            if r.is_keyed() { "" } else { "  (unkeyed)" }
        );
        if let Some(first) = e.detail.lines().next().filter(|l| !l.is_empty()) {
            let _ = writeln!(out, "        {first}");
        }
    }
    if rows.is_empty() {
        let _ = writeln!(out, "no audit entries match");
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::{no_checkpoint_refusal, parse_since};

    #[test]
    fn a_missing_checkpoint_is_refused_saying_why() {
        for text in [no_checkpoint_refusal(None), no_checkpoint_refusal(Some(std::path::Path::new("/k.audit-head")))] {
            assert!(text.starts_with("audit log NOT VERIFIED"), "{text}");
            assert!(text.contains("truncating the tail of the log") && text.contains("undetectable"), "{text}");
            assert!(text.contains("--no-checkpoint"), "{text}");
        }
        assert!(
            no_checkpoint_refusal(Some(std::path::Path::new("/k.audit-head"))).contains("/k.audit-head is missing")
        );
        assert!(no_checkpoint_refusal(None).contains("RPCC_AUDIT_CHECKPOINT"));
    }

    #[test]
    fn since_accepts_dates_times_and_ages() {
        let now = 1_795_435_200_000; // 2026-11-23 12:00:00 UTC
        assert_eq!(parse_since("2026-11-23", now), Ok(1_795_392_000_000));
        assert_eq!(parse_since("2026-11-23T12:00", now), Ok(now));
        assert_eq!(parse_since("2026-11-23 12:00:00Z", now), Ok(now));
        assert_eq!(parse_since("24h", now), Ok(now - 86_400_000));
        assert_eq!(parse_since("90m", now), Ok(now - 5_400_000));
        assert_eq!(parse_since("7d", now), Ok(now - 7 * 86_400_000));
        for bad in ["yesterday", "2026-13-01", "2026-11-23T25:00", "-5h", "2026-11-23T12:00:00:00", ""] {
            assert!(parse_since(bad, now).is_err(), "{bad}");
        }
    }
}
