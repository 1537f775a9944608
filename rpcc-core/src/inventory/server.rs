//! Decoding `[[servers]]` and `[[groups]]`.

use std::num::NonZeroU32;

use super::decoder::Decoder;
use super::node::Node;
use crate::keyring::RecordId;
use crate::model::{
    DomainGroup, GlancesSettings, NginxLayout, NginxMode, NginxSettings, NginxValidation, ReloadMethod, Rollout,
    RolloutStrategy, Server, ServerAuth,
};
use crate::validate::FieldPath;
use crate::value::{
    FilePath, Host, HostKeyPin, Identifier, ListenAddr, Port, RemotePath, UnitName, UnixUser, ValueError,
};

const SERVER_FIELDS: &[&str] = &["name", "host", "port", "user", "host_key", "auth", "sudo", "nginx", "glances"];
const GLANCES_FIELDS: &[&str] = &["port", "tls", "insecure_http", "user", "password"];
const AUTH_FIELDS: &[&str] = &["key_file", "passphrase", "password", "agent"];
const NGINX_FIELDS: &[&str] = &[
    "layout",
    "mode",
    "root",
    "managed_root",
    "binary",
    "reload",
    "validate",
    "version",
    "listen_http",
    "listen_https",
    "user",
    "pid",
    "log_dir",
    "helper",
    "helper_conf",
];
const GROUP_FIELDS: &[&str] = &["name", "servers", "rollout", "plugins"];
const ROLLOUT_FIELDS: &[&str] = &["strategy", "batch", "max_failed", "concurrency", "rollback_on_failure"];

pub(crate) fn decode_server(d: &mut Decoder<'_>, node: &Node, path: &FieldPath) -> Option<Server> {
    let mut t = d.table(node, path, SERVER_FIELDS)?;
    let name = t.require(d, "name", "a server name").and_then(|(n, p)| d.parse(n, &p, Identifier::parse));
    let host = t.require(d, "host", "an address or host name").and_then(|(n, p)| d.parse(n, &p, Host::parse));
    let port = match t.get("port") {
        Some((n, p)) => d.int(n, &p, 1, 65535, "a port").and_then(|v| Port::from_i64(v).ok()),
        None => Port::new(22).ok(),
    };
    let user = t.require(d, "user", "an SSH user").and_then(|(n, p)| d.parse(n, &p, UnixUser::parse));
    let host_key = match t.get("host_key") {
        Some((n, p)) => d.parse(n, &p, HostKeyPin::parse).map(Some),
        None => Some(None),
    };
    let auth = t
        .require(d, "auth", "auth = { key_file = … } or { password = … } or { agent = true }")
        .and_then(|(n, p)| decode_auth(d, n, &p, name.as_ref()));
    let sudo = t.get("sudo").map_or(Some(false), |(n, p)| d.bool(n, &p));
    let nginx = match t.get("nginx") {
        Some((n, p)) => decode_nginx(d, n, &p),
        None => default_nginx(),
    };
    let glances = match t.get("glances") {
        Some((n, p)) => decode_glances(d, n, &p, name.as_ref()).map(Some),
        None => Some(None),
    };
    t.finish(d);
    if sudo == Some(true)
        && let Some(Some(helper)) = nginx.as_ref().map(|n| &n.helper)
    {
        d.error(
            &path.field("sudo"),
            Some(node),
            format!(
                "is true, but nginx.helper {helper} already runs through `sudo -n` by itself; set sudo = false (the helper is then the only command run as root)"
            ),
        );
        return None;
    }
    Some(Server {
        name: name?,
        host: host?,
        port: port?,
        user: user?,
        host_key: host_key?,
        auth: auth?,
        sudo: sudo?,
        nginx: nginx?,
        glances: glances?,
    })
}

