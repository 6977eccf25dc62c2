use super::*;
use crate::capture::JemallocStats;
use crate::growth::{FunctionGrowth, StackGrowth};

const MIB: i64 = 1 << 20;

fn growth(rows: Vec<(String, i64, i64)>) -> Growth {
    let gross = rows.iter().map(|(_, b, a)| a - b).filter(|d| *d > 0).sum();
    Growth {
        against_baseline: true,
        by_stack: rows
            .iter()
            .map(|(n, b, a)| StackGrowth {
                frames: vec![n.clone(), "main".into()],
                before: *b,
                after: *a,
            })
            .collect(),
        functions: rows.len(),
        total_before: rows.iter().map(|r| r.1).sum(),
        total_after: rows.iter().map(|r| r.2).sum(),
        gross_growth: gross,
        by_function: rows
            .into_iter()
            .map(|(name, before, after)| FunctionGrowth {
                name,
                before,
                after,
            })
            .collect(),
    }
}

/// Every text in the blocks, with its Slack limit checked.
fn texts(blocks: &[Value]) -> Vec<String> {
    assert!(blocks.len() <= MAX_BLOCKS, "{} blocks", blocks.len());
    blocks
        .iter()
        .map(|b| {
            assert_eq!(b["type"], "section");
            assert_eq!(b["text"]["type"], "mrkdwn");
            let text = b["text"]["text"].as_str().unwrap().to_owned();
            assert!(
                text.chars().count() <= TEXT_MAX,
                "{} chars",
                text.chars().count()
            );
            text
        })
        .collect()
}

#[test]
fn the_table_lists_function_before_after_and_delta() {
    let g = growth(vec![
        ("demo_target::memory::leak_here".into(), 32 * MIB, 96 * MIB),
        ("svc::parse".into(), 4 * MIB, 5 * MIB),
    ]);
    let blocks = growth_blocks(&GrowthSection {
        growth: Some(&g),
        ..GrowthSection::default()
    });
    let t = texts(&blocks);
    assert_eq!(t.len(), 1);
    let want = "\
*Growth since the baseline, by function (in-use bytes)*
```     +delta  share      before → after       function
  +64.0 MiB  98.5%    32.0 MiB → 96.0 MiB    demo_target::memory::leak_here
   +1.0 MiB   1.5%     4.0 MiB → 5.0 MiB     svc::parse
```
The top 2 explain 100.0% of +65.0 MiB grown (net +65.0 MiB; 101.0 MiB in use; 2 functions).";
    assert_eq!(t[0], want);
    assert_eq!(
        growth_text(&GrowthSection {
            growth: Some(&g),
            ..GrowthSection::default()
        }),
        "grew most: demo_target::memory::leak_here (32.0 MiB → 96.0 MiB)"
    );
}

#[test]
fn absurd_names_stay_within_the_limits_and_are_escaped() {
    let generic = format!(
        "<alloc::vec::Vec<{}> as core::clone::Clone>::clone",
        "HashMap<String, Vec<Box<dyn Fn(&u8) -> Result<(), E>>>>".repeat(500)
    );
    let rows: Vec<(String, i64, i64)> = (0..300)
        .map(|i| match i % 3 {
            0 => (format!("{generic}{i}"), 0, (1000 - i) * MIB),
            1 => (
                format!("a<b>&c::{}{i}", "x".repeat(5000)),
                0,
                (1000 - i) * MIB,
            ),
            _ => (format!("<script>&amp;{i}</script>"), 0, (1000 - i) * MIB),
        })
        .collect();
    let g = growth(rows);
    let stats = StatsVerdict::judge(
        JemallocStats {
            allocated: 1,
            active: None,
            resident: 2,
            mapped: None,
            retained: None,
        },
        JemallocStats {
            allocated: 1 << 40,
            active: None,
            resident: 2 << 40,
            mapped: None,
            retained: None,
        },
    );
    let section = GrowthSection {
        growth: Some(&g),
        stats: Some(&stats),
        rate: Some(GrowthRate::from_bytes_per_sec(1e12)),
        headroom: Some(Headroom {
            bytes: 5 << 30,
            eta: Some(Duration::from_millis(5)),
        }),
    };
    let blocks = growth_blocks(&section);
    let t = texts(&blocks);
    assert_eq!(t.len(), 3);
    let table = &t[0];
    // Rows that do not fit are counted, the code block is closed.
    assert!(table.contains("more rows not shown"), "{table}");
    assert_eq!(table.matches("```").count(), 2, "{table}");
    // Generics folded, names cut from the front to NAME_MAX.
    assert!(
        table.contains("&lt;alloc::vec::Vec&lt;…&gt; as core::clone::Clone&gt;::clone0"),
        "{table}"
    );
    for line in table.lines().skip(2) {
        assert!(line.chars().count() < 200, "{line}");
    }
    // Nothing unescaped: every & starts an entity, no raw < or >.
    for text in &t {
        let stripped = text
            .replace("&amp;", "")
            .replace("&lt;", "")
            .replace("&gt;", "");
        assert!(!stripped.contains(['&', '<', '>']), "{text}");
    }
    assert!(table.contains("&lt;script&gt;&amp;amp;2"), "{table}");
    let plain = growth_text(&section);
    assert!(plain.chars().count() <= TEXT_MAX);
    assert!(
        !plain
            .replace("&amp;", "")
            .replace("&lt;", "")
            .replace("&gt;", "")
            .contains(['&', '<', '>'])
    );
}

