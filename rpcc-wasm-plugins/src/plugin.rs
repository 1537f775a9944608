//! `Plugin`: one loaded component, instantiated afresh (under its spec's limits) for
//! every call: render a template, run a check, lint a generation.

use std::sync::Arc;

use rpcc_core::fragment::{Directive, ExtensionError, Fragment, FragmentScope, SiteExtension, SiteFragments};
use rpcc_core::generation::Generation;
use rpcc_core::model::{Inventory, PluginCapability, Server, Site};
use wasmtime::{Store, Trap};

use crate::PluginError;
use crate::bindings::v0_1::shared::rpcc::plugin::{template_types as tt, types as wt};
use crate::bindings::v0_1::{check, lint, template};
use crate::host::{EPOCH_TICK, HostInner, OUTPUT_OVERHEAD, host_err};
use crate::spec::*;
use crate::state::{CapabilityDenied, HostState};
use crate::view::{server_view, site_view};

pub(crate) enum KindPre {
    Template(template::TemplatePluginPre<HostState>),
    Check(check::CheckPluginPre<HostState>),
    Lint(lint::LintPluginPre<HostState>),
}

pub(crate) struct PluginInner {
    pub(crate) name: Arc<str>,
    pub(crate) manifest: PluginManifest,
    pub(crate) pre: KindPre,
    pub(crate) spec: PluginSpec,
    pub(crate) sha256: String,
    pub(crate) wit_version: crate::WitVersion,
    pub(crate) host: Arc<HostInner>,
}

/// A loaded plugin. Every call gets a fresh instance (no state survives between calls)
/// under the spec's limits. Cheap to clone; usable from several threads.
#[derive(Clone)]
pub struct Plugin {
    pub(crate) inner: Arc<PluginInner>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.inner.name)
            .field("kind", &self.kind())
            .field("manifest", &self.inner.manifest)
            .finish_non_exhaustive()
    }
}

/// Sum of string bytes in a value returned by a plugin.
fn strings_len<'a>(items: impl IntoIterator<Item = &'a str>) -> u64 {
    items.into_iter().map(|s| s.len() as u64).sum()
}

impl Plugin {
    /// Name (the inventory's).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Which world it implements.
    pub fn kind(&self) -> PluginKind {
        match self.inner.pre {
            KindPre::Template(_) => PluginKind::Template,
            KindPre::Check(_) => PluginKind::Check,
            KindPre::Lint(_) => PluginKind::Lint,
        }
    }

    /// Its manifest.
    pub fn manifest(&self) -> &PluginManifest {
        &self.inner.manifest
    }

    /// The `rpcc:plugin` WIT version it was built against (its world's export).
    pub fn wit_version(&self) -> crate::WitVersion {
        self.inner.wit_version
    }

    /// SHA-256 of the component file (hex).
    pub fn sha256(&self) -> &str {
        &self.inner.sha256
    }

    /// The spec it was loaded with.
    pub fn spec(&self) -> &PluginSpec {
        &self.inner.spec
    }

    fn wrong_kind(&self, wanted: &'static str) -> PluginError {
        PluginError::WrongKind { plugin: self.inner.name.to_string(), actual: self.kind().as_str(), wanted }
    }