fn decode_glances(
    d: &mut Decoder<'_>,
    node: &Node,
    path: &FieldPath,
    server: Option<&Identifier>,
) -> Option<GlancesSettings> {
    let mut t = d.table(node, path, GLANCES_FIELDS)?;
    let port = match t.get("port") {
        Some((n, p)) => d.int(n, &p, 1, 65535, "a port").and_then(|v| Port::from_i64(v).ok()),
        None => Port::new(61208).ok(),
    };
    let tls = t.get("tls").map_or(Some(false), |(n, p)| d.bool(n, &p));
    let user = match t.get("user") {
        Some((n, p)) => d.parse(n, &p, UnixUser::parse).map(Some),
        None => Some(None),
    };
    let record = server.and_then(|s| RecordId::server_field(s.as_str(), "glances_password").ok());
    let password = match t.get("password") {
        Some((n, p)) => d.secret(n, &p, record.as_ref()).map(Some),
        None => Some(None),
    };
    let insecure_http = t.get("insecure_http").map_or(Some(false), |(n, p)| d.bool(n, &p));
    if t.has("password") && !t.has("user") {
        d.error(&path.field("user"), Some(node), "is required with a password (Glances --username)");
    }
    if let (Some((n, p)), Some(false), Some(false)) = (t.get("password"), tls, insecure_http) {
        d.error(
            &p,
            Some(n),
            "would be sent in clear over plain HTTP; set tls = true (Glances behind TLS), or insecure_http = true to accept that",
        );
    }
    t.finish(d);
    Some(GlancesSettings { port: port?, tls: tls?, insecure_http: insecure_http?, user: user?, password: password? })
}

fn decode_auth(d: &mut Decoder<'_>, node: &Node, path: &FieldPath, server: Option<&Identifier>) -> Option<ServerAuth> {
    let mut t = d.table(node, path, AUTH_FIELDS)?;
    let record = |field: &str| server.and_then(|s| RecordId::server_field(s.as_str(), field).ok());
    let key_file = t.get("key_file").map(|(n, p)| d.parse(n, &p, FilePath::parse));
    let passphrase = t.get("passphrase").map(|(n, p)| (d.secret(n, &p, record("passphrase").as_ref()), p));
    let passphrase_path = passphrase.as_ref().map(|(_, p)| p.clone());
    let password = t.get("password").map(|(n, p)| d.secret(n, &p, record("password").as_ref()));
    let agent = t.get("agent").map(|(n, p)| (d.bool(n, &p), p));
    let methods = usize::from(key_file.is_some()) + usize::from(password.is_some()) + usize::from(agent.is_some());
    let result = match (key_file, password, agent) {
        _ if methods > 1 => {
            d.error(path, Some(node), "sets more than one of key_file, password, agent; choose one");
            None
        }
        (Some(key), None, None) => {
            Some(ServerAuth::KeyFile { path: key?, passphrase: passphrase.and_then(|(s, _)| s) })
        }
        (None, Some(pw), None) => Some(ServerAuth::Password(pw?)),
        (None, None, Some((Some(true), _))) => Some(ServerAuth::Agent),
        (None, None, Some((Some(false), p))) => {
            d.error(&p, Some(node), "is false; set key_file or password instead, or agent = true");
            None
        }
        (None, None, Some((None, _))) => None,
        _ => {
            d.error(path, Some(node), "has no method; set key_file, password or agent = true");
            None
        }
    };
    if passphrase_path.is_some() && matches!(result, Some(ServerAuth::Password(_) | ServerAuth::Agent)) {
        d.error(&path.field("passphrase"), Some(node), "only applies to key_file");
    }
    t.finish(d);
    result
}

fn default_nginx() -> Option<NginxSettings> {
    let root = RemotePath::parse("/etc/nginx").ok()?;
    Some(NginxSettings {
        layout: NginxLayout::Debian,
        mode: NginxMode::Owned,
        managed_root: root.join("rpcc").ok()?,
        root,
        binary: RemotePath::parse("/usr/sbin/nginx").ok()?,
        reload: ReloadMethod::Signal,
        validate: NginxValidation::Test,
        version: None,
        listen_http: ListenAddr::port_only(Port::new(80).ok()?),
        listen_https: ListenAddr::port_only(Port::new(443).ok()?),
        user: UnixUser::parse("www-data").ok(),
        pid: RemotePath::parse("/run/nginx.pid").ok()?,
        log_dir: RemotePath::parse("/var/log/nginx").ok()?,
        helper: None,
        helper_conf: RemotePath::parse(crate::deploy::remote::DEFAULT_HELPER_CONF).ok()?,
    })
}

