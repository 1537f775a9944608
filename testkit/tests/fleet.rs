//! The kit against real sshd + nginx: servers start, answer over SSH with the OpenSSH
//! client (strict host-key checking), run `nginx -t`, and stop every process on drop.

use std::path::Path;
use std::time::{Duration, Instant};

use rpcc_testkit::{FaultMode, FaultProxy, Fleet};

fn alive(pid: u32) -> bool {
    // A zombie still has a /proc entry; read its state.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.split_whitespace().nth(2).is_none_or(|state| state != "Z"))
        .unwrap_or(false)
}

fn wait_dead(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn two_servers_run_nginx_t_over_ssh_and_stop_on_drop() -> anyhow::Result<()> {
    let fleet = Fleet::start(2)?;
    assert_eq!(fleet.servers().len(), 2);
    let mut pids = Vec::new();
    for server in fleet.servers() {
        assert!(server.host_key_pin().starts_with("ssh-ed25519 SHA256:"));
        let out = fleet.ssh(server).args(server.nginx_test_argv()).output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "nginx -t over ssh failed on {}: {stderr}", server.name());
        assert!(stderr.contains("syntax is ok") && stderr.contains("test is successful"), "{stderr}");

        // The remote user is the kit's user, and its nginx answers HTTP.
        let who = fleet.ssh(server).arg("id -un").output()?;
        assert_eq!(String::from_utf8_lossy(&who.stdout).trim(), server.user());
        let body = http_get(server.http_port(), "/__testkit")?;
        assert!(body.starts_with("HTTP/1.1 200") && body.ends_with("ok\n"), "{body}");
        pids.push(server.nginx_pid());
        pids.push(server.sshd_pid());
    }
    // Every server has its own ports and host key.
    let s = fleet.servers();
    assert_ne!(s[0].ssh_port(), s[1].ssh_port());
    assert_ne!(s[0].host_key_pin(), s[1].host_key_pin());

    let dir = fleet.client_key().parent().map(Path::to_path_buf);
    drop(fleet);
    for pid in pids {
        assert!(wait_dead(pid), "process {pid} still running after the fleet dropped");
    }
    assert!(!dir.is_some_and(|d| d.exists()), "fleet directory left behind");
    Ok(())
}

#[test]
fn a_wrong_host_key_is_refused_by_the_openssh_client() -> anyhow::Result<()> {
    let fleet = Fleet::start(2)?;
    let (a, b) = (&fleet.servers()[0], &fleet.servers()[1]);
    // Connect to server b's port while expecting server a's key: the client must refuse.
    let out = fleet.ssh_via(a, b.ssh_port()).arg("true").output()?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("HOST IDENTIFICATION HAS CHANGED") || stderr.contains("Host key verification failed"),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn processes_are_stopped_when_a_test_panics() -> anyhow::Result<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    let result = std::thread::spawn(move || {
        let fleet = Fleet::start(1).expect("fleet starts");
        let s = &fleet.servers()[0];
        tx.send((s.nginx_pid(), s.sshd_pid())).expect("send pids");
        panic!("a failing test");
    })
    .join();
    assert!(result.is_err(), "the thread panicked");
    let (nginx, sshd) = rx.recv()?;
    assert!(wait_dead(nginx), "nginx {nginx} survived the panic");
    assert!(wait_dead(sshd), "sshd {sshd} survived the panic");
    Ok(())
}

#[test]
fn fault_proxy_forwards_then_cut_makes_the_client_fail() -> anyhow::Result<()> {
    let fleet = Fleet::start(1)?;
    let server = &fleet.servers()[0];
    let proxy = FaultProxy::start(([127, 0, 0, 1], server.ssh_port()).into())?;

    let ok = fleet.ssh_via(server, proxy.port()).arg("echo through-proxy").output()?;
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert_eq!(String::from_utf8_lossy(&ok.stdout).trim(), "through-proxy");
    assert!(proxy.bytes_forwarded() > 1000);

    // Cut after 500 bytes: the SSH handshake cannot complete.
    proxy.set_mode(FaultMode::CutAfter(500));
    let cut = fleet.ssh_via(server, proxy.port()).arg("echo never").output()?;
    assert!(!cut.status.success());
    assert!(!String::from_utf8_lossy(&cut.stdout).contains("never"));

    // Reset: refused at once.
    proxy.set_mode(FaultMode::Reset);
    let reset = fleet.ssh_via(server, proxy.port()).arg("true").output()?;
    assert!(!reset.status.success());
    let stderr = String::from_utf8_lossy(&reset.stderr);
    assert!(stderr.contains("reset") || stderr.contains("closed") || stderr.contains("Connection"), "{stderr}");

    // Stall: the client's own timeout fires; the proxy holds the connection open.
    proxy.set_mode(FaultMode::Stall);
    let started = Instant::now();
    let stalled = fleet.ssh_via(server, proxy.port()).args(["-o", "ConnectTimeout=2", "true"]).output()?;
    assert!(!stalled.status.success());
    assert!(started.elapsed() >= Duration::from_secs(2));

    // Back to forwarding: works again.
    proxy.set_mode(FaultMode::Forward);
    let again = fleet.ssh_via(server, proxy.port()).arg("true").output()?;
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert!(proxy.accepted() >= 5);
    Ok(())
}

#[test]
fn cut_mid_command_ends_the_session() -> anyhow::Result<()> {
    let fleet = Fleet::start(1)?;
    let server = &fleet.servers()[0];
    let proxy = FaultProxy::start(([127, 0, 0, 1], server.ssh_port()).into())?;
    let child = fleet
        .ssh_via(server, proxy.port())
        .arg("echo started; sleep 30; echo finished")
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(1500));
    proxy.set_mode(FaultMode::CutAfter(0));
    let started = Instant::now();
    let out = child.wait_with_output()?;
    assert!(started.elapsed() < Duration::from_secs(20), "client did not notice the cut");
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("finished"), "{stdout}");
    Ok(())
}

fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}
