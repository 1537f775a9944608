//! `rpcc bootstrap <inventory> <server>`: prepare a new server for rpcc over SSH as an
//! administrator (the pinned host key; the inventory's credential): the packages the
//! deploy needs, the deploy user with the control plane's key, the deploy helper as a
//! root-owned file, a sudoers entry for that file only (checked by `visudo -cf` before
//! it goes live), and an ACME webroot the deploy user may write. Every step checks
//! first and changes only what is missing; `--dry-run` prints what would change. The
//! first deploy then adopts the existing nginx config as generation 0.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use rpcc_core::deploy::remote::{RemoteCommands, helper_file};
use rpcc_core::model::{Server, ServerAuth};
use rpcc_core::transport::{Argv, ExecRequest, Output, Transport};
use sha2::{Digest as _, Sha256};

use super::fleet::{EXIT_FAILED, fail};
use super::secrets::SecretArgs;
use super::{EXIT_INVALID, runtime};

/// The helper's place when the inventory names none.
const DEFAULT_HELPER: &str = "/usr/local/lib/rpcc/rpcc-helper";

#[derive(Debug, clap::Args)]
pub(crate) struct BootstrapArgs {
    /// The inventory file (TOML).
    inventory: PathBuf,
    /// The server to prepare; its `user` is the deploy user to create.
    server: String,
    /// The administrator to log in as (root, or a user whose sudo allows the steps).
    #[arg(long, default_value = "root")]
    admin_user: String,
    /// The deploy user's login shell.
    #[arg(long, default_value = "/bin/sh")]
    shell: String,
    /// Also install Glances (for `rpcc watch` metrics).
    #[arg(long)]
    glances: bool,
    /// Check every step and print what would change; change nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    secrets: SecretArgs,
}

/// The administrator's session: privileged steps through `sudo -n --` unless root.
struct Admin {
    t: Arc<dyn Transport>,
    sudo: bool,
}

impl Admin {
    async fn run(&self, privileged: bool, argv: &[&str], stdin: Option<Vec<u8>>) -> Result<Output, String> {
        let mut words: Vec<&str> = Vec::new();
        if privileged && self.sudo {
            words.extend(["sudo", "-n", "--"]);
        }
        words.extend_from_slice(argv);
        let argv = Argv::new(words[0], words[1..].iter().copied()).map_err(|e| e.to_string())?;
        let mut req = ExecRequest::new(argv).timeout(std::time::Duration::from_secs(600));
        if let Some(bytes) = stdin {
            req = req.stdin(bytes);
        }
        self.t.exec(req).await.map_err(|e| e.to_string())
    }

    /// Run and require success (the command and its stderr on failure).
    async fn must(&self, privileged: bool, argv: &[&str], stdin: Option<Vec<u8>>) -> Result<String, String> {
        let out = self.run(privileged, argv, stdin).await?;
        if out.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!("{}: {}", argv.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
        }
    }

    /// Write `bytes` to `path` atomically with `mode` and root as owner: a temporary
    /// sibling filled through `tee`, checked by `check` (if any), then `install`ed.
    async fn put(&self, path: &str, bytes: &[u8], mode: &str, check: Option<&str>) -> Result<(), String> {
        let (dir, name) = path.rsplit_once('/').ok_or_else(|| format!("{path}: not an absolute path"))?;
        let tmp = format!("{dir}/.{name}.rpcc-new");
        self.must(true, &["tee", &tmp], Some(bytes.to_vec())).await?;
        if let Some(checker) = check
            && let Err(e) = self.must(true, &[checker, "-cf", &tmp], None).await
        {
            let _ = self.run(true, &["rm", "-f", &tmp], None).await;
            return Err(e);
        }
        let installed = self.must(true, &["install", "-o", "root", "-g", "root", "-m", mode, &tmp, path], None).await;
        let _ = self.run(true, &["rm", "-f", &tmp], None).await;
        installed.map(|_| ())
    }
}

/// One line of the report.
fn line(err: &mut impl Write, done: bool, dry_run: bool, what: &str) {
    let mark = match (done, dry_run) {
        (true, _) => "ok     ",
        (false, true) => "would  ",
        (false, false) => "done   ",
    };
    let _ = writeln!(err, "  {mark}{what}");
}

