//! `NginxRenderer`: the inventory → generation tree for one server.

use std::collections::{BTreeMap, BTreeSet};

use minijinja::value::Serde;
use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value, context};
use rpcc_core::generation::{Generation, GenerationFile, GenerationPath, Renderer, tree_hash};
use rpcc_core::model::{Inventory, NginxMode, Server, Site};
use rpcc_core::value::NGINX_UNSAFE;

use crate::RenderError;
use crate::options::RenderOptions;
use crate::view::{GEN_DIR, ServerView, server_view, site_id, site_view};

/// Built-in templates (minijinja), by name.
const TEMPLATES: &[(&str, &str)] = &[
    ("nginx.conf.j2", include_str!("../templates/nginx.conf.j2")),
    ("http.conf.j2", include_str!("../templates/http.conf.j2")),
    ("site.conf.j2", include_str!("../templates/site.conf.j2")),
];

/// Built-in static files copied into every generation, by path.
const STATIC_FILES: &[(&str, &str)] = &[
    ("mime.types", include_str!("../templates/mime.types")),
    ("snippets/proxy.conf", include_str!("../templates/snippets/proxy.conf")),
    ("html/50x.html", include_str!("../templates/html/50x.html")),
    ("html/maintenance.html", include_str!("../templates/html/maintenance.html")),
];

/// File mode of every rendered file.
const FILE_MODE: u32 = 0o644;

/// Renders nginx configuration trees. Templates are compiled once, at construction.
///
/// ```
/// use rpcc_core::Inventory;
/// use rpcc_nginx::{NginxRenderer, RenderOptions};
///
/// let inv = Inventory::from_toml_str(r#"
///     [[servers]]
///     name = "edge-1"
///     host = "203.0.113.10"
///     user = "deploy"
///     auth = { agent = true }
///     [[groups]]
///     name = "eu"
///     servers = ["edge-1"]
///     [[sites]]
///     domain = "app.example.com"
///     group = "eu"
///     upstream = { backends = ["10.0.0.5:8080", "10.0.0.6:8080"] }
/// "#).unwrap();
/// let renderer = NginxRenderer::new(RenderOptions::default()).unwrap();
/// let generation = renderer.render_server(&inv, "edge-1").unwrap();
/// let site = generation.file("sites/app.example.com.conf").unwrap();
/// assert!(String::from_utf8_lossy(&site.bytes).contains("server 10.0.0.6:8080"));
/// ```
pub struct NginxRenderer {
    env: Environment<'static>,
    static_files: Vec<(GenerationPath, String)>,
    options: RenderOptions,
    ocsp_domains: BTreeSet<String>,
}

impl std::fmt::Debug for NginxRenderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NginxRenderer").field("options", &self.options).finish_non_exhaustive()
    }
}

/// Check a value that becomes one bare directive argument.
fn check_value(value: &str, allow: impl Fn(char) -> bool, what: &str) -> Result<String, minijinja::Error> {
    let bare = value.replace(GEN_DIR, "");
    if let Some(c) = bare.chars().find(|c| !allow(*c)) {
        return Err(minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            format!("refusing to emit {value:?} as {what}: it contains {c:?}, which nginx cannot hold safely"),
        ));
    }
    Ok(value.to_owned())
}

/// `{{ x | arg }}`: one directive argument, no whitespace or unsafe character.
fn filter_arg(value: &str) -> Result<String, minijinja::Error> {
    check_value(value, |c| !(NGINX_UNSAFE.contains(&c) || c.is_whitespace() || c.is_control()), "a directive argument")
}

/// `{{ x | words }}`: several arguments separated by single spaces.
fn filter_words(value: &str) -> Result<String, minijinja::Error> {
    if value.starts_with(' ') || value.ends_with(' ') || value.contains("  ") {
        return Err(minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            format!("refusing to emit {value:?}: irregular spacing"),
        ));
    }
    check_value(
        value,
        |c| c == ' ' || !(NGINX_UNSAFE.contains(&c) || c.is_whitespace() || c.is_control()),
        "directive arguments",
    )
}

/// `"{{ x | q }}"`: the inside of a double-quoted string: spaces, `;` and `'` are fine,
/// but never `"`, `\`, `$`, braces or control characters.
fn filter_quoted(value: &str) -> Result<String, minijinja::Error> {
    check_value(value, |c| !(matches!(c, '"' | '\\' | '$' | '{' | '}' | '`') || c.is_control()), "a quoted string")
}

