use super::*;

#[test]
fn version_is_one_line_with_protocol_and_crate_version() {
    let Reply::Line(line) = reply("version\n") else {
        panic!("not a line");
    };
    assert_eq!(
        line,
        format!(
            "heap-dump-protocol 1 heap-dump-server/{}",
            env!("CARGO_PKG_VERSION")
        )
    );
}

#[test]
fn unknown_commands_are_quoted_escaped_and_cut_on_one_line() {
    let bytes = reply("dance").into_bytes();
    assert_eq!(
        String::from_utf8(bytes).unwrap(),
        "error: unknown command \"dance\"; commands: dump, stats, version\n"
    );
    let long = "x".repeat(500);
    let text = String::from_utf8(Reply::Error(unknown(&long)).into_bytes()).unwrap();
    assert!(text.len() < 200 && text.contains('…'), "{text}");
    let text = String::from_utf8(Reply::Error(unknown("a\"b\tc")).into_bytes()).unwrap();
    assert_eq!(
        text,
        "error: unknown command \"a\\\"b\\tc\"; commands: dump, stats, version\n"
    );
    let text = String::from_utf8(Reply::Error("two\nlines".into()).into_bytes()).unwrap();
    assert_eq!(text, "error: two\\nlines\n");
}

#[test]
fn the_stats_line_is_the_documented_json() {
    let p = Profiling {
        built_in: true,
        enabled: true,
        active: false,
        sample_interval_bytes: Some(524_288),
    };
    let line = stats_line(&[("allocated", 1), ("active", 2), ("resident", 3)], &p);
    assert_eq!(
        line,
        r#"{"allocated":1,"active":2,"resident":3,"profiling":{"enabled":true,"active":false,"sample_interval_bytes":524288}}"#
    );
    let p = Profiling {
        sample_interval_bytes: None,
        ..p
    };
    let line = stats_line(&[("allocated", 1)], &p);
    assert!(
        line.ends_with(r#""sample_interval_bytes":null}}"#),
        "{line}"
    );
    let _: serde_json::Value = serde_json::from_str(&line).unwrap();
}
