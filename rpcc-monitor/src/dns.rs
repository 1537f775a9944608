//! [`DnsProber`]: do a site's names resolve to the addresses of the servers that serve
//! it? A name that does not resolve, an answer with a foreign address, or a resolver
//! that does not answer is a mismatch naming the site and the name.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::Resolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;

/// One site's DNS check.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct DnsReport {
    /// Site domain.
    pub site: String,
    /// Per name: the addresses found, or why none.
    pub names: Vec<(String, Result<Vec<IpAddr>, String>)>,
    /// `None` when every name resolves only to serving servers; else what is wrong.
    pub problem: Option<String>,
}

/// Resolves site names through the system resolver or a given name server.
pub struct DnsProber {
    resolver: Resolver<TokioRuntimeProvider>,
}

impl std::fmt::Debug for DnsProber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DnsProber")
    }
}

impl DnsProber {
    /// The system's resolver (`/etc/resolv.conf`).
    pub fn system(timeout: Duration) -> Result<Self, String> {
        let mut b = Resolver::builder_tokio().map_err(|e| format!("resolver: {e}"))?;
        b.options_mut().timeout = timeout;
        b.options_mut().attempts = 1;
        Ok(Self { resolver: b.build().map_err(|e| format!("resolver: {e}"))? })
    }

    /// A resolver asking only `server` (UDP, then TCP), no caching surprises.
    pub fn with_nameserver(server: SocketAddr, timeout: Duration) -> Result<Self, String> {
        let mut udp = ConnectionConfig::udp();
        udp.port = server.port();
        let mut tcp = ConnectionConfig::tcp();
        tcp.port = server.port();
        let ns = NameServerConfig::new(server.ip(), true, vec![udp, tcp]);
        let mut b = Resolver::builder_with_config(
            ResolverConfig::from_parts(None, vec![], vec![ns]),
            TokioRuntimeProvider::default(),
        );
        b.options_mut().timeout = timeout;
        b.options_mut().attempts = 1;
        b.options_mut().cache_size = 0;
        Ok(Self { resolver: b.build().map_err(|e| format!("resolver: {e}"))? })
    }

    /// Check `names` of `site` against the serving servers' `expected` addresses.
    pub async fn check(&self, site: &str, names: &[String], expected: &[IpAddr]) -> DnsReport {
        let allowed: BTreeSet<IpAddr> = expected.iter().copied().collect();
        let mut out = Vec::with_capacity(names.len());
        let mut problems = Vec::new();
        for name in names {
            let fqdn = if name.ends_with('.') { name.clone() } else { format!("{name}.") };
            match self.resolver.lookup_ip(fqdn.as_str()).await {
                Ok(found) => {
                    let ips: Vec<IpAddr> = found.iter().collect();
                    let foreign: Vec<String> =
                        ips.iter().filter(|ip| !allowed.contains(ip)).map(ToString::to_string).collect();
                    if !foreign.is_empty() {
                        problems.push(format!("{name} resolves to {} (not a server of this site)", foreign.join(", ")));
                    }
                    out.push((name.clone(), Ok(ips)));
                }
                Err(e) => {
                    let why = e.to_string();
                    problems.push(format!("{name} does not resolve: {why}"));
                    out.push((name.clone(), Err(why)));
                }
            }
        }
        let problem = (!problems.is_empty()).then(|| problems.join("; "));
        DnsReport { site: site.to_owned(), names: out, problem }
    }
}
