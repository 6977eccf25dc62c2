//! The README's configuration table is generated from the same definitions as
//! `memory-monitor --help`; this test fails when they drift. Regenerate with
//! `UPDATE_README=1 cargo test -p monitor --test readme`.

use std::path::Path;

const START: &str = "<!-- config-table:start (generated: UPDATE_README=1 cargo test -p monitor --test readme) -->\n";
const END: &str = "<!-- config-table:end -->";

#[test]
fn readme_config_table_matches_the_code() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
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