impl NginxRenderer {
    /// Compile the built-in templates, replaced by same-named files from the options'
    /// override directory where present.
    pub fn new(options: RenderOptions) -> Result<Self, RenderError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(true)
            .build()
            .map_err(|e| RenderError::from_template(&e))?;
        env.set_syntax(syntax);
        env.add_filter("arg", filter_arg);
        env.add_filter("words", filter_words);
        env.add_filter("q", filter_quoted);
        for (name, builtin) in TEMPLATES {
            let source = override_source(&options, name)?.unwrap_or_else(|| (*builtin).to_owned());
            env.add_template_owned(*name, source).map_err(|e| RenderError::from_template(&e))?;
        }
        let mut static_files = Vec::new();
        for (path, builtin) in STATIC_FILES {
            let body = override_source(&options, path)?.unwrap_or_else(|| (*builtin).to_owned());
            let path = GenerationPath::parse(path)
                .map_err(|e| RenderError::Options { option: "static file", message: e.to_string() })?;
            static_files.push((path, body));
        }
        Ok(Self { env, static_files, options, ocsp_domains: BTreeSet::new() })
    }

    /// Domains whose certificate carries an OCSP responder URL; only these get
    /// `ssl_stapling` (when their site enables it). Comes from the certificate store.
    pub fn with_ocsp_domains(mut self, domains: impl IntoIterator<Item = String>) -> Self {
        self.ocsp_domains = domains.into_iter().collect();
        self
    }

    fn render_template(&self, name: &str, ctx: Value) -> Result<String, RenderError> {
        let tmpl = self.env.get_template(name).map_err(|e| RenderError::from_template(&e))?;
        tmpl.render(ctx).map_err(|e| RenderError::from_template(&e))
    }

    fn site_text(&self, server: &Value, site: &Site, managed_root: &str) -> Result<String, RenderError> {
        let view = site_view(site, managed_root, self.ocsp_domains.contains(site.domain.as_str()));
        self.render_template("site.conf.j2", context! { server => server.clone(), site => Value::from(Serde(&view)) })
    }

    /// Render the generation for the server named `server`.
    pub fn render_server(&self, inventory: &Inventory, server: &str) -> Result<Generation, RenderError> {
        let server = inventory.server(server).ok_or_else(|| RenderError::Server {
            server: server.to_owned(),
            message: "is not in the inventory".into(),
        })?;
        self.render(inventory, server)
    }

    /// The config of one site as it would be deployed (the legacy panel's "generate
    /// config for one domain"), with paths shown under `<managed root>/current`.
    pub fn render_site(&self, inventory: &Inventory, server: &Server, domain: &str) -> Result<String, RenderError> {
        let site = inventory.sites_for_server(server.name.as_str()).find(|s| s.domain.as_str() == domain).ok_or_else(
            || RenderError::Server { server: server.name.to_string(), message: format!("does not serve {domain:?}") },
        )?;
        let sites = [site];
        let sv: ServerView = server_view(inventory, server, &sites, &self.options);
        let text = self.site_text(&Value::from(Serde(&sv)), site, server.nginx.managed_root.as_str())?;
        Ok(text.replace(GEN_DIR, &format!("{}/current", server.nginx.managed_root)))
    }
}

fn override_source(options: &RenderOptions, name: &str) -> Result<Option<String>, RenderError> {
    let Some(dir) = &options.override_dir else { return Ok(None) };
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(s) => {
            tracing::info!(template = name, path = %path.display(), "using operator template override");
            Ok(Some(s))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(RenderError::Override { path, source }),
    }
}

impl Renderer for NginxRenderer {
    type Error = RenderError;

    fn render(&self, inventory: &Inventory, server: &Server) -> Result<Generation, RenderError> {
        let sites: Vec<&Site> = inventory.sites_for_server(server.name.as_str()).collect();
        let managed_root = server.nginx.managed_root.as_str();
        let sv = server_view(inventory, server, &sites, &self.options);
        let server_value = Value::from(Serde(&sv));
        let mut texts: BTreeMap<String, String> = BTreeMap::new();
        if server.nginx.mode == NginxMode::Owned {
            texts.insert(
                "nginx.conf".into(),
                self.render_template("nginx.conf.j2", context! { server => server_value.clone() })?,
            );
        }
        texts.insert(
            "http.conf".into(),
            self.render_template("http.conf.j2", context! { server => server_value.clone() })?,
        );
        for site in &sites {
            texts.insert(format!("sites/{}.conf", site_id(site)), self.site_text(&server_value, site, managed_root)?);
        }
        for (path, body) in &self.static_files {
            texts.insert(path.to_string(), body.clone());
        }

        // The id is the hash of the tree with the generation directory still a
        // placeholder, so it is known before the paths that contain it are written.
        let id = tree_hash(texts.iter().map(|(p, t)| (p.as_str(), FILE_MODE, t.as_bytes()))).to_hex()[..16].to_owned();
        let gen_dir = format!("{managed_root}/generations/{id}");
        let mut files = BTreeMap::new();
        for (path, text) in texts {
            let text = text.replace(GEN_DIR, &gen_dir);
            if text.contains('\u{1}') {
                return Err(RenderError::Template {
                    template: path,
                    line: None,
                    message: "a generation-directory placeholder was left in the output".into(),
                });
            }
            let path = GenerationPath::parse(&path).map_err(|e| RenderError::Server {
                server: server.name.to_string(),
                message: format!("file {path:?} {e}"),
            })?;
            files.insert(path, GenerationFile { bytes: text.into_bytes(), mode: FILE_MODE });
        }
        Ok(Generation::new(id, files))
    }
}
