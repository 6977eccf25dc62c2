//! `memory-monitor diff` and `memory-monitor top` (the real binary) on the
//! dumps the real monitor stored in Garage from the leaking demo target:
//! from local files and from `s3://` URIs, and their errors.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use testkit::logs;
use testkit::monitor::Monitor;
use testkit::rig::{Rig, steady};

/// Runs `memory-monitor <args>` with `env` added.
fn run(args: &[&str], env: &[(String, String)]) -> Output {
    Command::new(testkit::monitor::binary())
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("memory-monitor runs")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The first row of the function table (the line after its header).
fn top_row(stdout: &str) -> &str {
    let mut lines = stdout
        .lines()
        .skip_while(|l| !l.trim_end().ends_with("function"));
    lines.next();
    lines
        .next()
        .unwrap_or_else(|| panic!("no table in:\n{stdout}"))
}

#[test]
fn diff_and_top_name_the_leaking_function_from_files_and_from_s3() {
    let rig = Rig::new(steady("mm-diff-cli", 32));
    let mut monitor = Monitor::start(&rig.env(&[("DUMP_COOLDOWN", "60s")]));
    let baseline = rig
        .wait_for_keys("baseline", 1, Duration::from_secs(30), &monitor)
        .remove(0);
    monitor.wait_for(&[logs::BASELINE_SET], 1, Duration::from_secs(20));
    for _ in 0..4 {
        rig.demo.leak(8);
        std::thread::sleep(Duration::from_millis(400));
    }
    let leak = rig
        .wait_for_keys("slow-leak", 1, Duration::from_secs(30), &monitor)
        .remove(0);
    monitor.stop(Duration::from_secs(10));

    let env = rig.garage.monitor_env();
    let bucket = rig.garage.bucket().to_owned();
    let uri = |key: &str| format!("s3://{bucket}/{key}");
    let dir = tempfile::tempdir().unwrap();
    let base_file = dir.path().join("base.pprof");
    let leak_file = dir.path().join("leak.pprof");
    std::fs::write(&base_file, rig.object(&baseline).0).unwrap();
    std::fs::write(&leak_file, rig.object(&leak).0).unwrap();
    let path = |p: &Path| p.display().to_string();

    let from_files = run(&["diff", &path(&base_file), &path(&leak_file)], &[]);
    let from_s3 = run(&["diff", &uri(&baseline), &uri(&leak), "--top", "5"], &env);
    for out in [&from_files, &from_s3] {
        let (stdout, stderr) = text(out);
        assert!(out.status.success(), "{stderr}\n{stdout}");
        assert!(stdout.starts_with("Growth since the baseline"), "{stdout}");
        // The demo leaked through its distinctive grower, called by leak.
        let row = top_row(&stdout);
        assert!(
            row.contains("leak_through_distinctive_grower"),
            "top row {row:?} in:\n{stdout}"
        );
        assert!(row.trim_start().starts_with('+'), "{row}");
        assert!(
            stdout
                .lines()
                .any(|l| l.contains("leak_through_distinctive_grower ← demo_target::memory::leak")),
            "no leak stack in:\n{stdout}"
        );
    }
    assert_eq!(
        text(&from_files).0,
        text(&from_s3).0,
        "same table either way"
    );

    let top = run(&["top", &uri(&leak), "--top", "3"], &env);
    let (stdout, stderr) = text(&top);
    assert!(top.status.success(), "{stderr}");
    assert!(
        stdout.starts_with("No baseline to compare with"),
        "{stdout}"
    );
    // In use: the 32 MiB base block and what had leaked when the rule fired.
    for name in ["allocate_touched", "leak_through_distinctive_grower"] {
        assert!(stdout.contains(name), "{name} missing from:\n{stdout}");
    }
}

#[test]
fn missing_and_unreadable_profiles_are_clear_errors() {
    let rig = testkit::rig::Bucket::start();
    let env = rig.garage.monitor_env();
    let dir = tempfile::tempdir().unwrap();
    let text_file = dir.path().join("notes.txt");
    std::fs::write(&text_file, "not a profile\n").unwrap();
    let text_path = text_file.display().to_string();
    let missing_path = dir.path().join("none.pprof").display().to_string();
    let missing_uri = format!("s3://{}/no/such.pprof", rig.garage.bucket());
    let mut wrong_secret = env.clone();
    wrong_secret.retain(|(k, _)| k != "AWS_SECRET_ACCESS_KEY");
    wrong_secret.push(("AWS_SECRET_ACCESS_KEY".into(), "0".repeat(64)));

    /// Arguments, environment, what standard error must say.
    type Case<'a> = (&'a [&'a str], &'a [(String, String)], &'a [&'a str]);
    let cases: [Case; 6] = [
        (
            &["top", &missing_path],
            &env,
            &["none.pprof", "No such file"],
        ),
        (
            &["diff", &text_path, &text_path],
            &env,
            &["notes.txt is not a heap profile", "not a gzipped profile"],
        ),
        (
            &["top", &missing_uri],
            &env,
            &[&missing_uri, "no such object"],
        ),
        (
            &["top", &missing_uri],
            &wrong_secret,
            &[&missing_uri, "HTTP 403", "s3:GetObject"],
        ),
        (
            &["top", "s3://bucket-only"],
            &env,
            &["not an s3://bucket/key URI"],
        ),
        (
            &["top", "s3://no-such-bucket/k.pprof"],
            &env,
            &["s3://no-such-bucket/k.pprof", "no such bucket"],
        ),
    ];
    for (args, env, wants) in cases {
        let out = run(args, env);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
        for want in wants {
            assert!(
                stderr.contains(want),
                "{args:?}: {want:?} not in {stderr:?}"
            );
        }
    }
    // A usage error is clap's, with status 2; the monitor's own --help still works.
    let out = run(&["diff", "only-one"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out).1);
    let out = run(&["--help"], &[]);
    let (stdout, _) = text(&out);
    assert!(
        out.status.success() && stdout.contains("BINARY_NAME"),
        "{stdout}"
    );
    assert!(stdout.contains("memory-monitor diff"), "{stdout}");
}
