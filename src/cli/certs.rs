//! `rpcc certs status | renew`.

use std::io::Write;
use std::process::ExitCode;

use rpcc::certs::{CertificateAction, CertificateOptions, CertificateOutcome};
use rpcc::engine::ApplyOptions;

use super::EXIT_INVALID;
use super::deploy::{confirm, format_ms, print_json, print_report};
use super::fleet::{EXIT_FAILED, FleetArgs, Session, fail};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum CertsCommand {
    /// Per ACME or self-signed site: issuer, expiry, days left, and whether each server
    /// serves the stored certificate (fingerprints over HTTPS with the site's SNI).
    Status(StatusArgs),
    /// Renew what expires within --days (ACME over HTTP-01 on every serving server;
    /// self-signed regenerated) and deploy it to the servers that serve those sites
    /// through the verified path; nothing is deployed when nothing is due.
    Renew(RenewArgs),
    /// Revoke a site's certificate at the CA, then obtain and deploy a new one at once.
    Revoke(RevokeArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct RevokeArgs {
    #[command(flatten)]
    fleet: FleetArgs,
    /// The site (its domain).
    #[arg(long)]
    site: String,
    /// Tell the CA the private key leaked (revocation reason keyCompromise).
    #[arg(long)]
    key_compromise: bool,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    yes: bool,
}

#[derive(Debug, clap::Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    fleet: FleetArgs,
    /// Renewal window used to mark certificates as due (default: `acme.renew_days`).
    #[arg(long)]
    days: Option<u32>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct RenewArgs {
    #[command(flatten)]
    fleet: FleetArgs,
    /// Skip the HTTP health probe of each site after the reload.
    #[arg(long)]
    no_probe: bool,
    /// Do not ask for confirmation before deploying.
    #[arg(long, short = 'y')]
    yes: bool,
    /// Renew what expires within this many days (default: `acme.renew_days`, 30).
    #[arg(long)]
    days: Option<u32>,
    /// Renew every ACME and self-signed certificate of the selection now.
    #[arg(long)]
    force: bool,
}

pub(crate) fn run(cmd: &CertsCommand) -> ExitCode {
    match cmd {
        CertsCommand::Status(args) => status(args),
        CertsCommand::Renew(args) => renew(args),
        CertsCommand::Revoke(args) => revoke(args),
    }
}

fn status(args: &StatusArgs) -> ExitCode {
    let mut err = std::io::stderr();
    let fleet = match Session::load(&args.fleet, &mut err) {
        Ok(f) => f,
        Err(c) => return c,
    };
    let rows = match fleet.runtime.block_on(fleet.engine.certificate_status(&args.fleet.selection(), args.days)) {
        Ok(r) => r,
        Err(e) => return fail(&mut err, e, EXIT_INVALID),
    };
    if args.fleet.json {
        print_json(&rows);
    } else {
        let mut out = std::io::stdout().lock();
        let _ =
            writeln!(out, "{:<32} {:<12} {:<25} {:>5}  {:<10} ISSUER", "SITE", "MODE", "NOT AFTER", "DAYS", "SERVED");
        for r in &rows {
            let (not_after, days, issuer) = match &r.stored {
                Some(c) => (format_ms(c.not_after * 1000), r.days_left.unwrap_or(0).to_string(), c.issuer.as_str()),
                None => ("-".to_owned(), "-".to_owned(), "(none stored)"),
            };
            let served = if r.in_service() {
                "yes".to_owned()
            } else {
                format!(
                    "{}/{}",
                    r.served
                        .iter()
                        .filter(|s| s.fingerprint.is_some()
                            && s.fingerprint == r.stored.as_ref().map(|c| c.fingerprint.to_hex()))
                        .count(),
                    r.served.len()
                )
            };
            let _ = writeln!(out, "{:<32} {:<12} {:<25} {days:>5}  {served:<10} {issuer}", r.site, r.mode, not_after);
            if let Some(due) = &r.due {
                let _ = writeln!(out, "  due: {due}");
            }
            for s in r.served.iter().filter(|s| s.fingerprint != r.stored.as_ref().map(|c| c.fingerprint.to_hex())) {
                let what = match (&s.fingerprint, &s.error) {
                    (Some(f), _) => format!("serves another certificate (sha256 {})", &f[..16.min(f.len())]),
                    (None, Some(e)) => e.clone(),
                    (None, None) => "unknown".into(),
                };
                let _ = writeln!(out, "  {}: {what}", s.server);
            }
        }
    }
    if rows.iter().any(|r| r.due.is_some() || !r.in_service()) {
        ExitCode::from(EXIT_FAILED)
    } else {
        ExitCode::SUCCESS
    }
}

fn revoke(args: &RevokeArgs) -> ExitCode {
    let mut err = std::io::stderr();
    let fleet = match Session::load(&args.fleet, &mut err) {
        Ok(f) => f,
        Err(c) => return c,
    };
    if !args.yes && !confirm(&mut err, &format!("revoke the certificate of {} and deploy a new one", args.site)) {
        return ExitCode::from(EXIT_INVALID);
    }
    let report = match fleet.runtime.block_on(fleet.engine.revoke_certificate(
        &args.site,
        args.key_compromise,
        ApplyOptions::default(),
    )) {
        Ok(r) => r,
        Err(e) => return fail(&mut err, e, EXIT_FAILED),
    };
    print_renewal(&report, args.fleet.json)
}

fn print_renewal(report: &rpcc::certs::RenewalReport, json: bool) -> ExitCode {
    if json {
        print_json(report);
    } else {
        let mut out = std::io::stdout().lock();
        if report.certificates.is_empty() {
            let _ = writeln!(out, "nothing is due");
        }
        print_outcomes(&mut out, &report.certificates);
        for r in report.unreachable.iter().chain(report.deploy.iter().flat_map(|d| &d.servers)) {
            print_report(&mut out, r);
        }
    }
    if report.failed() { ExitCode::from(EXIT_FAILED) } else { ExitCode::SUCCESS }
}

fn renew(args: &RenewArgs) -> ExitCode {
    let mut err = std::io::stderr();
    let fleet = match Session::load(&args.fleet, &mut err) {
        Ok(f) => f,
        Err(c) => return c,
    };
    if !args.yes && !confirm(&mut err, "renew due certificates and deploy them") {
        return ExitCode::from(EXIT_INVALID);
    }
    let options = ApplyOptions {
        skip_probe: args.no_probe,
        certificates: CertificateOptions { renew_days: args.days, force: args.force, ..Default::default() },
        ..ApplyOptions::default()
    };
    match fleet.runtime.block_on(fleet.engine.renew_due(&args.fleet.selection(), options)) {
        Ok(r) => print_renewal(&r, args.fleet.json),
        Err(e) => fail(&mut err, e, EXIT_INVALID),
    }
}

/// Print what an apply did about certificates (nothing when it did nothing).
pub(crate) fn print_outcomes(out: &mut impl Write, outcomes: &[CertificateOutcome]) {
    for o in outcomes {
        let action = match o.action {
            CertificateAction::Issued => "issued",
            CertificateAction::Renewed => "renewed",
            CertificateAction::Generated => "generated",
            CertificateAction::Failed => "FAILED",
            CertificateAction::Deferred => "deferred",
            _ => "?",
        };
        let until = o.not_after.map(|t| format!(", valid until {}", format_ms(t * 1000))).unwrap_or_default();
        let _ = writeln!(out, "certificate {:<32} {action} ({}){until}", o.site, o.detail);
    }
}
