use super::*;
use crate::growth::table;
use crate::profile::pprof::{Function, Line, Location, Sample, ValueType};

const MIB: i64 = 1 << 20;

/// The allocator frames a real jemalloc_pprof stack starts with.
const ALLOC: [&str; 4] = [
    "prof_backtrace_impl",
    "_rjem_je_malloc_default",
    "__rust_alloc",
    "alloc::raw_vec::RawVec<T,A>::try_allocate_in",
];

/// A profile with one sample per stack (frames leaf first, allocator frames
/// prepended; a frame named `0x...` is an unsymbolized location).
fn profile(stacks: &[(&[&str], i64)]) -> Profile {
    let mut p = Profile::default();
    let (space, bytes) = (p.intern("inuse_space"), p.intern("bytes"));
    p.sample_type.push(ValueType {
        r#type: space,
        unit: bytes,
    });
    for (frames, value) in stacks {
        let mut ids = Vec::new();
        for name in ALLOC.iter().chain(frames.iter()) {
            ids.push(location(&mut p, name));
        }
        p.sample.push(Sample {
            location_id: ids,
            value: vec![*value],
            label: vec![],
        });
    }
    crate::profile::validate(&p).unwrap();
    p
}

fn location(p: &mut Profile, name: &str) -> u64 {
    let id = p.location.len() as u64 + 1;
    let line = if let Some(hex) = name.strip_prefix("0x") {
        p.location.push(Location {
            id,
            address: u64::from_str_radix(hex, 16).unwrap(),
            ..Location::default()
        });
        return id;
    } else {
        let name = p.intern(name);
        let fid = p.function.len() as u64 + 1;
        p.function.push(Function {
            id: fid,
            name,
            ..Function::default()
        });
        Line {
            function_id: fid,
            line: 1,
            column: 0,
        }
    };
    p.location.push(Location {
        id,
        line: vec![line],
        ..Location::default()
    });
    id
}

fn names(g: &Growth) -> Vec<&str> {
    g.by_function.iter().map(|f| f.name.as_str()).collect()
}

#[test]
fn growth_is_by_the_first_frame_above_the_allocator() {
    let base = profile(&[
        (&["svc::cache::insert", "svc::handle", "main"], 10 * MIB),
        (&["svc::parse", "svc::handle", "main"], 4 * MIB),
    ]);
    let dump = profile(&[
        (&["svc::cache::insert", "svc::handle", "main"], 70 * MIB),
        (&["svc::parse", "svc::handle", "main"], 5 * MIB),
        (&["svc::new_thing", "main"], 2 * MIB),
    ]);
    let g = diff(&base, &dump, DEFAULT_TOP).unwrap();
    assert!(g.against_baseline);
    assert_eq!(
        names(&g),
        ["svc::cache::insert", "svc::new_thing", "svc::parse"]
    );
    let top = &g.by_function[0];
    assert_eq!(
        (top.before, top.after, top.delta()),
        (10 * MIB, 70 * MIB, 60 * MIB)
    );
    assert_eq!((g.total_before, g.total_after), (14 * MIB, 77 * MIB));
    assert_eq!(g.gross_growth, 63 * MIB);
    assert_eq!(g.net(), 63 * MIB);
    assert_eq!(g.functions, 3);
    assert!((g.share(top.delta()).unwrap() - 60.0 / 63.0).abs() < 1e-12);
    assert!((g.top_share().unwrap() - 1.0).abs() < 1e-12);
    // Stacks start at the blamed frame; the allocator's frames are not part of them.
    assert_eq!(
        g.by_stack[0].frames,
        ["svc::cache::insert", "svc::handle", "main"]
    );
}

#[test]
fn top_n_ties_break_by_name_and_shares_are_of_the_gross_growth() {
    let base = profile(&[(&["b::shrinks"], 50 * MIB)]);
    let dump = profile(&[
        (&["z::grows"], 8 * MIB),
        (&["a::grows"], 8 * MIB),
        (&["m::grows"], 8 * MIB),
        (&["c::small"], MIB),
        (&["b::shrinks"], 10 * MIB),
    ]);
    let g = diff(&base, &dump, 2).unwrap();
    assert_eq!(names(&g), ["a::grows", "m::grows"]);
    // 25 MiB grew in all, 40 MiB shrank: the shares are of the 25.
    assert_eq!(g.gross_growth, 25 * MIB);
    assert_eq!(g.net(), -15 * MIB);
    assert!((g.top_share().unwrap() - 16.0 / 25.0).abs() < 1e-12);
    // The shrinking function is counted, never listed as growth.
    assert_eq!(g.functions, 5);
    assert!(g.by_function.iter().all(|f| f.delta() > 0));
    // The same input gives the same output, whatever the hash order.
    for _ in 0..5 {
        assert_eq!(diff(&base, &dump, 2).unwrap(), g);
    }
}

#[test]
fn unsymbolized_frames_are_named_by_address_and_compared_so() {
    let base = profile(&[(&["0x1a2b", "main"], MIB)]);
    let dump = profile(&[(&["0x1a2b", "main"], 3 * MIB), (&["0xff", "main"], MIB)]);
    let g = diff(&base, &dump, 5).unwrap();
    assert_eq!(names(&g), ["0x1a2b", "0xff"]);
    assert_eq!(g.by_function[0].before, MIB);
}

