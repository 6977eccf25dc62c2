//! The answer in the alert, end to end with the real monitor binary: the
//! demo target serves unsymbolized profiles and leaks through
//! `leak_through_distinctive_grower`; the monitor symbolizes the dumps,
//! compares the slow-leak dump with the baseline, asks the demo for
//! jemalloc's counters, and the Slack stand-in receives an alert whose
//! growth table names that function first, the verdict and the pace, with
//! the chart shared in its thread; the summary JSON and the chart are stored
//! beside the dump, and `memory-monitor diff` names the same function.

use std::process::Command;
use std::time::Duration;

use testkit::logs;
use testkit::monitor::Monitor;
use testkit::rig::{Rig, steady};
use testkit::slack::SlackStandIn;

const GROWER: &str = "leak_through_distinctive_grower";

#[test]
fn a_slow_leak_alert_names_the_function_that_grew_with_verdict_pace_and_chart() {
    let rig = Rig::new(steady("mm-answer", 32));
    let slack = SlackStandIn::start();
    let mut env = rig.env(&[("DUMP_COOLDOWN", "60s")]);
    env.extend(slack.monitor_env());
    let monitor = Monitor::start(&env);
    let baseline = rig
        .wait_for_keys("baseline", 1, Duration::from_secs(30), &monitor)
        .remove(0);
    monitor.wait_for(&[logs::BASELINE_SET], 1, Duration::from_secs(20));
    // Small steps (no spike), 40 MiB in all: past baseline + 16 MiB.
    for _ in 0..5 {
        rig.demo.leak(8);
        std::thread::sleep(Duration::from_millis(400));
    }
    let leak = rig
        .wait_for_keys("slow-leak", 1, Duration::from_secs(30), &monitor)
        .remove(0);

    // The stored dump is the monitor's symbolized one.
    let stored = testkit::pprof::decode(&rig.object(&leak).0).expect("a valid pprof");
    assert!(stored.has_function(GROWER), "{:?}", stored.functions);

    // The alert: the grower first in the table, the verdict, the pace.
    let alert = slack
        .wait_for_message("slow leak", Duration::from_secs(30))
        .unwrap_or_else(|| panic!("no slow-leak alert:\n{}", monitor.logs().join("\n")));
    let text = alert.raw.replace("\\n", "\n");
    eprintln!("the alert as posted:\n{text}");
    let first_row = text
        .lines()
        .skip_while(|l| !l.trim_end().ends_with("function"))
        .nth(1)
        .unwrap_or_else(|| panic!("no growth table in the alert:\n{text}"));
    assert!(
        first_row.contains(GROWER),
        "first row {first_row:?}:\n{text}"
    );
    assert!(first_row.trim_start().starts_with('+'), "{first_row}");
    assert!(
        text.contains("live allocations grew"),
        "no jemalloc verdict:\n{text}"
    );
    assert!(text.contains("*Pace*"), "no pace:\n{text}");

    // The chart, in the alert's thread, a PNG of the stated size.
    let file = slack.wait_for_files(1, Duration::from_secs(30)).remove(0);
    assert_eq!(file.thread_ts.as_deref(), Some(alert.ts.as_str()));
    let png = png::Decoder::new(std::io::Cursor::new(&file.bytes))
        .read_info()
        .expect("the chart decodes as PNG");
    assert_eq!(
        (png.info().width, png.info().height),
        (monitor::chart::WIDTH, monitor::chart::HEIGHT)
    );

    // Beside the dump in the bucket: the summary and the chart.
    let stem = leak.strip_suffix(".pprof").expect("a .pprof key");
    let keys = rig.keys();
    for suffix in [".summary.json", ".png"] {
        let key = format!("{stem}{suffix}");
        assert!(keys.contains(&key), "{key} not in {keys:?}");
    }
    let summary: serde_json::Value =
        serde_json::from_slice(&rig.object(&format!("{stem}.summary.json")).0)
            .expect("the summary is JSON");
    eprintln!("the stored summary:\n{summary:#}");
    assert_eq!(summary["baseline_key"], baseline.as_str());
    let top = summary["growth"]["by_function"][0]["name"]
        .as_str()
        .unwrap_or_default();
    assert!(top.contains(GROWER), "{summary:#}");
    assert_eq!(
        summary["verdict"]["kind"], "live-allocations",
        "{summary:#}"
    );

    // `memory-monitor diff` on the two stored dumps: the same top function.
    let dir = tempfile::tempdir().expect("tempdir");
    let (base_file, leak_file) = (dir.path().join("base.pprof"), dir.path().join("leak.pprof"));
    std::fs::write(&base_file, rig.object(&baseline).0).expect("write");
    std::fs::write(&leak_file, rig.object(&leak).0).expect("write");
    let out = Command::new(testkit::monitor::binary())
        .arg("diff")
        .args([&base_file, &leak_file])
        .output()
        .expect("memory-monitor diff runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let cli_row = stdout
        .lines()
        .skip_while(|l| !l.trim_end().ends_with("function"))
        .nth(1)
        .unwrap_or_default();
    assert!(cli_row.contains(GROWER), "{stdout}");
}