fn decode_nginx(d: &mut Decoder<'_>, node: &Node, path: &FieldPath) -> Option<NginxSettings> {
    let defaults = default_nginx()?;
    let mut t = d.table(node, path, NGINX_FIELDS)?;
    let layout = t.get("layout").map_or(Some(defaults.layout), |(n, p)| {
        d.choice(n, &p, &[("debian", NginxLayout::Debian), ("rhel", NginxLayout::Rhel)])
    });
    let mode = t.get("mode").map_or(Some(defaults.mode), |(n, p)| {
        d.choice(n, &p, &[("owned", NginxMode::Owned), ("include", NginxMode::Include)])
    });
    let root = t.get("root").map_or(Some(defaults.root.clone()), |(n, p)| d.parse(n, &p, RemotePath::parse));
    let managed_root = match t.get("managed_root") {
        Some((n, p)) => d.parse(n, &p, RemotePath::parse),
        None => root.as_ref().and_then(|r| r.join("rpcc").ok()),
    };
    let binary = t.get("binary").map_or(Some(defaults.binary.clone()), |(n, p)| d.parse(n, &p, RemotePath::parse));
    let reload = t.get("reload").map_or(Some(ReloadMethod::Signal), |(n, p)| d.parse(n, &p, parse_reload));
    let validate = t.get("validate").map_or(Some(NginxValidation::Test), |(n, p)| {
        d.choice(n, &p, &[("test", NginxValidation::Test), ("master", NginxValidation::Master)])
    });
    let version = match t.get("version") {
        Some((n, p)) => d.parse(n, &p, parse_version).map(Some),
        None => Some(None),
    };
    let listen_http =
        t.get("listen_http").map_or(Some(defaults.listen_http.clone()), |(n, p)| d.parse(n, &p, ListenAddr::parse));
    let listen_https =
        t.get("listen_https").map_or(Some(defaults.listen_https.clone()), |(n, p)| d.parse(n, &p, ListenAddr::parse));
    let user = match t.get("user") {
        // `user = ""` omits the directive (nginx not started as root).
        Some((n, _)) if matches!(&n.kind, super::node::NodeKind::String(s) if s.is_empty()) => Some(None),
        Some((n, p)) => d.parse(n, &p, UnixUser::parse).map(Some),
        None => Some(match layout {
            Some(NginxLayout::Rhel) => UnixUser::parse("nginx").ok(),
            _ => defaults.user.clone(),
        }),
    };
    let pid = t.get("pid").map_or(Some(defaults.pid.clone()), |(n, p)| d.parse(n, &p, RemotePath::parse));
    let log_dir = t.get("log_dir").map_or(Some(defaults.log_dir.clone()), |(n, p)| d.parse(n, &p, RemotePath::parse));
    let helper = match t.get("helper") {
        Some((n, p)) => d.parse(n, &p, RemotePath::parse).map(Some),
        None => Some(None),
    };
    let helper_conf =
        t.get("helper_conf").map_or(Some(defaults.helper_conf.clone()), |(n, p)| d.parse(n, &p, RemotePath::parse));
    t.finish(d);
    if let (Some(h), Some(s)) = (&listen_http, &listen_https)
        && h == s
    {
        d.error(
            &path.field("listen_https"),
            Some(node),
            format!("\"{s}\" is also listen_http; HTTP and HTTPS need different ports"),
        );
        return None;
    }
    Some(NginxSettings {
        layout: layout?,
        mode: mode?,
        root: root?,
        managed_root: managed_root?,
        binary: binary?,
        reload: reload?,
        validate: validate?,
        version: version?,
        listen_http: listen_http?,
        listen_https: listen_https?,
        user: user?,
        pid: pid?,
        log_dir: log_dir?,
        helper: helper?,
        helper_conf: helper_conf?,
    })
}