    /// A fresh store with every limit set.
    fn store(&self) -> Result<Store<HostState>, PluginError> {
        let limits = &self.inner.spec.limits;
        let timeout = limits.timeout.as_duration();
        let memory = usize::try_from(limits.memory.bytes()).unwrap_or(usize::MAX);
        let state = HostState::new(Arc::clone(&self.inner.name), self.inner.spec.grant.clone(), memory, timeout);
        let mut store = Store::new(&self.inner.host.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_fuel(limits.fuel).map_err(host_err)?;
        // Results are lifted out of the guest by generated bindings that copy every
        // string; neither fuel nor the epoch covers that copy. Wasmtime charges each
        // lifted string and list against the store's hostcall fuel *before* it
        // allocates, so a million entries aliasing one buffer stop at the cap instead of
        // costing the host a terabyte (the exact cap is checked again after lifting).
        let copy_budget = limits.max_output.bytes().saturating_add(OUTPUT_OVERHEAD);
        store.set_hostcall_fuel(usize::try_from(copy_budget).unwrap_or(usize::MAX));
        let ticks = timeout.as_nanos().div_ceil(EPOCH_TICK.as_nanos()).max(1) + 1;
        store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX));
        store.epoch_deadline_trap();
        Ok(store)
    }

    /// Turn a failed call into the error that says why.
    fn explain(&self, call: &'static str, store: &Store<HostState>, err: &wasmtime::Error) -> PluginError {
        let plugin = self.inner.name.to_string();
        let limits = &self.inner.spec.limits;
        if let Some(denied) = err.downcast_ref::<CapabilityDenied>() {
            return PluginError::Ungranted { plugin, capability: denied.0.as_str().to_owned() };
        }
        if is_copy_budget_exhausted(err) {
            let limit = limits.max_output.bytes();
            return PluginError::OutputTooLarge {
                plugin,
                call,
                size: limit.saturating_add(OUTPUT_OVERHEAD) + 1,
                limit,
            };
        }
        if let Some(wanted) = store.data().limiter.refused {
            return PluginError::MemoryLimit { plugin, call, wanted: wanted as u64, limit: limits.memory.bytes() };
        }
        match err.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => return PluginError::OutOfFuel { plugin, call, fuel: limits.fuel },
            Some(Trap::Interrupt) => {
                let limit_ms = u64::try_from(limits.timeout.as_duration().as_millis()).unwrap_or(u64::MAX);
                return PluginError::Timeout { plugin, call, limit_ms };
            }
            Some(Trap::StackOverflow) => return PluginError::StackOverflow { plugin, call },
            _ => {}
        }
        let stderr = store.data().stderr.contents();
        let printed = String::from_utf8_lossy(&stderr);
        let mut printed: String = printed.trim().chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        if printed.is_empty() {
            // A `no_std` plugin (SDK runtime) logs its panic message instead of printing it.
            if let Some(last) = store.data().logs.iter().rev().find(|l| l.level == "error") {
                printed.clone_from(&last.message);
            }
        }
        let trap = err.downcast_ref::<Trap>().map_or_else(|| format!("{err}"), ToString::to_string);
        let message = if printed.is_empty() { trap } else { format!("{trap}; it printed: {printed}") };
        PluginError::Trap { plugin, call, message }
    }

    fn cap_output(&self, call: &'static str, size: u64) -> Result<(), PluginError> {
        let limit = self.inner.spec.limits.max_output.bytes();
        if size > limit {
            return Err(PluginError::OutputTooLarge { plugin: self.inner.name.to_string(), call, size, limit });
        }
        Ok(())
    }

    pub(crate) fn describe(&self) -> Result<PluginManifest, PluginError> {
        let mut store = self.store()?;
        let result = match &self.inner.pre {
            KindPre::Template(p) => {
                p.instantiate(&mut store).and_then(|i| i.rpcc_plugin_template().call_describe(&mut store))
            }
            KindPre::Check(p) => {
                p.instantiate(&mut store).and_then(|i| i.rpcc_plugin_check().call_describe(&mut store))
            }
            KindPre::Lint(p) => p.instantiate(&mut store).and_then(|i| i.rpcc_plugin_lint().call_describe(&mut store)),
        };
        let m = result.map_err(|e| self.explain("describe", &store, &e))?;
        self.cap_output("describe", strings_len([m.name.as_str(), &m.version, &m.description]))?;
        let bad = |field: &str, v: &str| PluginError::Failed {
            plugin: self.inner.name.to_string(),
            message: format!("manifest {field} {v:?} is empty, longer than 200 bytes or has control characters"),
        };
        for (field, v) in [("name", &m.name), ("version", &m.version)] {
            if v.is_empty() || v.len() > 200 || v.chars().any(char::is_control) {
                return Err(bad(field, v));
            }
        }
        if m.description.len() > 2000 || m.description.chars().any(char::is_control) {
            return Err(bad("description", &m.description));
        }
        let mut capabilities: Vec<PluginCapability> = m
            .capabilities
            .iter()
            .map(|c| match c {
                wt::Capability::HttpGet => PluginCapability::HttpGet,
                wt::Capability::Clock => PluginCapability::Clock,
            })
            .collect();
        capabilities.sort();
        capabilities.dedup();
        Ok(PluginManifest { name: m.name, version: m.version, description: m.description, capabilities })
    }

    /// Run a template plugin for `site` on `server`; its output checked against the
    /// allow-list and value rules.
    pub fn render(&self, inventory: &Inventory, server: &Server, site: &Site) -> Result<SiteFragments, PluginError> {
        let KindPre::Template(pre) = &self.inner.pre else { return Err(self.wrong_kind("template")) };
        let site_v = site_view(site, &self.inner.spec.config);
        let server_v = server_view(inventory, server);
        let mut store = self.store()?;
        let out = pre
            .instantiate(&mut store)
            .and_then(|i| i.rpcc_plugin_template().call_render(&mut store, &site_v, &server_v))
            .map_err(|e| self.explain("render", &store, &e))?;
        let out = out.map_err(|message| PluginError::Failed {
            plugin: self.inner.name.to_string(),
            message: clean(&message, 2000),
        })?;
        self.cap_output("render", output_len(&out))?;
        self.fragments(out, &FragmentScope::for_server(server))
    }

    fn fragments(&self, out: tt::TemplateOutput, scope: &FragmentScope) -> Result<SiteFragments, PluginError> {
        let policy = &self.inner.spec.allow;
        let rejected = |message: String| PluginError::Rejected { plugin: self.inner.name.to_string(), message };
        let parse = |body: tt::FragmentBody| -> Result<Fragment, PluginError> {
            match body {
                tt::FragmentBody::Text(text) => Fragment::parse(&text, policy, scope),
                tt::FragmentBody::Directives(list) => {
                    Fragment::from_directives(tree(list).map_err(&rejected)?, policy, scope)
                }
            }
            .map_err(|e| rejected(e.to_string()))
        };
        let mut out_fragments = SiteFragments::default();
        match out {
            tt::TemplateOutput::Fragments(list) => {
                for f in list {
                    let fragment = parse(f.body)?;
                    match f.at {
                        tt::InsertionPoint::Server => {
                            fragment.check_server_level().map_err(|e| rejected(e.to_string()))?;
                            out_fragments.server.extend(fragment);
                        }
                        tt::InsertionPoint::MainLocation => {
                            if fragment.check_location_level().is_err() {
                                return Err(rejected("a main-location fragment cannot open a location".into()));
                            }
                            out_fragments.main_location.extend(fragment);
                        }
                    }
                }
            }
            tt::TemplateOutput::ServerBlock(body) => {
                let body = parse(body)?;
                body.check_server_level().map_err(|e| rejected(e.to_string()))?;
                out_fragments.server_body = Some(body);
            }
        }
        Ok(out_fragments)
    }

    /// Run a check plugin for `site` on `server`; `http` serves its `http-get`.
    pub fn check(
        &self,
        inventory: &Inventory,
        server: &Server,
        site: &Site,
        http: Arc<dyn SiteHttp>,
    ) -> Result<CheckOutcome, PluginError> {
        let KindPre::Check(pre) = &self.inner.pre else { return Err(self.wrong_kind("check")) };
        let site_v = site_view(site, &self.inner.spec.config);
        let server_v = server_view(inventory, server);
        let mut store = self.store()?;
        store.data_mut().http = Some(http);
        let out = pre
            .instantiate(&mut store)
            .and_then(|i| i.rpcc_plugin_check().call_check(&mut store, &site_v, &server_v))
            .map_err(|e| self.explain("check", &store, &e))?;
        self.cap_output("check", out.message.len() as u64)?;
        let status = match out.status {
            wt::CheckStatus::Ok => CheckStatus::Ok,
            wt::CheckStatus::Warn => CheckStatus::Warn,
            wt::CheckStatus::Fail => CheckStatus::Fail,
        };
        let logs = std::mem::take(&mut store.data_mut().logs);
        Ok(CheckOutcome { status, message: clean(&out.message, 2000), logs })
    }

    /// Run a lint plugin over a rendered generation of `server`.
    pub fn lint_generation(
        &self,
        inventory: &Inventory,
        server: &Server,
        generation: &Generation,
    ) -> Result<Vec<Finding>, PluginError> {
        self.lint(inventory, server, &generation_files(generation))
    }

    /// Run a lint plugin over one server's rendered files (path, contents).
    pub fn lint(
        &self,
        inventory: &Inventory,
        server: &Server,
        files: &[(String, String)],
    ) -> Result<Vec<Finding>, PluginError> {
        let KindPre::Lint(pre) = &self.inner.pre else { return Err(self.wrong_kind("lint")) };
        let server_v = server_view(inventory, server);
        let files: Vec<wt::RenderedFile> = files
            .iter()
            .map(|(path, contents)| wt::RenderedFile { path: path.clone(), contents: contents.clone() })
            .collect();
        let mut store = self.store()?;
        let out = pre
            .instantiate(&mut store)
            .and_then(|i| i.rpcc_plugin_lint().call_lint(&mut store, &server_v, &files))
            .map_err(|e| self.explain("lint", &store, &e))?;
        self.cap_output("lint", out.iter().map(|f| (f.file.len() + f.message.len() + 16) as u64).sum())?;
        Ok(out
            .into_iter()
            .map(|f| Finding {
                file: clean(&f.file, 512),
                line: f.line,
                severity: match f.severity {
                    wt::Severity::Info => Severity::Info,
                    wt::Severity::Warning => Severity::Warning,
                    wt::Severity::Error => Severity::Error,
                },
                message: clean(&f.message, 2000),
            })
            .collect())
    }
}

