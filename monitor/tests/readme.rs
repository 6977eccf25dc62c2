//! The user documentation stays true to the code and to itself:
//!
//! - the README's configuration table is generated from the same definitions
//!   as `memory-monitor --help`; this test fails when they drift. Regenerate
//!   with `UPDATE_README=1 cargo test -p monitor --test readme`;
//! - every relative link in `README.md`, `deploy/README.md` and `docs/*.md`
//!   names a file that exists, and every `#anchor` a heading of its page;
//!   so does every alert's `runbook` in `deploy/monitoring/`.

use std::path::{Path, PathBuf};

const START: &str = "<!-- config-table:start (generated: UPDATE_README=1 cargo test -p monitor --test readme) -->\n";
const END: &str = "<!-- config-table:end -->";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("monitor/ has a parent")
        .to_path_buf()
}

#[test]
fn readme_config_table_matches_the_code() {
    let path = repo_root().join("README.md");
    let readme = std::fs::read_to_string(&path).expect("README.md");
    let table = monitor::config::markdown_table();
    let (Some(start), Some(end)) = (readme.find(START), readme.find(END)) else {
        panic!("README.md lacks the config-table markers:\n{START}{END}");
    };
    let current = &readme[start + START.len()..end];
    if current == table {
        return;
    }
    if std::env::var_os("UPDATE_README").is_some() {
        let updated = format!("{}{START}{table}{}", &readme[..start], &readme[end..]);
        std::fs::write(&path, updated).expect("write README.md");
        return;
    }
    panic!(
        "README.md's configuration table is out of date; run UPDATE_README=1 cargo test -p monitor --test readme\nexpected:\n{table}"
    );
}

/// The pages users read: the README, the deployment guide and `docs/`.
fn pages() -> Vec<PathBuf> {
    let root = repo_root();
    let mut pages = vec![root.join("README.md"), root.join("deploy/README.md")];
    let docs = std::fs::read_dir(root.join("docs")).expect("docs/");
    let mut docs: Vec<PathBuf> = docs
        .map(|e| e.expect("docs/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

/// The page's lines outside fenced code blocks.
fn unfenced_lines(text: &str) -> Vec<&str> {
    let mut in_fence = false;
    let mut lines = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
        } else if !in_fence {
            lines.push(line);
        }
    }
    lines
}

/// A line without its `code spans` (text between pairs of backticks).
fn without_code(line: &str) -> String {
    line.split('`').step_by(2).collect()
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces
/// turned into hyphens (repeated headings, which would get `-1`, are not used).
fn anchor(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a page's headings.
fn anchors(text: &str) -> Vec<String> {
    unfenced_lines(text)
        .into_iter()
        .filter_map(|l| {
            let title = l.trim_start_matches('#');
            (l.starts_with('#') && title.starts_with(' ')).then(|| anchor(title.trim()))
        })
        .collect()
}

/// The targets of the page's inline links, `[text](target)`.
fn link_targets(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    for line in unfenced_lines(text) {
        let line = without_code(line);
        let mut rest = line.as_str();
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            let end = rest.find(')').unwrap_or(rest.len());
            targets.push(rest[..end].trim().to_string());
            rest = &rest[end..];
        }
    }
    targets
}

#[test]
fn documentation_links_resolve() {
    let mut broken = Vec::new();
    for page in pages() {
        let text = std::fs::read_to_string(&page).expect("read a page");
        let dir = page.parent().expect("a page has a directory");
        for target in link_targets(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, fragment) = match target.split_once('#') {
                Some((path, fragment)) => (path, Some(fragment)),
                None => (target.as_str(), None),
            };
            let file = if path.is_empty() {
                page.clone()
            } else {
                dir.join(path)
            };
            if !file.exists() {
                broken.push(format!("{}: {target}: no such file", page.display()));
                continue;
            }
            let Some(fragment) = fragment else { continue };
            if file.extension().is_none_or(|e| e != "md") {
                continue;
            }
            let linked = std::fs::read_to_string(&file).expect("read a linked page");
            if !anchors(&linked).iter().any(|a| a == fragment) {
                broken.push(format!(
                    "{}: {target}: no heading with that anchor",
                    page.display()
                ));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "broken documentation links:\n{}",
        broken.join("\n")
    );
}

/// The alerts' `runbook: docs/<page>.md#<anchor>` annotations point at a
/// heading that exists (the page a paged person opens first).
#[test]
fn alert_runbooks_resolve() {
    let root = repo_root();
    let dir = root.join("deploy/monitoring");
    let mut runbooks = 0;
    for entry in std::fs::read_dir(&dir).expect("deploy/monitoring/") {
        let path = entry.expect("an entry").path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read a rule file");
        for line in text.lines() {
            let Some(target) = line.trim().strip_prefix("runbook:") else {
                continue;
            };
            runbooks += 1;
            let target = target.trim();
            let (page, fragment) = target.split_once('#').unwrap_or((target, ""));
            let linked = std::fs::read_to_string(root.join(page))
                .unwrap_or_else(|e| panic!("{}: runbook {target}: {e}", path.display()));
            assert!(
                fragment.is_empty() || anchors(&linked).iter().any(|a| a == fragment),
                "{}: runbook {target}: no heading with that anchor",
                path.display()
            );
        }
    }
    assert!(runbooks >= 6, "{runbooks} runbook annotations found");
}

#[test]
fn anchors_follow_github() {
    assert_eq!(
        anchor("Your service: serve the heap-dump socket"),
        "your-service-serve-the-heap-dump-socket"
    );
    assert_eq!(anchor("Socket and /proc access"), "socket-and-proc-access");
    assert_eq!(
        anchor("Probes, resources, shutdown"),
        "probes-resources-shutdown"
    );
    assert_eq!(
        anchor("What `cargo xtask test` runs"),
        "what-cargo-xtask-test-runs"
    );
    assert_eq!(
        without_code("see [`a.md`](a.md) and `x](y)`"),
        "see [](a.md) and "
    );
}
