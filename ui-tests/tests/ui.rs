//! Compile-fail and compile-pass cases of every Aegis macro.
//!
//! Each case is a small program; a fail case has a reviewed `.stderr` beside it. Refresh
//! them after an intended change with `TRYBUILD=overwrite cargo test -p aegis-ui-tests`,
//! then read the diff.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    for attribute in [
        "service",
        "rpc",
        "exclusive_rpc",
        "subscribe",
        "command",
        "schedule",
        "on_start",
        "domain_event",
    ] {
        cases.compile_fail(format!("{attribute}/fail/*.rs"));
    }
    cases.pass("service/pass/*.rs");
}
