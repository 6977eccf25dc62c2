//! The monitor against a service built on the heap-dump-server crate (the
//! crate's `minimal-service` example, profiling on by `MALLOC_CONF`): its
//! dump captured, symbolized from the service's binary and stored in Garage.

use std::time::Duration;

use testkit::logs;
use testkit::monitor::{Monitor, base_env};
use testkit::pprof;
use testkit::rig::Bucket;
use testkit::service::ExampleService;

/// The example's allocating function.
const WORK_FN: &str = "the_services_own_work";

#[test]
fn a_dump_from_a_crate_service_is_stored_symbolized() {
    let bucket = Bucket::start();
    let service = ExampleService::spawn(
        "mm-crate-svc",
        Some("prof:true,prof_active:true,lg_prof_sample:16"),
    );
    // The crate serves addresses only (no `symbolize` feature).
    let dump = testkit::demo::ask(&service.socket_path(), "dump").expect("dump");
    let raw = pprof::decode(&dump).expect("the service's answer is a pprof");
    assert!(raw.samples > 0, "no samples");
    assert!(
        !raw.has_function(WORK_FN),
        "served symbolized: {:?}",
        raw.functions
    );

    let spool = tempfile::tempdir().expect("spool dir");
    let mut env = base_env(
        service.name(),
        service.socket_dir(),
        &spool.path().join("spool"),
    );
    env.extend(bucket.garage.monitor_env());
    let monitor = Monitor::start(&env);
    let key = bucket
        .wait_for_reason("baseline", 1, Duration::from_secs(30), &monitor, &|| {
            format!("service log:\n{}", service.log())
        })
        .remove(0);
    let (body, _) = bucket.object(&key);
    let stored = pprof::decode(&body).expect("the stored dump is a pprof");
    assert!(
        stored.has_function(WORK_FN),
        "{WORK_FN} missing from the stored dump: {:?}",
        stored.functions
    );
    assert!(monitor.matching(&[logs::PANICKED]).is_empty());
}
