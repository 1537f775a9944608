//! `rpcc bootstrap <inventory> <server>`: prepare a new server for rpcc over SSH as an
//! administrator (the pinned host key; the inventory's credential): the packages the
//! deploy needs, the deploy user with the control plane's key, the deploy helper as a
//! root-owned file, its root-owned configuration (every path it uses) and the public
//! half of `[deploy] signing_key`, a root-owned managed root, a sudoers entry for the
//! helper only (checked by `visudo -cf` before it goes live), and an ACME webroot the
//! deploy user may write. Every step checks first and changes only what is missing;
//! `--dry-run` prints what would change. The first deploy then adopts the existing
//! nginx config as generation 0.
//!
//! As root it never follows the deploy user's links: the user's own files (`~/.ssh`,
//! `authorized_keys`) are written as that user (`runuser`), and every directory above
//! the helper, its configuration and the managed root must be root's alone.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use rpcc_core::deploy::ArchiveSigner;
use rpcc_core::deploy::remote::{HelperConf, RemoteCommands, RemoteState, helper_file};
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
        let signer = signer(&inv, keyring.as_ref())?;
        steps(&admin, &server, &base, args, &signer, &mut err).await?;
        if args.dry_run {
            return Ok(());
        }
        // As the deploy user, through the helper: what every deploy will do.
        let deploy_target =
            rpcc_ssh::SshTarget::from_server(&server, &base, keyring.as_ref()).map_err(|e| e.to_string())?;
        let deploy = rpcc_ssh::SshTransport::new(deploy_target).map_err(|e| e.to_string())?;
        let cmds = RemoteCommands::for_server(&server);
        let out = deploy.exec(cmds.inspect(false).map_err(|e| e.to_string())?).await;
        match out {
            Ok(o) if o.success() => {
                if let Some(why) = cmds.conf_mismatch(&RemoteState::parse(&o.stdout)) {
                    return Err(why);
                }
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

/// The control plane's archive signing key: required, so that only archives it signed
/// reach the server's root nginx.
fn signer(
    inv: &rpcc_core::model::Inventory,
    keyring: Option<&rpcc_core::keyring::Keyring>,
) -> Result<ArchiveSigner, String> {
    let secret = inv.deploy.signing_key.as_ref().ok_or_else(|| {
        "the inventory has no [deploy] signing_key: the helper accepts only archives the control plane signed; create one with `rpcc keys signing-key` and add it".to_owned()
    })?;
    let seed = secret.open(keyring).map_err(|e| format!("[deploy] signing_key: {e}"))?;
    ArchiveSigner::from_seed(&seed).map_err(|e| format!("[deploy] signing_key: {e}"))
}

async fn steps(
    admin: &Admin,
    server: &Server,
    base: &Path,
    args: &BootstrapArgs,
    signer: &ArchiveSigner,
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
        ("openssl", &["openssl"]),
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
            // The user's home is the user's: everything in it is read and written as
            // that user, so a link there (`~/.ssh -> /etc`) leads only where the user
            // could write anyway.
            let has =
                exists && admin.run(true, &as_user(&user, &["grep", "-qxF", key.trim(), &file]), None).await?.success();
            line(err, has, dry, &format!("the control plane's key in {file}"));
            if !has && !dry {
                let ssh_dir = format!("{home}/.ssh");
                admin.must(true, &as_user(&user, &["mkdir", "-p", "-m", "0700", &ssh_dir]), None).await?;
                admin
                    .must(true, &as_user(&user, &["tee", "-a", &file]), Some(format!("{}\n", key.trim()).into_bytes()))
                    .await?;
                admin.must(true, &as_user(&user, &["chmod", "0600", &file]), None).await?;
            }
        }
        None => {
            let _ = writeln!(err, "  skip   authorized key: the inventory's credential is not a readable key file");
        }
    }

    // 4. The helper, its configuration and the signing key's public half, root-owned
    // in directories only root can change.
    let conf = server.nginx.helper_conf.to_string();
    let pubkey = HelperConf::signing_key_path(&conf);
    let managed = server.nginx.managed_root.to_string();
    for path in [&helper, &conf, &managed] {
        if let Some(why) = not_roots_alone(admin, parent(path)).await? {
            return Err(format!("{path}: {why}; the helper would not be a privilege boundary there"));
        }
    }
    let text = helper_file(&conf);
    let conf_text = HelperConf::for_server(server, Some(&pubkey)).to_text();
    let key_text = signer.public_key_pem();
    for (path, bytes, what) in [
        (&helper, text.as_bytes(), format!("helper {helper} (root, 0755)")),
        (&conf, conf_text.as_bytes(), format!("helper configuration {conf} (root, 0644)")),
        (&pubkey, key_text.as_bytes(), format!("archive signing key {pubkey} (root, 0644)")),
    ] {
        let want: String = Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect();
        let have = admin.run(false, &["sha256sum", path.as_str()], None).await?;
        let same = have.success() && String::from_utf8_lossy(&have.stdout).starts_with(&want);
        line(err, same, dry, &what);
        if !same && !dry {
            admin.must(true, &["install", "-d", "-o", "root", "-g", "root", "-m", "0755", parent(path)], None).await?;
            admin.put(path, bytes, if *path == helper { "0755" } else { "0644" }, None).await?;
        }
    }

    // The managed root: root's alone (generations, lock, `current`), but for the ACME
    // webroot in it (step 6).
    let owner = admin.run(false, &["stat", "-c", "%u %a %F", &managed], None).await?;
    let found = String::from_utf8_lossy(&owner.stdout).trim().to_owned();
    let ok = owner.success() && roots_alone(&found, "directory");
    line(err, ok, dry, &format!("managed root {managed} (root, 0755)"));
    if !ok && !dry {
        if owner.success() {
            return Err(format!(
                "{managed} exists but is not a root-owned directory only root can write ({found}); move it aside (its contents may not be rpcc's) and run bootstrap again"
            ));
        }
        admin.must(true, &["install", "-d", "-o", "root", "-g", "root", "-m", "0755", &managed], None).await?;
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

    // 6. The ACME webroot, written by the deploy user (HTTP-01 answers); the helper
    // never reads or writes in it.
    let acme = format!("{managed}/acme");
    let owner = admin.run(false, &["stat", "-c", "%U %F", &acme], None).await?;
    let found = String::from_utf8_lossy(&owner.stdout).trim().to_owned();
    let owned = owner.success() && found == format!("{user} directory");
    line(err, owned, dry, &format!("{acme} (owned by {user})"));
    if !owned && !dry {
        if owner.success() && !found.ends_with(" directory") {
            return Err(format!("{acme} exists and is not a directory ({found}); remove it and run bootstrap again"));
        }
        // A plain directory (the managed root is root's: nobody could have linked it).
        admin.must(true, &["install", "-d", "-m", "0755", "-o", &user, "-g", &user, &acme], None).await?;
    }
    Ok(())
}

/// `argv` run as `user` (by root, through `runuser`): for the user's own files.
fn as_user<'a>(user: &'a str, argv: &[&'a str]) -> Vec<&'a str> {
    let mut words = vec!["runuser", "-u", user, "--"];
    words.extend_from_slice(argv);
    words
}

/// The directory a path is in.
fn parent(path: &str) -> &str {
    match path.rsplit_once('/') {
        Some(("", _)) | None => "/",
        Some((dir, _)) => dir,
    }
}

/// Whether a `stat -c '%u %a %F'` line shows something of `kind` (`directory`, or any
/// kind when empty) that only root can change: owner uid 0, not writable by group or
/// others, except a sticky directory (others cannot rename or remove what is in it).
fn roots_alone(line: &str, kind: &str) -> bool {
    let mut words = line.splitn(3, ' ');
    let (Some(uid), Some(mode), Some(found)) = (words.next(), words.next(), words.next()) else { return false };
    let Ok(mode) = u32::from_str_radix(mode, 8) else { return false };
    let writable = mode & 0o022 != 0 && !(found == "directory" && mode & 0o1000 != 0);
    uid == "0" && !writable && (kind.is_empty() || found == kind)
}

/// Why `dir` or a directory above it (those that exist) is not root's alone, if it is not.
async fn not_roots_alone(admin: &Admin, dir: &str) -> Result<Option<String>, String> {
    // Resolved first: every link on the way is followed to the directory it names.
    let resolved = admin.run(false, &["readlink", "-m", dir], None).await?;
    let resolved = String::from_utf8_lossy(&resolved.stdout).trim().to_owned();
    let dir = if resolved.starts_with('/') { resolved.as_str() } else { dir };
    let mut chain = vec![dir.to_owned()];
    let mut d = dir;
    while d != "/" {
        d = parent(d);
        chain.push(d.to_owned());
    }
    for path in chain.iter().rev() {
        let out = admin.run(false, &["stat", "-c", "%u %a %F", path], None).await?;
        if !out.success() {
            // Not there yet: bootstrap creates it root-owned, and so everything below.
            return Ok(None);
        }
        let found = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if !roots_alone(&found, "") {
            return Ok(Some(format!("{path} is not root's alone (uid, mode, kind: {found})")));
        }
    }
    Ok(None)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_root_owned_unwritable_or_sticky_directories_count_as_roots_alone() {
        assert!(roots_alone("0 755 directory", "directory"));
        assert!(roots_alone("0 1777 directory", "directory"), "a sticky /tmp");
        assert!(!roots_alone("0 777 directory", "directory"));
        assert!(!roots_alone("0 775 directory", ""));
        assert!(!roots_alone("1000 755 directory", ""));
        assert!(!roots_alone("0 1777 regular file", ""), "sticky means nothing on a file");
        assert!(!roots_alone("0 644 regular file", "directory"));
        assert!(!roots_alone("garbage", ""));
        assert_eq!(parent("/usr/local/lib/rpcc/rpcc-helper"), "/usr/local/lib/rpcc");
        assert_eq!(parent("/etc"), "/");
    }
}
