//! The test fleet and the renderer together: the kit's inventory validates, each
//! server's tree is rendered for its own prefix and ports, shipped over real SSH as
//! bytes (tar over stdin), and the server's own nginx accepts it with `nginx -t`.

use std::io::Write;
use std::process::Stdio;

use rpcc::core::generation::Renderer;
use rpcc::core::model::Inventory;
use rpcc::nginx::{NginxRenderer, RenderOptions};
use rpcc_testkit::Fleet;

#[test]
fn fleet_inventory_renders_and_passes_nginx_t_on_each_server() -> anyhow::Result<()> {
    let fleet = Fleet::start(2)?;
    let mut toml = fleet.inventory_servers_toml();
    // Each server gets its own logs, pid and loopback ports, as a real server would.
    for s in fleet.servers() {
        let prefix = s.nginx_prefix().display().to_string();
        toml = toml.replace(
            &format!("managed_root = \"{prefix}/rpcc\", reload = \"signal\""),
            &format!(
                "managed_root = \"{prefix}/rpcc\", reload = \"signal\", user = \"\", log_dir = \"{prefix}/logs\", \
                 pid = \"{prefix}/logs/rendered.pid\", listen_http = \"127.0.0.1:{}\", listen_https = \"127.0.0.1:{}\"",
                s.http_port() + 1,
                s.http_port() + 2
            ),
        );
    }
    toml.push_str(
        "\n[[sites]]\ndomain = \"app.test.example\"\ngroup = \"all\"\nupstream = { backends = [\"127.0.0.1:9\"] }\ntls = { mode = \"off\" }\nwebsocket = true\n",
    );
    let inv = Inventory::from_toml_str(&toml).map_err(|e| anyhow::anyhow!("{e}\n{toml}"))?;
    assert_eq!(inv.servers.len(), 2);
    assert_eq!(inv.servers[0].host_key.as_ref().map(|k| k.as_str()), Some(fleet.servers()[0].host_key_pin()));

    let renderer = NginxRenderer::new(RenderOptions::default())?;
    for (server, test_server) in inv.servers.iter().zip(fleet.servers()) {
        let generation = renderer.render(&inv, server)?;
        let dir = format!("{}/generations/{}", server.nginx.managed_root, generation.id());
        // Ship the tree as one tar stream over stdin; files never go through `echo`.
        let tar = tar_of(&generation)?;
        let mut child = fleet
            .ssh(test_server)
            .arg(format!("mkdir -p '{dir}' && tar -x -C '{dir}'"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        child.stdin.take().expect("stdin").write_all(&tar)?;
        let out = child.wait_with_output()?;
        assert!(out.status.success(), "upload failed: {}", String::from_utf8_lossy(&out.stderr));

        let check = fleet.ssh(test_server).arg(format!("/usr/sbin/nginx -t -c '{dir}/nginx.conf'")).output()?;
        let stderr = String::from_utf8_lossy(&check.stderr);
        assert!(check.status.success() && stderr.contains("test is successful"), "{}: {stderr}", server.name);
    }
    Ok(())
}

/// A tar archive of a generation, built with the system tar from a temp copy.
fn tar_of(generation: &rpcc::core::generation::Generation) -> anyhow::Result<Vec<u8>> {
    let tmp = tempfile::tempdir()?;
    for (path, file) in generation.files() {
        let target = tmp.path().join(path.as_str());
        std::fs::create_dir_all(target.parent().expect("parent"))?;
        std::fs::write(&target, &file.bytes)?;
    }
    let out = std::process::Command::new("tar").args(["-c", "-C"]).arg(tmp.path()).arg(".").output()?;
    anyhow::ensure!(out.status.success(), "tar failed");
    Ok(out.stdout)
}