#[test]
fn the_verdict_line_is_the_stats_verdict() {
    let mib = 1u64 << 20;
    let s = |allocated: u64, resident: u64| JemallocStats {
        allocated: allocated * mib,
        active: None,
        resident: resident * mib,
        mapped: None,
        retained: None,
    };
    let v = StatsVerdict::judge(s(100, 120), s(101, 400));
    let t = texts(&growth_blocks(&GrowthSection {
        stats: Some(&v),
        ..GrowthSection::default()
    }));
    assert_eq!(t.len(), 1);
    assert!(
        t[0].starts_with("jemalloc: fragmentation or retained pages grew"),
        "{}",
        t[0]
    );
}

#[test]
fn the_pace_says_how_urgent() {
    let mib = 1024.0 * 1024.0;
    let pace_of = |rate: f64, headroom: Option<Headroom>| {
        let t = texts(&growth_blocks(&GrowthSection {
            rate: Some(GrowthRate::from_bytes_per_sec(rate)),
            headroom,
            ..GrowthSection::default()
        }));
        t[0].clone()
    };
    let rate = GrowthRate::from_bytes_per_sec(mib / 4.8); // 12.5 MiB/min
    assert_eq!(
        pace_of(mib / 4.8, Some(rate.headroom(400 << 20, 1024 << 20))),
        "*Pace*: growing 12.5 MiB/min over the window; 624.0 MiB headroom, ~50 min to the limit at this rate"
    );
    assert_eq!(
        pace_of(mib / 4.8, None),
        "*Pace*: growing 12.5 MiB/min over the window (memory limit unknown)"
    );
    assert_eq!(
        pace_of(
            -mib / 60.0,
            Some(Headroom {
                bytes: 1 << 30,
                eta: None
            })
        ),
        "*Pace*: not growing over the window (-1.0 MiB/min); 1.0 GiB headroom, no limit in sight at this rate"
    );
    assert_eq!(
        pace_of(
            mib,
            Some(Headroom {
                bytes: 0,
                eta: Some(Duration::ZERO)
            })
        ),
        "*Pace*: growing 60.0 MiB/min over the window; at the memory limit now"
    );
    assert_eq!(eta_words(Duration::from_secs(45)), "45 s");
    assert_eq!(eta_words(Duration::from_secs(3 * 3600 + 1800)), "3.5 h");
    assert_eq!(eta_words(Duration::from_secs(5 * 86400)), "5.0 days");
}

#[test]
fn nothing_grew_and_no_parts_give_short_or_no_blocks() {
    assert!(growth_blocks(&GrowthSection::default()).is_empty());
    assert_eq!(growth_text(&GrowthSection::default()), "");
    let g = growth(vec![]);
    let t = texts(&growth_blocks(&GrowthSection {
        growth: Some(&g),
        ..GrowthSection::default()
    }));
    assert!(!t[0].contains("```"), "{}", t[0]);
    assert!(
        t[0].contains("Nothing grew in the heap profile"),
        "{}",
        t[0]
    );
}
