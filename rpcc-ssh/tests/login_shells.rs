//! Remote argv quoting under the login shells servers really have: dash (Debian's
//! `/bin/sh`), bash (RHEL's `/bin/sh`, and most users' shell) and zsh. sshd hands the
//! command line to the user's login shell, so a word that one shell leaves alone (a
//! brace `{a,b}`, history `!`, `^`, `=cmd`) may be expanded by another; every hostile
//! argument must arrive exactly, with and without `sudo -n`.

use std::time::Duration;

use rpcc_core::transport::{Argv, ExecRequest, Transport, TransportError};

use rpcc_ssh::{SshTarget, SshTransport};
use rpcc_testkit::{Fleet, SHELL_TEST_USERS, TestServer, TestUser};

mod common;
use common::key_target;

/// Words that some shell expands, splits, runs or eats when they are not quoted.
const HOSTILE: &[&str] = &[
    "{/,-delete}",
    "{a,b}",
    "{1..3}",
    "!!",
    "!$",
    "!-1",
    "^a^b",
    "~",
    "~root",
    "*",
    "?",
    "[a-z]*",
    "=ls",
    "a,b",
    "$(touch /tmp/rpcc-shell-pwned)",
    "`touch /tmp/rpcc-shell-pwned`",
    "$HOME",
    "${HOME}",
    "$'\\x41'",
    "'",
    "'\\''",
    "\"",
    "\\",
    "a b",
    "line\nbreak",
    "tab\there",
    "#not-a-comment",
    "; touch /tmp/rpcc-shell-pwned",
    "&& true",
    "|",
    "<(echo x)",
    ">/tmp/rpcc-shell-pwned",
    "%1",
    "-n",
    "",
];

fn target(fleet: &Fleet, server: &TestServer, user: &str, sudo: bool) -> SshTarget {
    let address = format!("127.0.0.1:{}", server.ssh_port());
    let mut t = key_target(server.name(), &address, user, fleet.client_key(), server.host_key_pin());
    t.sudo = sudo;
    t
}

fn request(program: &str, args: &[&str]) -> ExecRequest {
    ExecRequest::new(Argv::new(program, args.iter().copied()).expect("argv")).timeout(Duration::from_secs(10))
}

/// The three login users that scripts/setup-host creates, each with its shell.
fn shell_users() -> anyhow::Result<Vec<TestUser>> {
    let mut users = Vec::new();
    for name in std::iter::once(&"rpcc-test").chain(SHELL_TEST_USERS) {
        users.push(
            TestUser::lookup(name)?.ok_or_else(|| anyhow::anyhow!("user {name} missing: run scripts/setup-host"))?,
        );
    }
    let shells: Vec<&str> = users.iter().map(|u| u.shell.rsplit('/').next().unwrap_or("")).collect();
    assert_eq!(shells, ["sh", "bash", "zsh"], "login shells of {users:?}");
    Ok(users)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_arguments_arrive_exactly_under_dash_bash_and_zsh() -> anyhow::Result<()> {
    let users = shell_users()?;
    let _ = std::fs::remove_file("/tmp/rpcc-shell-pwned");
    let fleet = Fleet::start(1)?;
    let s = &fleet.servers()[0];
    for user in &users {
        let t = SshTransport::new(target(&fleet, s, &user.name, false))?;
        // printf repeats its format for every argument: one NUL-terminated record each.
        let mut args = vec!["%s\\0"];
        args.extend_from_slice(HOSTILE);
        let out = t.exec(request("printf", &args)).await?;
        assert!(out.success(), "{}: {}", user.shell, String::from_utf8_lossy(&out.stderr));
        let mut got: Vec<String> =
            out.stdout.split(|b| *b == 0).map(|p| String::from_utf8_lossy(p).into_owned()).collect();
        assert_eq!(got.pop().as_deref(), Some(""), "{}: output ends with a NUL", user.shell);
        assert_eq!(got, HOSTILE, "{} did not pass the argv through unchanged", user.shell);
    }
    assert!(!std::path::Path::new("/tmp/rpcc-shell-pwned").exists(), "a hostile word ran a command");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brace_words_stay_one_word_under_sudo() -> anyhow::Result<()> {
    let users = shell_users()?;
    let fleet = Fleet::start(1)?;
    let s = &fleet.servers()[0];
    for user in &users {
        let t = SshTransport::new(target(&fleet, s, &user.name, true))?;
        // setup-host lets the test users run exactly /usr/bin/id as root.
        let ok = t.exec(request("/usr/bin/id", &["-un"])).await?;
        assert_eq!(String::from_utf8_lossy(&ok.stdout).trim(), "root", "{}", String::from_utf8_lossy(&ok.stderr));
        // Expanded, `{-u,-n}` would be `-u -n` and print "root"; quoted, id looks up a
        // user of that name and fails.
        let braces = t.exec(request("/usr/bin/id", &["{-u,-n}"])).await?;
        assert!(!braces.success(), "{}: brace expansion under sudo", user.shell);
        assert!(String::from_utf8_lossy(&braces.stdout).trim().is_empty(), "{}", user.shell);
        assert!(
            String::from_utf8_lossy(&braces.stderr).contains("{-u,-n}"),
            "{}",
            String::from_utf8_lossy(&braces.stderr)
        );
    }
    Ok(())
}

#[test]
fn a_nul_byte_is_refused_before_anything_runs() {
    let err = Argv::new("printf", ["a\0b"]).unwrap_err();
    assert!(matches!(err, TransportError::InvalidCommand { .. }), "{err}");
    assert!(Argv::new("a\nb", Vec::<String>::new()).is_err());
}
