//! SSH command latency on a loopback fleet of real sshd, side by side in one run:
//! rpcc's pooled connection, a new russh connection per command (the legacy way), the
//! OpenSSH client with a new connection per command, and OpenSSH with ControlMaster.
//! Also 4 servers × 250 concurrent commands and memory per pooled connection.
//!
//! `cargo bench -p rpcc-ssh --bench ssh` (needs scripts/setup-host). Prints medians and
//! ratios; timings are never asserted.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rpcc_core::transport::{Argv, ExecRequest, Transport};
use rpcc_core::value::HostKeyPin;
use rpcc_ssh::{HostKeyPolicy, RetryPolicy, SshAuth, SshTarget, SshTransport, Timeouts};
use rpcc_testkit::{Fleet, TestServer};

fn target(fleet: &Fleet, s: &TestServer) -> SshTarget {
    SshTarget {
        name: s.name().to_owned(),
        address: format!("127.0.0.1:{}", s.ssh_port()),
        user: s.user().to_owned(),
        auth: SshAuth::KeyFile { path: fleet.client_key().to_path_buf(), passphrase: None },
        host_key: HostKeyPolicy::Pinned(HostKeyPin::parse(s.host_key_pin()).expect("pin")),
        timeouts: Timeouts::default(),
        max_channels: 32,
        retry: RetryPolicy::default(),
        sudo: false,
        allow_rsa_sha1: false,
    }
}

fn true_cmd() -> ExecRequest {
    ExecRequest::new(Argv::new("true", Vec::<String>::new()).expect("argv"))
}

