//! `NginxRenderer`: the inventory → generation tree for one server.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use minijinja::value::Serde;
use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value, context};
use rpcc_core::certs::{CertificateSet, SiteCertificate};
use rpcc_core::fragment::{SiteExtension, SiteFragments};
use rpcc_core::generation::{Generation, GenerationFile, GenerationPath, Renderer, Sha256Hasher};
use rpcc_core::model::{Inventory, NginxMode, Server, Site, TlsMode};
use rpcc_core::value::NGINX_UNSAFE;
use sha2::{Digest, Sha256};
use std::hash::Hash as _;

use crate::RenderError;
use crate::options::RenderOptions;
use crate::view::{
    CertState, GENERATION_PLACEHOLDER, ServerView, SiteServerView, server_view, site_id, site_server_view, site_view,
};

/// Built-in templates (minijinja), by name.
const TEMPLATES: &[(&str, &str)] = &[
    ("nginx.conf.j2", include_str!("../templates/nginx.conf.j2")),
    ("http.conf.j2", include_str!("../templates/http.conf.j2")),
    ("site.conf.j2", include_str!("../templates/site.conf.j2")),
];

/// Built-in static files copied into every generation, by path.
const STATIC_FILES: &[(&str, &str)] = &[("mime.types", include_str!("../templates/mime.types"))];

/// One template invocation of a render: which template, which output file, and the
/// exact data it sees. Operators use it to write overrides; benchmarks feed the same
/// data to other template engines.
#[derive(Debug, Clone)]
pub struct TemplateInput {
    /// Built-in template name, e.g. `site.conf.j2`.
    pub template: &'static str,
    /// Output path in the generation, e.g. `sites/app.example.com.conf`.
    pub output: String,
    /// The context (serializable with serde).
    pub context: Value,
}

/// File mode of every rendered file.
const FILE_MODE: u32 = 0o644;
/// Private keys in a generation: owner only.
const KEY_MODE: u32 = 0o600;

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
    /// Hash of every template and static file in use (built-in or override), part of
    /// each generation id.
    templates_digest: Vec<u8>,
    static_files: Vec<(GenerationPath, Arc<[u8]>)>,
    options: RenderOptions,
    ocsp_domains: BTreeSet<String>,
    /// Site files of the last render of each server, by the digest of their inputs.
    cache: Mutex<HashMap<String, Arc<SiteCache>>>,
    /// Template plugins (or any other source of checked fragments).
    extension: Option<Arc<dyn SiteExtension>>,
}

/// Fragments as the site template sees them: canonical text, already indented.
#[derive(serde::Serialize)]
struct PluginView {
    server: String,
    main_location: String,
    server_body: Option<String>,
    /// Something at the server level (fragments or a whole body): the template then
    /// writes rpcc's reserved locations first, with their own error pages and access
    /// rules, so that nothing the plugin sets at that level applies to them.
    server_level: bool,
}

impl PluginView {
    fn of(f: &SiteFragments) -> Self {
        Self {
            server: f.server.to_nginx(1),
            main_location: f.main_location.to_nginx(2),
            server_body: f.server_body.as_ref().map(|b| b.to_nginx(1)),
            server_level: !f.server.is_empty() || f.server_body.is_some(),
        }
    }
}

/// An extension's fragments for one site, refused unless each part may stand where the
/// template puts it (whatever the extension checked itself): no server-level `return`
/// in front of rpcc's reserved locations, no location inside `location /`.
fn placed_fragments(
    ext: &dyn SiteExtension,
    inventory: &Inventory,
    server: &Server,
    site: &Site,
) -> Result<SiteFragments, rpcc_core::fragment::ExtensionError> {
    let f = ext.site_fragments(inventory, server, site)?;
    f.check_placement().map_err(|e| Arc::new(e) as rpcc_core::fragment::ExtensionError)?;
    Ok(f)
}