/// A generation's files as (path, text) for lint plugins.
/// The files a lint plugin sees: every rendered file except secrets (owner-only files
/// and certificates' private keys), which never enter a guest.
pub(crate) fn generation_files(generation: &Generation) -> Vec<(String, String)> {
    generation
        .files()
        .iter()
        .filter(|(path, file)| file.mode & 0o077 != 0 && !rpcc_core::certs::is_key_path(path.as_str()))
        .map(|(path, file)| (path.as_str().to_owned(), String::from_utf8_lossy(&file.bytes).into_owned()))
        .collect()
}

/// One template plugin on its own as the renderer's extension (what `rpcc plugin check`
/// and Python's `Plugin.render_site` use); a [`crate::PluginSet`] applies an inventory's.
impl SiteExtension for Plugin {
    fn site_fragments(
        &self,
        inventory: &Inventory,
        server: &Server,
        site: &Site,
    ) -> Result<SiteFragments, ExtensionError> {
        self.render(inventory, server, site).map_err(|e| Arc::new(e) as ExtensionError)
    }
}

/// True when wasmtime refused to copy more of a guest's data into the host (the
/// hostcall fuel set in `Plugin::store` ran out). Its error type is private, so it is
/// recognised by its message; a test pins that message (`tests/output_bombs.rs`).
fn is_copy_budget_exhausted(err: &wasmtime::Error) -> bool {
    err.chain().any(|e| e.to_string().contains("fuel allocated for hostcalls has been exhausted"))
}

