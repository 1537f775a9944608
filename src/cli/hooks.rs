//! Test hooks read from the environment (fault injection, a fake Telegram API), compiled
//! only with the non-default feature `testing-hooks`. The workspace's tests turn it on
//! (the package's dev-dependency on itself), so `cargo nextest run --workspace` needs no
//! flag, while `cargo build` and `cargo install` give a binary that reads none of them
//! (nor names them: `scripts/test` checks the binary's strings).

/// The fault-injection spec (`abort-before:…`, `rotate-abort:…`); never in a build
/// without `testing-hooks`.
pub(crate) fn fault_inject() -> Option<String> {
    #[cfg(feature = "testing-hooks")]
    let value = std::env::var("RPCC_FAULT_INJECT").ok();
    #[cfg(not(feature = "testing-hooks"))]
    let value = None;
    value
}

/// Another Telegram Bot API base (a local fake); never in a build without
/// `testing-hooks`.
pub(crate) fn telegram_api() -> Option<String> {
    #[cfg(feature = "testing-hooks")]
    let value = std::env::var("RPCC_TELEGRAM_API").ok();
    #[cfg(not(feature = "testing-hooks"))]
    let value = None;
    value
}

#[cfg(test)]
mod tests {
    /// Test binaries are built with the package's dev-dependency on itself, so with the
    /// feature, and read the variables (the default build's side: the strings check in
    /// `scripts/test`).
    #[test]
    fn test_builds_read_the_hooks() {
        const { assert!(cfg!(feature = "testing-hooks"), "rpcc's dev-dependency on itself enables testing-hooks") };
        assert_eq!(super::fault_inject(), std::env::var("RPCC_FAULT_INJECT").ok());
        assert_eq!(super::telegram_api(), std::env::var("RPCC_TELEGRAM_API").ok());
    }
}