pub(crate) fn run(args: &BootstrapArgs) -> ExitCode {
    let mut err = std::io::stderr();
    let inv = match args.secrets.load(&args.inventory, &mut err) {
        Ok(i) => i,
        Err(code) => return code,
    };
    let Some(server) = inv.server(&args.server).cloned() else {
        return fail(&mut err, format!("server {:?} is not in the inventory", args.server), EXIT_INVALID);
    };
    for (what, value) in [("--admin-user", args.admin_user.as_str()), ("--shell", args.shell.as_str())] {
        if value.is_empty() || !value.chars().all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c)) {
            return fail(
                &mut err,
                format!("{what} {value:?}: letters, digits, '/', '.', '_' and '-' only"),
                EXIT_INVALID,
            );
        }
    }
    let keyring = match args.secrets.keyring_for(&inv, &mut err) {
        Ok(k) => k,
        Err(code) => return code,
    };
    let rt = match runtime(&mut err) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let base = inv.base_dir.clone().unwrap_or_else(|| PathBuf::from("."));
    let result = rt.block_on(async {
        let mut admin_server = server.clone();
        admin_server.user =
            rpcc_core::value::UnixUser::parse(&args.admin_user).map_err(|e| format!("--admin-user: {e}"))?;
        admin_server.sudo = false;
        let target =
            rpcc_ssh::SshTarget::from_server(&admin_server, &base, keyring.as_ref()).map_err(|e| e.to_string())?;
        let t: Arc<dyn Transport> = Arc::new(rpcc_ssh::SshTransport::new(target).map_err(|e| e.to_string())?);
        let admin = Admin { t, sudo: args.admin_user != "root" };
        steps(&admin, &server, &base, args, &mut err).await?;
        if args.dry_run {
            return Ok(());
        }
        // As the deploy user, through the helper: what every deploy will do.
        let deploy_target =
            rpcc_ssh::SshTarget::from_server(&server, &base, keyring.as_ref()).map_err(|e| e.to_string())?;
        let deploy = rpcc_ssh::SshTransport::new(deploy_target).map_err(|e| e.to_string())?;
        let out = deploy.exec(RemoteCommands::for_server(&server).inspect(false).map_err(|e| e.to_string())?).await;
        match out {
            Ok(o) if o.success() => {
                line(&mut err, true, false, &format!("{} runs the helper through sudo", server.user));
                Ok(())
            }
            Ok(o) => {
                Err(format!("the deploy user cannot run the helper: {}", String::from_utf8_lossy(&o.stderr).trim()))
            }
            Err(e) => Err(format!("the deploy user cannot log in: {e}")),
        }
    });
    match result {
        Ok(()) => {
            let _ = writeln!(
                err,
                "{}: {}",
                server.name,
                if args.dry_run { "dry run, nothing changed" } else { "ready for rpcc apply" }
            );
            ExitCode::SUCCESS
        }
        Err(why) => fail(&mut err, format!("{}: {why}", server.name), EXIT_FAILED),
    }
}

