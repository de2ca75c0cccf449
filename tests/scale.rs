//! The short round of `scale_bench` (`--smoke`: 100 instances in worker processes, 20
//! groups, a watcher, discovery of services of 10 and 100, one crash failover): it runs
//! to the end against a real nats-server and prints every figure and every target.
//! The full run is `target/release/scale_bench --instances 10000` (docs/operations.md).

use std::time::Duration;

use aegis_examples::process::run_to_exit;

#[test]
fn the_scale_bench_smoke_round_prints_every_figure() {
    let run = run_to_exit("scale_bench", &["--smoke"], Duration::from_secs(240));
    assert!(
        run.success,
        "scale_bench failed:\n{}\n{}",
        run.stdout, run.stderr
    );
    for figure in [
        "instances started in",
        "memory per idle instance:",
        "nats-server:",
        "registry writes",
        "election writes",
        "a watching process at rest:",
        "    10 instances: cold p50",
        "   100 instances: cold p50",
        "raw KV read of the same keys",
        "round-robin pick",
        "SIGKILL of a leader → new leader elected after",
        "watch idle CPU",
        "warm selection ≤ 1 µs",
        "crash failover in one of 20 groups",
    ] {
        assert!(
            run.stdout.contains(figure),
            "no {figure:?} in the output:\n{}",
            run.stdout
        );
    }
}