#[test]
fn inlined_frames_count_innermost_first() {
    let mut p = profile(&[]);
    let alloc = location(&mut p, "__rust_alloc");
    let inner = location(&mut p, "svc::inlined_helper");
    // One location holding two frames: the helper inlined into its caller.
    let outer_name = p.intern("svc::caller");
    p.function.push(Function {
        id: 99,
        name: outer_name,
        ..Function::default()
    });
    let loc = p.location.iter_mut().find(|l| l.id == inner).unwrap();
    loc.line.push(Line {
        function_id: 99,
        line: 3,
        column: 0,
    });
    p.sample.push(Sample {
        location_id: vec![alloc, inner],
        value: vec![MIB],
        label: vec![],
    });
    let g = top_in_use(&p, 5).unwrap();
    assert_eq!(names(&g), ["svc::inlined_helper"]);
    assert_eq!(g.by_stack[0].frames, ["svc::inlined_helper", "svc::caller"]);
}

#[test]
fn without_a_baseline_the_largest_in_use_sites_are_listed() {
    let dump = profile(&[
        (&["svc::small"], MIB),
        (&["svc::big"], 9 * MIB),
        (&["std::thread::spawn"], 2 * MIB),
    ]);
    let g = top_in_use(&dump, 5).unwrap();
    assert!(!g.against_baseline);
    // A stack with nothing but the standard library above the allocator blames it.
    assert_eq!(names(&g), ["svc::big", "std::thread::spawn", "svc::small"]);
    assert!(g.by_function.iter().all(|f| f.before == 0));
    let text = table::render(&g, 80);
    assert!(text.starts_with("No baseline to compare with"), "{text}");
    assert!(
        text.contains("The top 3 hold 100.0% of 12.0 MiB in use"),
        "{text}"
    );
}

#[test]
fn nothing_is_dropped_even_stacks_of_allocator_frames_only_or_none() {
    let mut p = profile(&[(&["svc::a"], MIB)]);
    p.sample.push(Sample {
        location_id: vec![],
        value: vec![2 * MIB],
        label: vec![],
    });
    p.sample.push(Sample {
        location_id: vec![1, 2],
        value: vec![4 * MIB],
        label: vec![],
    });
    let g = top_in_use(&p, 10).unwrap();
    assert_eq!(names(&g), ["prof_backtrace_impl", "(no stack)", "svc::a"]);
    assert_eq!(g.total_after, 7 * MIB);
    let sum: i64 = g.by_function.iter().map(|f| f.after).sum();
    assert_eq!(sum, g.total_after);
}

#[test]
fn absurd_values_saturate() {
    let base = profile(&[(&["a::x"], i64::MIN)]);
    let dump = profile(&[(&["a::x"], i64::MAX), (&["b::y"], i64::MAX)]);
    let g = diff(&base, &dump, 5).unwrap();
    assert_eq!(g.total_after, i64::MAX);
    assert_eq!(g.by_function[0].delta(), i64::MAX);
    assert_eq!(g.gross_growth, i64::MAX);
    assert!(!table::render(&g, 40).is_empty());
}

#[test]
fn a_profile_without_in_use_bytes_is_refused_by_name() {
    let mut p = Profile::default();
    let (count, unit) = (p.intern("alloc_objects"), p.intern("count"));
    p.sample_type.push(ValueType {
        r#type: count,
        unit,
    });
    let good = profile(&[]);
    let err = diff(&good, &p, 5).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the dump profile has no inuse_space sample type (it has: alloc_objects/count); is it a heap profile?"
    );
    let err = diff(&Profile::default(), &good, 5).unwrap_err();
    assert!(err.to_string().contains("the baseline profile"), "{err}");
    assert!(err.to_string().contains("(it has: none)"), "{err}");
    // A single bytes column from another tool is accepted.
    let mut other = profile(&[(&["x::y"], MIB)]);
    let space = other.intern("space");
    other.sample_type[0].r#type = space;
    assert_eq!(names(&top_in_use(&other, 5).unwrap()), ["x::y"]);
}

#[test]
fn the_table_reads_well() {
    let base = profile(&[
        (&["svc::cache::insert"], 10 * MIB),
        (&["svc::parse"], 4 * MIB),
    ]);
    let dump = profile(&[
        (&["svc::cache::insert"], 70 * MIB),
        (&["svc::parse"], 7 * MIB),
    ]);
    let g = diff(&base, &dump, 5).unwrap();
    let text = table::render(&g, 80);
    let want = "\
Growth since the baseline, by function (in-use bytes):

     +delta  share      before → after       function
  +60.0 MiB  95.2%    10.0 MiB → 70.0 MiB    svc::cache::insert
   +3.0 MiB   4.8%     4.0 MiB → 7.0 MiB     svc::parse

The top 2 explain 100.0% of +63.0 MiB grown (net +63.0 MiB; 77.0 MiB in use; 2 functions).

By stack (growth; blamed frame ← its callers):
  +60.0 MiB  svc::cache::insert
   +3.0 MiB  svc::parse
";
    assert_eq!(text, want);

    let same = diff(&base, &base, 5).unwrap();
    let text = table::render(&same, 80);
    assert!(
        text.contains(
            "Nothing grew in the heap profile since the baseline (14.0 MiB → 14.0 MiB in use)"
        ),
        "{text}"
    );
}