/// Rendered site files keyed by the SHA-256 of everything their template sees.
type SiteCache = HashMap<[u8; 32], Arc<str>>;

impl std::fmt::Debug for NginxRenderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NginxRenderer")
            .field("options", &self.options)
            .field("extension", &self.extension)
            .finish_non_exhaustive()
    }
}

/// Check a value that goes into a directive; the value is passed through unchanged
/// (no copy) when every character is allowed.
fn check_value(value: Value, allow: impl Fn(char) -> bool, what: &str) -> Result<Value, minijinja::Error> {
    let bad = match value.as_str() {
        Some(s) => s.chars().find(|c| !allow(*c)),
        None if value.is_number() => None,
        None => {
            return Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                format!("refusing to emit {value:?} as {what}: not a string or number"),
            ));
        }
    };
    match bad {
        None => Ok(value),
        Some(c) => Err(minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            format!("refusing to emit {value} as {what}: it contains {c:?}, which nginx cannot hold safely"),
        )),
    }
}

/// `{{ x | arg }}`: one directive argument, no whitespace or unsafe character.
fn filter_arg(value: Value) -> Result<Value, minijinja::Error> {
    check_value(value, |c| !(NGINX_UNSAFE.contains(&c) || c.is_whitespace() || c.is_control()), "a directive argument")
}

