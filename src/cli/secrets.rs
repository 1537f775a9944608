//! How every command that reads an inventory treats its secrets: envelopes only unless
//! `--allow-plaintext` (with a warning per field), and the keyring from `RPCC_KEYS`,
//! `--key-file` or `RPCC_KEY_FILE`, loaded only when a sealed secret needs it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use rpcc_core::LoadOptions;
use rpcc_core::keyring::{Keyring, KeyringError};
use rpcc_core::model::Inventory;

use super::{EXIT_INVALID, report_load_error};

/// Secret-handling options shared by the inventory commands.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct SecretArgs {
    /// Accept plain-text secrets in the inventory (each one is warned about). Without it
    /// a secret field must hold an `rpcc:v1` envelope from `rpcc keys encrypt`.
    #[arg(long)]
    pub(crate) allow_plaintext: bool,
    /// The keyring file (mode 0600). Default: the environment's `key_file`, else
    /// `RPCC_KEY_FILE`; or put the keys in `RPCC_KEYS`.
    #[arg(long, value_name = "PATH")]
    pub(crate) key_file: Option<PathBuf>,
    /// The environment (`[env.<name>]`) of an inventory that defines several: its
    /// servers, its state and its keyring, never another's.
    #[arg(long = "env", env = "RPCC_ENV", value_name = "NAME")]
    pub(crate) env: Option<String>,
}

impl SecretArgs {
    /// Load and validate the inventory, warning about each accepted plain-text secret.
    pub(crate) fn load(&self, file: &Path, err: &mut impl Write) -> Result<Inventory, ExitCode> {
        let options = LoadOptions::allow_plaintext(self.allow_plaintext).with_environment(self.env.as_deref());
        let inv = Inventory::from_toml_file_with(file, &options).map_err(|e| report_load_error(file, &e, err))?;
        for path in &inv.plaintext_secrets {
            let _ = writeln!(
                err,
                "warning: {}: {path} is a plain-text secret (accepted by --allow-plaintext); seal it with `rpcc keys encrypt`",
                file.display()
            );
        }
        Ok(inv)
    }

    /// The keyring: required when the inventory holds sealed secrets; otherwise the
    /// configured one if any (it also keys the audit log), `None` when none is set.
    pub(crate) fn keyring_for(&self, inv: &Inventory, err: &mut impl Write) -> Result<Option<Keyring>, ExitCode> {
        let key_file = self.key_file_for(inv).map_err(|why| {
            let _ = writeln!(err, "error: {why}");
            ExitCode::from(EXIT_INVALID)
        })?;
        if inv.secrets().iter().any(|s| s.envelope().is_some()) {
            return Keyring::load(key_file.as_deref()).map(Some).map_err(|e| {
                let _ = writeln!(err, "error: {e}");
                ExitCode::from(EXIT_INVALID)
            });
        }
        match Keyring::load(key_file.as_deref()) {
            Ok(ring) => Ok(Some(ring)),
            Err(KeyringError::NoKeys) => Ok(None),
            Err(e) => {
                let _ = writeln!(err, "warning: keyring not loaded ({e}); audit entries stay unkeyed");
                Ok(None)
            }
        }
    }

    /// The keyring file for `inv`: its environment's `key_file` (relative: against the
    /// inventory's directory) when it names one — and then no other keyring may be
    /// given (`--key-file`, `RPCC_KEY_FILE` or `RPCC_KEYS` elsewhere would mix keys) —
    /// else `--key-file` (or the environment variables, `None`).
    pub(crate) fn key_file_for(&self, inv: &Inventory) -> Result<Option<PathBuf>, String> {
        let Some(env) = &inv.environment else { return Ok(self.key_file.clone()) };
        let Some(own) = &env.key_file else { return Ok(self.key_file.clone()) };
        let own = inv.base_dir.as_deref().map_or_else(|| own.clone(), |base| base.join(own));
        let mixing = |what: &str| {
            format!(
                "environment {} uses the keyring {}; {what} would mix keys between environments",
                env.name,
                own.display()
            )
        };
        if let Some(given) = &self.key_file
            && *given != own
        {
            return Err(mixing(&format!("--key-file {}", given.display())));
        }
        if std::env::var_os(Keyring::ENV_KEYS).is_some() {
            return Err(mixing(&format!("{} (keys in the environment)", Keyring::ENV_KEYS)));
        }
        if let Some(file) = std::env::var_os("RPCC_KEY_FILE").map(PathBuf::from)
            && file != own
        {
            return Err(mixing(&format!("RPCC_KEY_FILE={}", file.display())));
        }
        Ok(Some(own))
    }
}