/// Printable text, cut at `max` bytes.
fn clean(s: &str, max: usize) -> String {
    let mut out: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if out.len() > max {
        let mut cut = max;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('…');
    }
    out
}

fn output_len(out: &tt::TemplateOutput) -> u64 {
    let body_len = |b: &tt::FragmentBody| match b {
        tt::FragmentBody::Text(t) => t.len() as u64,
        tt::FragmentBody::Directives(ds) => {
            ds.iter().map(|d| 8 + d.name.len() as u64 + strings_len(d.args.iter().map(String::as_str))).sum()
        }
    };
    match out {
        tt::TemplateOutput::Fragments(fs) => fs.iter().map(|f| body_len(&f.body)).sum(),
        tt::TemplateOutput::ServerBlock(b) => body_len(b),
    }
}

/// Build a directive tree from the flat `parent`-indexed list of the WIT.
fn tree(list: Vec<tt::Directive>) -> Result<Vec<Directive>, String> {
    let n = list.len();
    if n > rpcc_core::fragment::MAX_DIRECTIVES {
        return Err(format!("{n} directives (at most {})", rpcc_core::fragment::MAX_DIRECTIVES));
    }
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut roots = Vec::new();
    for (i, d) in list.iter().enumerate() {
        match d.parent {
            None => roots.push(i),
            Some(p) => {
                let p = p as usize;
                if p >= i {
                    return Err(format!(
                        "directive {i} ({:?}) names parent {p}, which is not an earlier directive",
                        d.name
                    ));
                }
                if !list[p].block {
                    return Err(format!(
                        "directive {i} ({:?}) is inside {:?}, which is not a block",
                        d.name, list[p].name
                    ));
                }
                children[p].push(i);
            }
        }
    }
    fn build(i: usize, list: &[tt::Directive], children: &[Vec<usize>]) -> Directive {
        let d = &list[i];
        Directive {
            name: d.name.clone(),
            args: d.args.clone(),
            block: d.block.then(|| children[i].iter().map(|&c| build(c, list, children)).collect()),
        }
    }
    Ok(roots.into_iter().map(|i| build(i, &list, &children)).collect())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use rpcc_core::generation::{Generation, GenerationFile, GenerationPath};

    #[test]
    fn lint_plugins_never_see_keys_or_owner_only_files() -> Result<(), Box<dyn std::error::Error>> {
        let file = |text: &str, mode: u32| GenerationFile { bytes: Arc::from(text.as_bytes()), mode };
        let mut files = BTreeMap::new();
        files.insert(GenerationPath::parse("sites/a.example.com.conf")?, file("server {}", 0o644));
        files.insert(GenerationPath::parse("certs/a.example.com/fullchain.pem")?, file("CERT", 0o644));
        files.insert(GenerationPath::parse("certs/a.example.com/privkey.pem")?, file("KEY", 0o600));
        // A key shipped with a wrong mode is still withheld; any owner-only file is too.
        files.insert(GenerationPath::parse("certs/b.example.com/privkey.pem")?, file("KEY", 0o644));
        files.insert(GenerationPath::parse("secret.txt")?, file("S", 0o600));
        let seen: Vec<String> =
            super::generation_files(&Generation::new("g".into(), files)).into_iter().map(|(p, _)| p).collect();
        assert_eq!(seen, ["certs/a.example.com/fullchain.pem", "sites/a.example.com.conf"]);
        Ok(())
    }
}
