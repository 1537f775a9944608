//! The SSH target the test files start from: key-file auth, a pinned host key, short
//! timeouts; each test changes what it is about.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use rpcc_core::value::HostKeyPin;
use rpcc_ssh::{HostKeyPolicy, RetryPolicy, SshAuth, SshTarget, Timeouts};

/// `user@address` with the private key at `key`, host key pinned to `pin`.
pub fn key_target(name: &str, address: &str, user: &str, key: &Path, pin: &str) -> SshTarget {
    SshTarget {
        name: name.to_owned(),
        address: address.to_owned(),
        user: user.to_owned(),
        auth: SshAuth::KeyFile { path: key.to_path_buf(), passphrase: None },
        host_key: HostKeyPolicy::Pinned(HostKeyPin::parse(pin).expect("pin")),
        timeouts: Timeouts {
            connect: Duration::from_secs(3),
            auth: Duration::from_secs(3),
            keepalive: Duration::from_secs(5),
            idle: Duration::from_secs(60),
        },
        max_channels: 8,
        retry: RetryPolicy::default(),
        sudo: false,
        allow_rsa_sha1: false,
    }
}