/// 2 MiB of incompressible-looking bytes (SSH does not compress here anyway).
fn upload_blob() -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..2 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn rss_kib() -> u64 {
    rpcc_testkit::proc_status_kib("VmRSS")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[allow(clippy::print_stdout)]
fn main() -> anyhow::Result<()> {
    let quick = std::env::var("RPCC_BENCH_QUICK").is_ok();
    let (pooled_n, fresh_n, openssh_n, cm_n) = if quick { (100, 10, 5, 20) } else { (1000, 50, 30, 200) };
    let upload_n = if quick { 10 } else { 50 };
    let fleet = Fleet::start(4)?;
    let s0 = &fleet.servers()[0];
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;

    // rpcc, pooled: one connection, sequential commands.
    let pooled = rt.block_on(async {
        let t = SshTransport::new(target(&fleet, s0))?;
        t.exec(true_cmd()).await?;
        let mut v = Vec::with_capacity(pooled_n);
        for _ in 0..pooled_n {
            let start = Instant::now();
            t.exec(true_cmd()).await?;
            v.push(start.elapsed());
        }
        anyhow::Ok(median(v))
    })?;
    let pooled_upload = rt.block_on(async {
        let t = SshTransport::new(target(&fleet, s0))?;
        let cat = || ExecRequest::new(Argv::new("sh", ["-c", "cat >/dev/null"]).expect("argv")).stdin(upload_blob());
        t.exec(cat()).await?;
        let mut v = Vec::with_capacity(upload_n);
        for _ in 0..upload_n {
            let req = cat();
            let start = Instant::now();
            let out = t.exec(req).await?;
            anyhow::ensure!(out.success(), "upload failed");
            v.push(start.elapsed());
        }
        anyhow::Ok(median(v))
    })?;

    // rpcc, a new connection per command (what the legacy panel did with paramiko).
    let fresh = rt.block_on(async {
        let mut v = Vec::with_capacity(fresh_n);
        for _ in 0..fresh_n {
            let start = Instant::now();
            let t = SshTransport::new(target(&fleet, s0))?;
            t.exec(true_cmd()).await?;
            v.push(start.elapsed());
        }
        anyhow::Ok(median(v))
    })?;

    // OpenSSH client, a new connection per command.
    let mut v = Vec::with_capacity(openssh_n);
    for _ in 0..openssh_n {
        let start = Instant::now();
        let out = fleet.ssh(s0).arg("true").output()?;
        anyhow::ensure!(out.status.success(), "ssh failed: {}", String::from_utf8_lossy(&out.stderr));
        v.push(start.elapsed());
    }
    let openssh = median(v);

    // OpenSSH with ControlMaster: one master, then commands over it.
    let sock = std::env::temp_dir().join(format!("rpcc-bench-cm-{}", std::process::id()));
    let master =
        fleet.ssh(s0).args(["-M", "-N", "-o", "ControlPersist=no", "-S"]).arg(&sock).stdout(Stdio::null()).spawn()?;
    let mut master = master;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut v = Vec::with_capacity(cm_n);
    for _ in 0..cm_n {
        let start = Instant::now();
        let out = fleet.ssh(s0).arg("-S").arg(&sock).arg("true").output()?;
        anyhow::ensure!(out.status.success(), "ssh -S failed: {}", String::from_utf8_lossy(&out.stderr));
        v.push(start.elapsed());
    }
    let control_master = median(v);
    // A 2 MiB upload (a 600-site generation's archive) into `cat`, over the master.
    let blob = upload_blob();
    let mut v = Vec::with_capacity(upload_n);
    for _ in 0..upload_n {
        let start = Instant::now();
        let mut child = fleet
            .ssh(s0)
            .arg("-S")
            .arg(&sock)
            .arg("cat >/dev/null")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()?;
        std::io::Write::write_all(&mut child.stdin.take().ok_or_else(|| anyhow::anyhow!("stdin"))?, &blob)?;
        anyhow::ensure!(child.wait()?.success(), "ssh -S upload failed");
        v.push(start.elapsed());
    }
    let cm_upload = median(v);
    let _ = Command::new("ssh").arg("-S").arg(&sock).args(["-O", "exit", "x"]).output();
    let _ = master.kill();
    let _ = master.wait();

    // 4 servers × 250 commands at once over the pools.
    let per_server = if quick { 50 } else { 250 };
    let (concurrent_wall, total) = rt.block_on(async {
        let transports: Vec<Arc<SshTransport>> = fleet
            .servers()
            .iter()
            .map(|s| SshTransport::new(target(&fleet, s)).map(Arc::new))
            .collect::<Result<_, _>>()?;
        for t in &transports {
            t.exec(true_cmd()).await?;
        }
        let start = Instant::now();
        let mut tasks = Vec::new();
        for t in &transports {
            for _ in 0..per_server {
                let t = Arc::clone(t);
                tasks.push(tokio::spawn(async move { t.exec(true_cmd()).await }));
            }
        }
        let n = tasks.len();
        for task in tasks {
            task.await??;
        }
        anyhow::Ok((start.elapsed(), n))
    })?;

    // Memory per pooled, authenticated connection.
    let conns = if quick { 8 } else { 32 };
    let per_conn_kib = rt.block_on(async {
        let before = rss_kib();
        let mut held = Vec::new();
        for i in 0..conns {
            let t = SshTransport::new(target(&fleet, &fleet.servers()[i % 4]))?;
            t.exec(true_cmd()).await?;
            held.push(t);
        }
        let after = rss_kib();
        drop(held);
        anyhow::Ok((after.saturating_sub(before)) as f64 / conns as f64)
    })?;

    println!("ssh benchmark: loopback, real sshd (OpenSSH), `true` per command, medians, 2 cores");
    println!("  rpcc pooled (1 connection)          {:>8.3} ms/command  ({pooled_n} commands)", ms(pooled));
    println!("  OpenSSH ControlMaster               {:>8.3} ms/command  ({cm_n} commands)", ms(control_master));
    println!("  rpcc new connection per command     {:>8.3} ms/command  ({fresh_n} commands)", ms(fresh));
    println!("  OpenSSH new connection per command  {:>8.3} ms/command  ({openssh_n} commands)", ms(openssh));
    println!("  pooled vs ControlMaster: {:.2}x the latency", pooled.as_secs_f64() / control_master.as_secs_f64());
    println!(
        "  2 MiB upload into cat: rpcc pooled {:.1} ms, OpenSSH ControlMaster {:.1} ms ({:.2}x; {upload_n} each)",
        ms(pooled_upload),
        ms(cm_upload),
        pooled_upload.as_secs_f64() / cm_upload.as_secs_f64()
    );
    println!(
        "  pooled vs a new russh connection per command: {:.0}x faster",
        fresh.as_secs_f64() / pooled.as_secs_f64()
    );
    println!(
        "  pooled vs a new OpenSSH connection per command: {:.0}x faster",
        openssh.as_secs_f64() / pooled.as_secs_f64()
    );
    println!(
        "  4 servers x {per_server} concurrent: {total} commands in {:.0} ms ({:.0} commands/s)",
        ms(concurrent_wall),
        total as f64 / concurrent_wall.as_secs_f64()
    );
    println!("  memory per pooled connection: {per_conn_kib:.0} KiB ({conns} connections, RSS delta)");
    Ok(())
}
