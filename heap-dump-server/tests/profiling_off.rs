//! The example service (no `malloc_conf` symbol) with profiling off by its
//! environment: it says once how to turn it on, and `dump` answers that
//! error instead of an empty profile; `stats` still answers.

use testkit::service::ExampleService;

#[test]
fn profiling_off_is_logged_once_and_dump_answers_the_fix() {
    let service = ExampleService::spawn("hds-prof-off", Some("prof:false"));
    let reply = service.command("dump");
    assert!(
        reply.starts_with("error: jemalloc heap profiling is off (opt.prof is false): "),
        "{reply:?}"
    );
    assert_eq!(reply.lines().count(), 1, "{reply:?}");
    for fix in [
        "MALLOC_CONF=prof:true,prof_active:true",
        "_RJEM_MALLOC_CONF=prof:true,prof_active:true",
        "malloc_conf symbol",
    ] {
        assert!(reply.contains(fix), "{fix} missing: {reply}");
    }
    // Asked again: the same answer, and still one log line.
    assert_eq!(service.command("dump"), reply);

    let stats: serde_json::Value = serde_json::from_str(&service.command("stats")).unwrap();
    assert_eq!(stats["profiling"]["enabled"], false, "{stats}");
    assert_eq!(stats["profiling"]["active"], false, "{stats}");

    let log = service.log();
    let told: Vec<_> = log
        .lines()
        .filter(|l| l.contains("jemalloc heap profiling is off"))
        .collect();
    assert_eq!(told.len(), 1, "{log}");
    assert!(
        told[0].contains("WARN") && told[0].contains("MALLOC_CONF=prof:true,prof_active:true"),
        "{log}"
    );
}

#[test]
fn profiling_on_by_the_environment_serves_profiles() {
    let service = ExampleService::spawn(
        "hds-prof-on",
        Some("prof:true,prof_active:true,lg_prof_sample:16"),
    );
    let dump = testkit::demo::ask(&service.socket_path(), "dump").unwrap();
    let profile = testkit::pprof::decode(&dump).unwrap_or_else(|e| {
        panic!(
            "{e:#}: {}\n{}",
            String::from_utf8_lossy(&dump),
            service.log()
        )
    });
    assert!(profile.samples > 0, "no samples");
    let log = service.log();
    assert!(log.contains("jemalloc heap profiling is active"), "{log}");
    assert!(!log.contains("profiling is off"), "{log}");
}