async fn steps(
    admin: &Admin,
    server: &Server,
    base: &Path,
    args: &BootstrapArgs,
    err: &mut impl Write,
) -> Result<(), String> {
    let dry = args.dry_run;
    let user = server.user.to_string();
    let helper = server.nginx.helper.as_ref().map_or_else(|| DEFAULT_HELPER.to_owned(), ToString::to_string);
    let _ = writeln!(err, "bootstrap {} as {} (deploy user {user}, helper {helper}):", server.name, args.admin_user);

    // 1. Packages, with the distribution's package manager.
    let release = admin.must(false, &["cat", "/etc/os-release"], None).await?;
    let ids: String = release
        .lines()
        .filter_map(|l| l.strip_prefix("ID=").or_else(|| l.strip_prefix("ID_LIKE=")))
        .map(|v| v.trim_matches('"').to_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let apt = ids.split_whitespace().any(|i| i == "debian" || i == "ubuntu");
    let dnf = ids.split_whitespace().any(|i| ["rhel", "fedora", "centos", "rocky", "almalinux"].contains(&i));
    // (package to install, packages that already provide it).
    let mut wanted: Vec<(&str, &[&str])> = vec![
        ("nginx", &["nginx", "nginx-light", "nginx-core", "nginx-full", "nginx-extras"]),
        ("tar", &["tar"]),
        ("util-linux", &["util-linux"]),
        ("coreutils", &["coreutils"]),
        ("sudo", &["sudo"]),
    ];
    if args.glances {
        wanted.push(("glances", &["glances"]));
    }
    let mut missing = Vec::new();
    for (pkg, providers) in &wanted {
        let mut present = false;
        for provider in *providers {
            present |= if apt {
                admin
                    .run(false, &["dpkg-query", "-W", "-f=${Status}", provider], None)
                    .await?
                    .stdout
                    .ends_with(b"installed")
            } else if dnf {
                admin.run(false, &["rpm", "-q", provider], None).await?.success()
            } else {
                return Err(format!(
                    "unsupported distribution (os-release ID/ID_LIKE: {ids:?}); Debian/Ubuntu and RHEL-family are"
                ));
            };
        }
        if !present {
            missing.push(*pkg);
        }
    }
    let installed = missing.is_empty();
    let names: Vec<&str> = if installed { wanted.iter().map(|(p, _)| *p).collect() } else { missing.clone() };
    line(err, installed, dry, &format!("packages: {}", names.join(", ")));
    if !installed && !dry {
        let mut argv: Vec<&str> = if apt {
            vec!["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q", "--no-install-recommends"]
        } else {
            vec!["dnf", "install", "-y", "-q"]
        };
        argv.extend(missing.iter().copied());
        admin.must(true, &argv, None).await?;
    }

    // 2. The deploy user.
    let exists = admin.run(false, &["id", "-u", &user], None).await?.success();
    line(err, exists, dry, &format!("user {user} (login shell {})", args.shell));
    if !exists && !dry {
        // Password `*`: no password login, yet not "locked" (sshd without PAM refuses
        // key logins of locked accounts).
        admin
            .must(
                true,
                &["useradd", "--system", "--create-home", "--shell", &args.shell, "--password", "*", &user],
                None,
            )
            .await?;
    }

    // 3. The control plane's key in the deploy user's authorized_keys.
    match public_key(server, base) {
        Some(key) => {
            let home = if exists || !dry {
                let entry = admin.must(false, &["getent", "passwd", &user], None).await?;
                entry.trim().split(':').nth(5).unwrap_or_default().to_owned()
            } else {
                format!("/home/{user}")
            };
            let file = format!("{home}/.ssh/authorized_keys");
            let has = admin.run(true, &["grep", "-qxF", key.trim(), &file], None).await?.success();
            line(err, has, dry, &format!("the control plane's key in {file}"));
            if !has && !dry {
                admin
                    .must(
                        true,
                        &["install", "-d", "-m", "0700", "-o", &user, "-g", &user, &format!("{home}/.ssh")],
                        None,
                    )
                    .await?;
                admin.must(true, &["tee", "-a", &file], Some(format!("{}\n", key.trim()).into_bytes())).await?;
                admin.must(true, &["chown", &format!("{user}:{user}"), &file], None).await?;
                admin.must(true, &["chmod", "0600", &file], None).await?;
            }
        }
        None => {
            let _ = writeln!(err, "  skip   authorized key: the inventory's credential is not a readable key file");
        }
    }

    // 4. The helper, root-owned.
    let text = helper_file();
    let want: String = Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    let have = admin.run(false, &["sha256sum", &helper], None).await?;
    let same = have.success() && String::from_utf8_lossy(&have.stdout).starts_with(&want);
    line(err, same, dry, &format!("helper {helper} (root, 0755)"));
    if !same && !dry {
        let dir = helper.rsplit_once('/').map_or("/", |(d, _)| d);
        admin.must(true, &["install", "-d", "-o", "root", "-g", "root", "-m", "0755", dir], None).await?;
        admin.put(&helper, text.as_bytes(), "0755", None).await?;
    }

    // 5. sudo for the helper only.
    let sudoers = format!("/etc/sudoers.d/rpcc-{user}");
    let entry = format!("{user} ALL=(root) NOPASSWD: {helper}\n");
    let current = admin.run(true, &["cat", &sudoers], None).await?;
    let same = current.success() && current.stdout == entry.as_bytes();
    line(err, same, dry, &format!("{sudoers}: {}", entry.trim()));
    if !same && !dry {
        admin.put(&sudoers, entry.as_bytes(), "0440", Some("visudo")).await?;
    }

    // 6. The ACME webroot, written by the deploy user (HTTP-01 answers).
    let acme = format!("{}/acme", server.nginx.managed_root);
    let owner = admin.run(false, &["stat", "-c", "%U", &acme], None).await?;
    let owned = owner.success() && String::from_utf8_lossy(&owner.stdout).trim() == user;
    line(err, owned, dry, &format!("{acme} (owned by {user})"));
    if !owned && !dry {
        admin.must(true, &["install", "-d", "-m", "0755", "-o", &user, "-g", &user, &acme], None).await?;
    }
    Ok(())
}

/// The public half of the inventory's key file (`<key>.pub`, else `ssh-keygen -y`).
fn public_key(server: &Server, base: &Path) -> Option<String> {
    let ServerAuth::KeyFile { path, .. } = &server.auth else { return None };
    let path = path.resolve(base);
    let mut pubfile = path.clone().into_os_string();
    pubfile.push(".pub");
    if let Ok(text) = std::fs::read_to_string(PathBuf::from(pubfile)) {
        return text.lines().next().map(str::to_owned).filter(|l| !l.is_empty());
    }
    let out =
        std::process::Command::new("ssh-keygen").arg("-y").arg("-P").arg("").arg("-f").arg(&path).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
