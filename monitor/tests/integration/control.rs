//! `memory-monitor dump` and `memory-monitor spool list|cat` (the real
//! binary) against the real monitor: a manual dump stored in Garage and
//! alerted with its note, the manual cooldown, no target, no monitor, and a
//! dump fetched from the spool while the store is unreachable, then answered
//! with where it went once a monitor stored it.

use std::collections::HashMap;
use std::process::{Command, Output};
use std::time::Duration;

use testkit::logs;
use testkit::monitor::{Monitor, storeless_env};
use testkit::rig::{Rig, steady};
use testkit::slack::SlackStandIn;

/// Runs `memory-monitor <args>` with exactly the monitor's environment.
fn run(args: &[&str], env: &HashMap<String, String>) -> Output {
    Command::new(testkit::monitor::binary())
        .args(args)
        .env_clear()
        .envs(env)
        .output()
        .expect("memory-monitor runs")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_manual_dump_is_stored_and_alerted_with_its_note_and_a_second_is_cooled_down() {
    let rig = Rig::new(steady("mm-manual", 32));
    let slack = SlackStandIn::start();
    let slack_url = slack.url();
    let env = rig.env(&[
        ("SLACK_API_TOKEN", "xoxb-test-token"),
        ("SLACK_API_URL", &slack_url),
        ("ENVIRONMENT", "staging"),
        ("NETWORK", "testnet"),
    ]);
    let mut monitor = Monitor::start(&env);
    // After the baseline, so no capture is in flight when asking.
    rig.wait_for_keys("baseline", 1, Duration::from_secs(30), &monitor);
    monitor.wait_for(&[logs::CONTROL_LISTENING], 1, Duration::from_secs(5));

    let out = run(&["dump", "--note", "suspected leak"], &env);
    let (key, stderr) = text(&out);
    assert!(
        out.status.success(),
        "dump failed: {stderr}\nlog:\n{}",
        monitor.logs().join("\n")
    );
    assert!(
        key.starts_with("it/pod-a-") && key.ends_with("-manual.pprof"),
        "{key}"
    );

    // At once: refused by the manual cooldown, saying how long to wait.
    let again = run(&["dump"], &env);
    let (stdout, stderr) = text(&again);
    assert_eq!(again.status.code(), Some(75), "{stdout} {stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("at least 10s apart") && stderr.contains("try again in"),
        "{stderr}"
    );

    rig.wait_for_all(
        std::slice::from_ref(&key),
        Duration::from_secs(30),
        &monitor,
    );
    let (body, meta) = rig.object(&key);
    testkit::pprof::decode(&body).expect("the manual dump is a gzipped pprof");
    assert_eq!(
        meta.get("reason").map(String::as_str),
        Some("manual"),
        "{meta:?}"
    );
    assert_eq!(
        meta.get("trigger").map(String::as_str),
        Some("manual"),
        "{meta:?}"
    );
    assert_eq!(
        meta.get("note").map(String::as_str),
        Some("suspected leak"),
        "{meta:?}"
    );

    let alert = slack
        .wait_for_message("suspected leak", Duration::from_secs(30))
        .unwrap_or_else(|| {
            panic!(
                "no alert with the note; log:\n{}",
                monitor.logs().join("\n")
            )
        });
    assert!(alert.raw.contains(&key), "{}", alert.raw);
    assert!(alert.raw.contains("Heap dump asked for"), "{}", alert.raw);
    assert_eq!(monitor.matching(&[logs::MANUAL_REFUSED]).len(), 1);
    monitor.stop(Duration::from_secs(10));
}

#[test]
fn without_a_target_or_a_monitor_the_command_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let env = storeless_env("mm-nobody-here", dir.path());
    // No monitor yet: the socket is not there.
    let out = run(&["dump", "--note", "x"], &env);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("is the monitor running in this container? it listens on"),
        "{stderr}"
    );
    assert!(stderr.contains("control/monitor.sock"), "{stderr}");

    let mut monitor = Monitor::start(&env);
    monitor.wait_for(&[logs::CONTROL_LISTENING], 1, Duration::from_secs(20));
    let out = run(&["dump"], &env);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout} {stderr}");
    assert!(
        stderr.contains("no target") && stderr.contains("mm-nobody-here"),
        "{stderr}"
    );
    monitor.stop(Duration::from_secs(10));

    // Stopped: its socket is gone with it.
    let out = run(&["dump"], &env);
    assert!(
        text(&out).1.contains("is the monitor running"),
        "{:?}",
        text(&out)
    );
}

