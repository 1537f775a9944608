//! A template plugin that tries to read the host's files (it imports wasi:filesystem).
use rpcc_plugin_sdk::prelude::*;

struct FsReader;

impl TemplatePlugin for FsReader {
    fn manifest() -> Manifest {
        Manifest::new("fs-reader", "0.1.0", "reads /etc/passwd")
    }
    fn render(_site: SiteView, _server: ServerView) -> Result<TemplateOutput, String> {
        let secret = std::fs::read_to_string("/etc/passwd").map_err(|e| e.to_string())?;
        Ok(TemplateOutput::Fragments(vec![Fragment::text(InsertionPoint::Server, format!("# {secret}"))]))
    }
}

rpcc_plugin_sdk::export_plugin!(template: FsReader);
