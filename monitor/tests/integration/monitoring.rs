//! The shipped alert rules and dashboard (`deploy/monitoring/`) name only
//! series the monitor exports: every metric name in the PrometheusRule's
//! expressions and the Grafana dashboard's targets is declared in a scrape
//! of the real monitor at start (`# TYPE` lines, so series that appear only
//! after an event count too).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use testkit::logs;
use testkit::monitor::{Monitor, storeless_env};

use crate::observability::{Scrape, metrics_addr};

/// PromQL words that are not metric names: operators, modifiers, literals,
/// and the aggregations (written `sum by (x) (...)`, so not always followed
/// by their `(`; functions are recognised by it).
const KEYWORDS: [&str; 26] = [
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
];
/// Keywords followed by a list of label names in parentheses.
const LABEL_LISTS: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The metric names a PromQL expression selects: identifiers outside
/// strings, label matchers `{}`, ranges `[]` and label lists, not called as
/// functions, not keywords, not Grafana variables (`$pod`).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    // Depth inside {} and [], and whether the next (...) lists labels.
    let (mut braces, mut brackets, mut label_list) = (0usize, 0usize, false);
    let mut in_label_list = 0usize;
    let mut paren_depth = 0usize;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
                continue;
            }
            '{' => braces += 1,
            '}' => braces = braces.saturating_sub(1),
            '[' => brackets += 1,
            ']' => brackets = brackets.saturating_sub(1),
            '(' => {
                paren_depth += 1;
                if label_list {
                    in_label_list = paren_depth;
                    label_list = false;
                }
            }
            ')' => {
                if in_label_list == paren_depth {
                    in_label_list = 0;
                }
                paren_depth = paren_depth.saturating_sub(1);
            }
            '$' => {
                // A Grafana variable: skip its name.
                i += 1;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                continue;
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let called = chars[i..].iter().find(|c| !c.is_whitespace()) == Some(&'(');
                if LABEL_LISTS.contains(&word.as_str()) {
                    label_list = true;
                } else if !(called
                    || braces > 0
                    || brackets > 0
                    || in_label_list > 0
                    || KEYWORDS.contains(&word.as_str()))
                {
                    names.insert(word);
                }
                continue;
            }
            c if c.is_ascii_digit() => {
                // A number or duration (1e3, 0x1f, 5m): never a name.
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    names
}

/// The `expr:` values of a rule file: inline, or a block scalar (`|`, `>`)
/// made of the lines indented deeper than the key.
fn rule_exprs(yaml: &str) -> Vec<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut exprs = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        let Some(value) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let indent = line.len() - line.trim_start().len();
        let value = value.trim();
        if value.starts_with('|') || value.starts_with('>') {
            let block: Vec<&str> = lines[n + 1..]
                .iter()
                .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
                .copied()
                .collect();
            exprs.push(block.join("\n").trim().to_string());
        } else {
            exprs.push(value.trim_matches(['"', '\'']).to_string());
        }
    }
    exprs
}

/// Every target `expr` of a Grafana dashboard's panels.
fn dashboard_exprs(json: &str) -> Vec<String> {
    let dash: serde_json::Value = serde_json::from_str(json).expect("the dashboard parses");
    let panels = dash["panels"].as_array().expect("the dashboard has panels");
    panels
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_string))
        .collect()
}

fn monitoring_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/monitoring")
}

/// Every metric name the rules and the dashboard use, with where.
fn used_names() -> Vec<(String, String)> {
    let mut used = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(monitoring_dir())
        .expect("deploy/monitoring/")
        .map(|e| e.expect("an entry").path())
        .collect();
    files.sort();
    let (mut rules, mut panels) = (0, 0);
    for path in files {
        let text = std::fs::read_to_string(&path).expect("read a monitoring file");
        let exprs = match path.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => {
                let exprs = rule_exprs(&text);
                // Each alert's expression was found: the extraction is not
                // silently missing a form of `expr:`.
                assert_eq!(
                    exprs.len(),
                    text.matches("- alert:").count(),
                    "{}",
                    path.display()
                );
                rules += exprs.len();
                exprs
            }
            Some("json") => {
                let exprs = dashboard_exprs(&text);
                panels += exprs.len();
                exprs
            }
            _ => continue,
        };
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        for expr in exprs {
            let names = metric_names(&expr);
            assert!(!names.is_empty(), "{file}: no metric in {expr}");
            used.extend(names.into_iter().map(|n| (n, file.clone())));
        }
    }
    assert!(
        rules >= 6 && panels >= 10,
        "{rules} rules, {panels} targets"
    );
    used
}

/// The sample names a scrape declares: `# TYPE` names with their type's
/// suffixes (counter `_total`, histogram `_bucket`/`_sum`/`_count`).
fn declared(scrape: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in scrape.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        let suffixes: &[&str] = match kind {
            "counter" => &["_total"],
            "histogram" => &["_bucket", "_sum", "_count"],
            _ => &[""],
        };
        names.extend(suffixes.iter().map(|s| format!("{name}{s}")));
    }
    names
}

#[test]
fn the_tokenizer_finds_metrics_and_nothing_else() {
    let expr = r#"histogram_quantile(0.95, max without (x) (z) + sum by (le, pod) (rate(a_bucket{namespace=~"$ns", x="b c"}[$__rate_interval])))
        / on (pod) group_left (mode) b_total offset 5m > bool 1e3 and ignoring(mode) c:rule == 1 unless nan"#;
    let names: Vec<String> = metric_names(expr).into_iter().collect();
    assert_eq!(names, ["a_bucket", "b_total", "c:rule", "z"]);
    let yaml = "      - alert: A\n        expr: up == 0\n      - alert: B\n        expr: |\n          x\n          and y\n        for: 5m\n";
    assert_eq!(rule_exprs(yaml), ["up == 0", "x\n          and y"]);
}

#[test]
fn every_metric_of_the_rules_and_the_dashboard_is_exported() {
    let used = used_names();
    let dir = tempfile::tempdir().unwrap();
    let mut env = storeless_env("mon-rules", dir.path());
    env.insert("METRICS_ADDR".into(), "127.0.0.1:0".into());
    let mut monitor = Monitor::start(&env);
    let addr = metrics_addr(&monitor);
    monitor.wait_for(&[logs::WAITING_FOR_TARGET], 1, Duration::from_secs(20));
    // At start, before any target, dump or failure.
    let scrape = Scrape::take(addr).0;
    assert!(monitor.stop(Duration::from_secs(10)).success());
    let declared = declared(&scrape);
    let missing: Vec<String> = used
        .iter()
        .filter(|(name, _)| !declared.contains(name))
        .map(|(name, file)| format!("{file}: {name}"))
        .collect();
    assert!(
        missing.is_empty(),
        "used by deploy/monitoring but not exported:\n{}\nexported:\n{}",
        missing.join("\n"),
        declared.iter().cloned().collect::<Vec<_>>().join("\n")
    );
    let distinct: BTreeSet<&String> = used.iter().map(|(n, _)| n).collect();
    eprintln!(
        "{} metric names of deploy/monitoring, all exported",
        distinct.len()
    );
    for name in [
        "memory_monitor_spool_size_bytes",
        "memory_monitor_mode_configured",
        "memory_monitor_upload_duration_seconds_bucket",
        "memory_monitor_rss_anon_bytes",
    ] {
        assert!(
            distinct.contains(&name.to_string()),
            "{name} not found in the rules or the dashboard: is the extraction broken?"
        );
    }
}