/// Reload methods are a closed set; a free-form command is refused.
fn parse_reload(s: &str) -> Result<ReloadMethod, ValueError> {
    const HELP: &str = "is not a reload method; use \"signal\", \"systemctl\", \"service\", \"systemctl reload <unit>\" or \"service <unit> reload\"";
    let words: Vec<&str> = s.split(' ').filter(|w| !w.is_empty()).collect();
    let unit = |u: &str| UnitName::parse(u).map_err(|e| ValueError::new(format!("has a bad unit name: {e}")));
    match words.as_slice() {
        ["signal"] | ["nginx", "-s", "reload"] => Ok(ReloadMethod::Signal),
        ["systemctl"] => Ok(ReloadMethod::Systemctl(unit("nginx")?)),
        ["service"] => Ok(ReloadMethod::Service(unit("nginx")?)),
        ["systemctl", "reload", u] => Ok(ReloadMethod::Systemctl(unit(u)?)),
        ["service", u, "reload"] => Ok(ReloadMethod::Service(unit(u)?)),
        _ => Err(ValueError::new(HELP)),
    }
}

fn parse_version(s: &str) -> Result<(u16, u16, u16), ValueError> {
    let parts: Vec<Option<u16>> = s.split('.').map(|p| p.parse().ok()).collect();
    match parts.as_slice() {
        [Some(a), Some(b), Some(c)] => Ok((*a, *b, *c)),
        [Some(a), Some(b)] => Ok((*a, *b, 0)),
        _ => Err(ValueError::new("is not an nginx version (e.g. 1.22.1)")),
    }
}

pub(crate) fn decode_group(d: &mut Decoder<'_>, node: &Node, path: &FieldPath) -> Option<DomainGroup> {
    let mut t = d.table(node, path, GROUP_FIELDS)?;
    let name = t.require(d, "name", "a group name").and_then(|(n, p)| d.parse(n, &p, Identifier::parse));
    let servers = t
        .require(d, "servers", "a list of server names")
        .and_then(|(n, p)| d.array(n, &p, |d, n, p| d.parse(n, p, Identifier::parse)));
    let rollout = match t.get("rollout") {
        Some((n, p)) => decode_rollout(d, n, &p),
        None => Some(Rollout::default()),
    };
    let plugins = plugin_names(d, &mut t);
    t.finish(d);
    Some(DomainGroup { name: name?, servers: servers?, rollout: rollout?, plugins: plugins? })
}

fn decode_rollout(d: &mut Decoder<'_>, node: &Node, path: &FieldPath) -> Option<Rollout> {
    let def = Rollout::default();
    let mut t = d.table(node, path, ROLLOUT_FIELDS)?;
    let strategy = t.get("strategy").map_or(Some(def.strategy), |(n, p)| {
        d.choice(n, &p, &[("all", RolloutStrategy::All), ("canary", RolloutStrategy::Canary)])
    });
    let nonzero = |d: &mut Decoder<'_>, n: &Node, p: &FieldPath, max: i64, what: &str| {
        d.int(n, p, 1, max, what).and_then(|v| u32::try_from(v).ok()).and_then(NonZeroU32::new)
    };
    let batch = t.get("batch").map_or(Some(def.batch), |(n, p)| nonzero(d, n, &p, 10_000, "a batch size"));
    let concurrency =
        t.get("concurrency").map_or(Some(def.concurrency), |(n, p)| nonzero(d, n, &p, 1024, "a concurrency"));
    let max_failed = t.get("max_failed").map_or(Some(def.max_failed), |(n, p)| {
        d.int(n, &p, 0, 100_000, "a failure budget").and_then(|v| u32::try_from(v).ok())
    });
    let rollback_on_failure =
        t.get("rollback_on_failure").map_or(Some(def.rollback_on_failure), |(n, p)| d.bool(n, &p));
    t.finish(d);
    Some(Rollout {
        strategy: strategy?,
        batch: batch?,
        max_failed: max_failed?,
        concurrency: concurrency?,
        rollback_on_failure: rollback_on_failure?,
    })
}

/// `plugins = ["name", ...]` of a group or site (names are cross-checked later).
pub(crate) fn plugin_names(d: &mut Decoder<'_>, t: &mut super::decoder::Table<'_>) -> Option<Vec<Identifier>> {
    match t.get("plugins") {
        Some((n, p)) => d.array(n, &p, |d, n, p| d.parse(n, p, Identifier::parse)),
        None => Some(Vec::new()),
    }
}