/// `{{ x | words }}`: several arguments separated by single spaces.
fn filter_words(value: Value) -> Result<Value, minijinja::Error> {
    if let Some(s) = value.as_str()
        && (s.starts_with(' ') || s.ends_with(' ') || s.contains("  "))
    {
        return Err(minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            format!("refusing to emit {s:?}: irregular spacing"),
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
fn filter_quoted(value: Value) -> Result<Value, minijinja::Error> {
    check_value(value, |c| !(matches!(c, '"' | '\\' | '$' | '{' | '}' | '`') || c.is_control()), "a quoted string")
}

/// Feeds serialized template data into a SHA-256 without buffering it.
struct HashWriter<'a>(&'a mut Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A site with the digest of everything its file depends on.
struct PreparedSite<'i> {
    site: &'i Site,
    ocsp: bool,
    cert: CertState,
    /// The certificate that goes into the generation with the site.
    certificate: Option<&'i SiteCertificate>,
    /// The extension's fragments as the template will insert them (`None`: no extension).
    plugin: Result<Option<PluginView>, rpcc_core::fragment::ExtensionError>,
    digest: [u8; 32],
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
        let mut digest = Sha256::new();
        digest.update(concat!("rpcc-nginx ", env!("CARGO_PKG_VERSION"), "\n").as_bytes());
        for (name, builtin) in TEMPLATES {
            let source = override_source(&options, name)?.unwrap_or_else(|| (*builtin).to_owned());
            digest.update(format!("{name} {}\n", source.len()).as_bytes());
            digest.update(source.as_bytes());
            env.add_template_owned(*name, source).map_err(|e| RenderError::from_template(&e))?;
        }
        let mut static_files = Vec::new();
        for (path, builtin) in STATIC_FILES {
            let body = override_source(&options, path)?.unwrap_or_else(|| (*builtin).to_owned());
            digest.update(format!("{path} {}\n", body.len()).as_bytes());
            digest.update(body.as_bytes());
            let path = GenerationPath::parse(path)
                .map_err(|e| RenderError::Options { option: "static file", message: e.to_string() })?;
            static_files.push((path, Arc::from(body.into_bytes())));
        }
        Ok(Self {
            env,
            templates_digest: digest.finalize().to_vec(),
            static_files,
            options,
            ocsp_domains: BTreeSet::new(),
            cache: Mutex::new(HashMap::new()),
            extension: None,
        })
    }

    /// Domains whose certificate carries an OCSP responder URL; only these get
    /// `ssl_stapling` (when their site enables it). Comes from the certificate store.
    pub fn with_ocsp_domains(mut self, domains: impl IntoIterator<Item = String>) -> Self {
        self.ocsp_domains = domains.into_iter().collect();
        self
    }

    /// Add checked fragments to sites (template plugins). Their output is part of each
    /// site's digest, so a changed fragment changes the generation.
    pub fn with_extension(mut self, extension: Arc<dyn SiteExtension>) -> Self {
        self.extension = Some(extension);
        self
    }

    fn fragments(&self, inventory: &Inventory, server: &Server, site: &Site) -> Result<SiteFragments, RenderError> {
        match &self.extension {
            None => Ok(SiteFragments::default()),
            Some(ext) => placed_fragments(ext.as_ref(), inventory, server, site).map_err(|source| {
                RenderError::Extension { server: server.name.to_string(), site: site.domain.to_string(), source }
            }),
        }
    }

    fn render_template(&self, name: &str, ctx: Value) -> Result<String, RenderError> {
        let tmpl = self.env.get_template(name).map_err(|e| RenderError::from_template(&e))?;
        tmpl.render(ctx).map_err(|e| RenderError::from_template(&e))
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
        let view = site_view(
            site,
            server.nginx.managed_root.as_str(),
            self.ocsp_domains.contains(site.domain.as_str()),
            CertState::Assumed,
        );
        let ssv = site_server_view(server, &self.options);
        let plugin = PluginView::of(&self.fragments(inventory, server, site)?);
        let text = self.render_template(
            "site.conf.j2",
            context! {
                server => Value::from(Serde(&ssv)),
                site => Value::from(Serde(&view)),
                plugin => Value::from(Serde(&plugin)),
            },
        )?;
        Ok(text.replace(&format!("generations/{GENERATION_PLACEHOLDER}"), "current"))
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

impl NginxRenderer {
    /// The template invocations a render of `server` performs, with their data.
    pub fn template_inputs(&self, inventory: &Inventory, server: &Server) -> Result<Vec<TemplateInput>, RenderError> {
        let sites: Vec<&Site> = inventory.sites_for_server(server.name.as_str()).collect();
        let mut sv = server_view(server, &sites, &self.options);
        sv.gen_dir = format!("{}/generations/<id>", server.nginx.managed_root);
        let ssv = Value::from(Serde(site_server_view(server, &self.options)));
        let server_value = Value::from(Serde(&sv));
        let mut out = Vec::new();
        if server.nginx.mode == NginxMode::Owned {
            out.push(TemplateInput {
                template: "nginx.conf.j2",
                output: "nginx.conf".into(),
                context: context! { server => server_value.clone() },
            });
        }
        out.push(TemplateInput {
            template: "http.conf.j2",
            output: "http.conf".into(),
            context: context! { server => server_value },
        });
        for site in sites {
            let view = site_view(
                site,
                server.nginx.managed_root.as_str(),
                self.ocsp_domains.contains(site.domain.as_str()),
                CertState::Assumed,
            );
            let plugin = PluginView::of(&self.fragments(inventory, server, site)?);
            out.push(TemplateInput {
                template: "site.conf.j2",
                output: format!("sites/{}.conf", site_id(site)),
                context: context! {
                    server => ssv.clone(),
                    site => Value::from(Serde(&view)),
                    plugin => Value::from(Serde(&plugin)),
                },
            });
        }
        Ok(out)
    }

    /// Forget the cached site files (they are otherwise kept for the last render of
    /// each server, so the next render of an unchanged site is a hash and a lookup).
    pub fn clear_cache(&self) {
        if let Ok(mut c) = self.cache.lock() {
            c.clear();
        }
    }

    /// Render one template input (as [`NginxRenderer::template_inputs`] lists them).
    #[doc(hidden)]
    pub fn render_input(&self, input: &TemplateInput) -> String {
        self.render_template(input.template, input.context.clone()).unwrap_or_default()
    }

    /// The source of a built-in template (for peers and for operators starting an override).
    pub fn builtin_template(name: &str) -> Option<&'static str> {
        TEMPLATES.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
    }
}

/// Sites per thread below which rendering stays on the calling thread.
const PARALLEL_MIN_SITES: usize = 64;

/// Run `f` over `items` on up to the available cores (at most `max`), keeping order.
fn parallel_map<T: Sync, R: Send>(
    items: &[T],
    max: Option<std::num::NonZeroUsize>,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let threads = max.map_or(cores, |m| m.get().min(cores)).min(items.len() / PARALLEL_MIN_SITES).max(1);
    if threads == 1 {
        return items.iter().map(&f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> =
            items.chunks(chunk).map(|part| scope.spawn(|| part.iter().map(&f).collect::<Vec<R>>())).collect();
        // A panic in a worker is a bug in rpcc; surface it on the caller's thread.
        handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    })
}

impl Renderer for NginxRenderer {
    type Error = RenderError;

    /// A render for review: ACME and self-signed sites point at certificates in the
    /// generation that this render does not contain (see
    /// [`NginxRenderer::render_with_certificates`] for deployable trees).
    fn render(&self, inventory: &Inventory, server: &Server) -> Result<Generation, RenderError> {
        self.render_with_certificates(inventory, server, None)
    }
}

impl NginxRenderer {
    /// Render a deployable generation: each ACME or self-signed site whose certificate
    /// is in `certificates` gets it in the tree (`certs/<site>/fullchain.pem`, and
    /// `privkey.pem` with mode 0600) and its config points there; a site missing from
    /// the set is served over plain HTTP answering ACME challenges only, never with a
    /// reference to a file that is not there. `None`: a render for review (paths only).
    pub fn render_with_certificates(
        &self,
        inventory: &Inventory,
        server: &Server,
        certificates: Option<&CertificateSet>,
    ) -> Result<Generation, RenderError> {
        let sites: Vec<&Site> = inventory.sites_for_server(server.name.as_str()).collect();
        let managed_root = server.nginx.managed_root.as_str();
        let ssv: SiteServerView = site_server_view(server, &self.options);
        let ssv_json = serde_json::to_vec(&ssv)
            .map_err(|e| RenderError::Server { server: server.name.to_string(), message: e.to_string() })?;
        let ssv_value = Value::from(Serde(&ssv));
        let previous = self.cache.lock().ok().and_then(|c| c.get(server.name.as_str()).cloned()).unwrap_or_default();

        // 1. A digest per site of everything its file depends on (the templates, the
        //    server fields a site sees, the site itself); 2. render only the sites the
        //    previous render of this server did not have.
        let prepared: Vec<PreparedSite<'_>> = parallel_map(&sites, self.options.max_threads, |site| {
            let ocsp = self.ocsp_domains.contains(site.domain.as_str());
            let managed = matches!(site.tls.mode, TlsMode::Acme | TlsMode::SelfSigned);
            let certificate = certificates.filter(|_| managed).and_then(|set| set.get(&site_id(site)));
            let cert = match (certificates, certificate) {
                (None, _) => CertState::Assumed,
                (Some(_), Some(_)) => CertState::Present,
                (Some(_), None) => CertState::Pending,
            };
            // The canonical text is what the site file will hold, so it is what the
            // digest covers (cheaper than hashing the directive tree, and computed once).
            let plugin = match &self.extension {
                None => Ok(None),
                Some(ext) => placed_fragments(ext.as_ref(), inventory, server, site).map(|f| Some(PluginView::of(&f))),
            };
            let mut h = Sha256Hasher::new();
            h.update(&self.templates_digest);
            h.update(&ssv_json);
            h.update(managed_root.as_bytes());
            ocsp.hash(&mut h);
            cert.hash(&mut h);
            if let Some(c) = certificate {
                h.update(c.fingerprint().as_bytes());
            }
            site.hash(&mut h);
            if let Ok(Some(v)) = &plugin {
                v.server.hash(&mut h);
                v.main_location.hash(&mut h);
                v.server_body.hash(&mut h);
            }
            PreparedSite { site, ocsp, cert, certificate, plugin, digest: h.digest() }
        });
        let rendered: Vec<Result<Arc<str>, RenderError>> = parallel_map(&prepared, self.options.max_threads, |p| {
            let plugin = p.plugin.as_ref().map_err(|source| RenderError::Extension {
                server: server.name.to_string(),
                site: p.site.domain.to_string(),
                source: std::sync::Arc::clone(source),
            })?;
            match previous.get(&p.digest) {
                Some(text) => Ok(Arc::clone(text)),
                None => {
                    let view = site_view(p.site, managed_root, p.ocsp, p.cert);
                    let plugin = plugin.as_ref().map_or(Value::UNDEFINED, |v| Value::from(Serde(v)));
                    self.render_template(
                        "site.conf.j2",
                        context! {
                            server => ssv_value.clone(),
                            site => Value::from(Serde(&view)),
                            plugin => plugin,
                        },
                    )
                    .map(Arc::from)
                }
            }
        });

        // The id covers the templates, the server-level data and every site's inputs.
        let mut sv: ServerView = server_view(server, &sites, &self.options);
        let mut h = Sha256::new();
        h.update(&self.templates_digest);
        serde_json::to_writer(HashWriter(&mut h), &sv)
            .map_err(|e| RenderError::Server { server: server.name.to_string(), message: e.to_string() })?;
        for p in &prepared {
            h.update(p.digest);
        }
        let id: String = h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect();
        sv.gen_dir = format!("{managed_root}/generations/{id}");
        let server_value = Value::from(Serde(&sv));

        let path = |p: &str| {
            GenerationPath::parse(p).map_err(|e| RenderError::Server {
                server: server.name.to_string(),
                message: format!("file {p:?} {e}"),
            })
        };
        let file = |bytes: Arc<[u8]>| GenerationFile { bytes, mode: FILE_MODE };
        let mut files = BTreeMap::new();
        if server.nginx.mode == NginxMode::Owned {
            files.insert(
                path("nginx.conf")?,
                file(
                    self.render_template("nginx.conf.j2", context! { server => server_value.clone() })?
                        .into_bytes()
                        .into(),
                ),
            );
        }
        files.insert(
            path("http.conf")?,
            file(self.render_template("http.conf.j2", context! { server => server_value })?.into_bytes().into()),
        );
        let mut cache = SiteCache::with_capacity(prepared.len());
        for (p, text) in prepared.iter().zip(rendered) {
            let text = text?;
            let sid = site_id(p.site);
            // Certificate paths name this generation: the cached text keeps the
            // placeholder, the file gets the id.
            let bytes: Arc<[u8]> = if text.contains(GENERATION_PLACEHOLDER) {
                Arc::from(text.replace(GENERATION_PLACEHOLDER, &id).into_bytes())
            } else {
                Arc::<[u8]>::from(Arc::clone(&text))
            };
            files.insert(path(&format!("sites/{sid}.conf"))?, file(bytes));
            if let Some(c) = p.certificate {
                files.insert(path(&rpcc_core::certs::chain_path(&sid))?, file(Arc::clone(c.chain())));
                files.insert(
                    path(&rpcc_core::certs::key_path(&sid))?,
                    GenerationFile { bytes: Arc::from(c.key()), mode: KEY_MODE },
                );
            }
            cache.insert(p.digest, text);
        }
        for (p, body) in &self.static_files {
            files.insert(p.clone(), file(Arc::clone(body)));
        }
        if let Ok(mut c) = self.cache.lock() {
            c.insert(server.name.to_string(), Arc::new(cache));
        }
        Ok(Generation::new(id, files))
    }
}
