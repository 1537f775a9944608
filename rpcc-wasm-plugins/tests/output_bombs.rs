//! Output bombs: results that are small in the guest's memory and huge once copied
//! into the host (a million list entries all pointing at one 1 MiB buffer; ten million
//! empty strings). Fuel and the epoch deadline do not cover the host's copy, so the
//! host must refuse such output before it copies it: the process survives and its
//! peak memory grows by no more than the plugin's memory limit (the guest's own pages
//! live in this process) plus its output cap plus 16 MiB.
//!
//! One test function, run alone in its process (nextest), so the peak-RSS reading
//! belongs to it.

mod common;

use common::{dir, inventory, limits};
use rpcc_wasm_plugins::{PluginError, PluginHost, PluginSpec};

const MIB: u64 = 1 << 20;

/// Reset this process's peak RSS (`VmHWM`) to its current RSS.
fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").expect("reset VmHWM through /proc/self/clear_refs");
}

fn kib(field: &str) -> u64 {
    rpcc_testkit::proc_status_kib(field)
}

#[test]
fn output_bombs_are_refused_before_the_host_copies_them() {
    let host = PluginHost::new().expect("host");
    let inv = inventory();
    // (mode, entries, memory limit): the guest needs room to build its bomb. 4 million
    // empty strings stay under wasmtime's own default copy budget (128 MiB), so only
    // the plugin's output cap stops them.
    let cases = [
        ("aliased", "1000000", "64m", 64 * MIB),
        ("empty", "10000000", "256m", 256 * MIB),
        ("empty", "4000000", "128m", 128 * MIB),
    ];
    for (mode, count, memory, memory_bytes) in cases {
        let spec = PluginSpec::from_file(dir().join("nostd_hostile.wasm"))
            .limits(limits(|e| {
                e.memory = Some(memory);
                e.fuel = Some(5_000_000_000);
                e.max_output = Some("1m");
            }))
            .config("mode", mode)
            .config("count", count);
        let plugin = host.load(&spec).expect("the bomb loads (it explodes only when called)");
        let before = kib("VmRSS");
        reset_peak();
        let err = plugin.render(&inv, &inv.servers[0], &inv.sites[0]).unwrap_err();
        let peak = kib("VmHWM");
        assert!(
            matches!(&err, PluginError::OutputTooLarge { plugin, call: "render", limit, .. }
                if plugin == "nostd_hostile" && *limit == MIB),
            "{mode}: {err}"
        );
        let growth = peak.saturating_sub(before) * 1024;
        let allowed = memory_bytes + MIB + 16 * MIB;
        eprintln!("{mode}: {count} entries, peak RSS growth {} MiB (allowed {} MiB)", growth / MIB, allowed / MIB);
        assert!(growth <= allowed, "{mode}: RSS grew by {} MiB, more than {} MiB", growth / MIB, allowed / MIB);
    }

    // The host goes on: the same plugin with ordinary output still renders.
    let fine = host.load(&PluginSpec::from_file(dir().join("nostd_hostile.wasm")).config("mode", "fine")).unwrap();
    let out = fine.render(&inv, &inv.servers[0], &inv.sites[0]).expect("ordinary output");
    assert_eq!(out.server.to_nginx(0), "add_header X-No-Std yes always;\n");
}
