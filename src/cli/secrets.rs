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
    /// The keyring file (mode 0600). Default: `RPCC_KEY_FILE`; or put the keys in `RPCC_KEYS`.
    #[arg(long, value_name = "PATH")]
    pub(crate) key_file: Option<PathBuf>,
}

impl SecretArgs {
    /// Load and validate the inventory, warning about each accepted plain-text secret.
    pub(crate) fn load(&self, file: &Path, err: &mut impl Write) -> Result<Inventory, ExitCode> {
        let options = LoadOptions::allow_plaintext(self.allow_plaintext);
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
        if inv.secrets().iter().any(|s| s.envelope().is_some()) {
            return self.keyring(err).map(Some);
        }
        match Keyring::load(self.key_file.as_deref()) {
            Ok(ring) => Ok(Some(ring)),
            Err(KeyringError::NoKeys) => Ok(None),
            Err(e) => {
                let _ = writeln!(err, "warning: keyring not loaded ({e}); audit entries stay unkeyed");
                Ok(None)
            }
        }
    }

    /// The configured keyring; its absence or a problem with it is an error.
    pub(crate) fn keyring(&self, err: &mut impl Write) -> Result<Keyring, ExitCode> {
        Keyring::load(self.key_file.as_deref()).map_err(|e| {
            let _ = writeln!(err, "error: {e}");
            ExitCode::from(EXIT_INVALID)
        })
    }
}