#[test]
fn a_dump_the_store_cannot_take_is_fetched_from_the_spool_then_said_to_be_stored() {
    let rig = Rig::new(steady("mm-spool-cat", 32));
    // Garage is up but this monitor's endpoint is a closed port.
    let unreachable = rig.env(&[("AWS_ENDPOINT_URL", "http://127.0.0.1:9")]);
    let mut first = Monitor::start(&unreachable);
    first.wait_for(
        &[logs::DUMP_CAPTURED, logs::REASON_BASELINE],
        1,
        Duration::from_secs(30),
    );
    first.wait_for(&[logs::CONTROL_LISTENING], 1, Duration::from_secs(5));
    let out = run(&["dump", "--note", "store down"], &unreachable);
    let (key, stderr) = text(&out);
    assert!(
        out.status.success(),
        "{stderr}\nlog:\n{}",
        first.logs().join("\n")
    );
    first.wait_for(&[logs::UPLOAD_FAILED, &key], 1, Duration::from_secs(20));

    // The failed attempt is noted in the record beside the log line.
    let deadline = std::time::Instant::now() + testkit::patience::stretch(Duration::from_secs(5));
    let listed = loop {
        let list = run(&["spool", "list"], &unreachable);
        let (listed, stderr) = text(&list);
        assert!(list.status.success(), "{stderr}");
        if listed.contains("upload failed") || std::time::Instant::now() > deadline {
            break listed;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!("memory-monitor spool list:\n{listed}");
    assert!(listed.contains("upload failed"), "{listed}");
    let line = listed
        .lines()
        .find(|l| l.ends_with(&key) || l.contains(&format!("{key} ")))
        .unwrap_or_else(|| panic!("{key} not listed:\n{listed}"));
    assert!(line.contains(" manual "), "{line}");
    let id = line.split_whitespace().next().unwrap().to_owned();
    assert!(listed.lines().any(|l| l.contains(" baseline ")), "{listed}");

    let cat = run(&["spool", "cat", &id], &unreachable);
    assert!(cat.status.success(), "{}", text(&cat).1);
    testkit::pprof::decode(&cat.stdout).expect("spool cat yields a gzipped pprof");
    // By key too.
    let by_key = run(&["spool", "cat", &key], &unreachable);
    assert_eq!(by_key.stdout, cat.stdout);

    let unknown = run(&["spool", "cat", "no-such-dump"], &unreachable);
    let (_, said) = text(&unknown);
    assert_eq!(unknown.status.code(), Some(1), "{said}");
    assert!(
        said.contains("waiting there:") && said.contains(&id),
        "{said}"
    );
    first.stop(Duration::from_secs(10));

    // A monitor that reaches the store uploads the leftovers.
    let env = rig.env(&[]);
    let mut second = Monitor::start(&env);
    rig.wait_for_all(std::slice::from_ref(&key), Duration::from_secs(30), &second);
    let bucket = rig.garage.bucket().to_owned();
    let stored = testkit::patience::stretch(Duration::from_secs(10));
    let deadline = std::time::Instant::now() + stored;
    let said = loop {
        let cat = run(&["spool", "cat", &id], &env);
        let (_, said) = text(&cat);
        if !cat.status.success() || std::time::Instant::now() > deadline {
            assert_eq!(cat.status.code(), Some(1), "{said}");
            break said;
        }
        // Stored, not yet removed from the spool.
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        said.contains(&format!("stored as s3://{bucket}/{key} at ")),
        "{said}"
    );
    let (listed, _) = text(&run(&["spool", "list"], &env));
    assert!(listed.contains("recently stored"), "{listed}");
    second.stop(Duration::from_secs(10));
}

#[test]
fn spool_cat_refuses_to_write_a_profile_to_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let env = storeless_env("mm-tty", dir.path());
    std::fs::create_dir_all(&env["SPOOL_DIR"]).unwrap();
    // `script` gives the command a pseudo-terminal as stdout (util-linux).
    let command = format!("{} spool cat some-id", testkit::monitor::binary().display());
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env_clear()
        .envs(&env)
        .output()
        .expect("script (util-linux) runs");
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("refusing to write a gzipped profile to a terminal: redirect it"),
        "{said}"
    );
}
