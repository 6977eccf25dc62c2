use super::maps::*;
use super::*;
use crate::procfs::ProcFs;
use crate::profile::pprof::{Location, Mapping, Sample, ValueType};

const MAPS: &str = "\
5581c7a00000-5581c7a2b000 r--p 00000000 08:01 1234   /usr/bin/svc
5581c7a2b000-5581c7b00000 r-xp 0002b000 08:01 1234   /usr/bin/svc
5581c7c00000-5581c7c10000 rw-p 00000000 00:00 0      [heap]
7f0000000000-7f0000100000 r-xp 00010000 08:01 99     /lib/with space/libc.so.6
7f0000200000-7f0000201000 r-xp 00000000 08:01 77     /tmp/gone.so (deleted)
7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0      [vdso]
garbage line
";

#[test]
fn maps_keep_executable_file_mappings_only() {
    let maps = parse_maps(MAPS);
    let paths: Vec<&str> = maps.iter().map(|m| m.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/usr/bin/svc",
            "/lib/with space/libc.so.6",
            "/tmp/gone.so (deleted)"
        ]
    );
    assert_eq!(maps[0].start, 0x5581c7a2b000);
    assert_eq!(maps[0].offset, 0x2b000);
    assert_eq!(maps[0].inode, 1234);
    assert!(maps[2].deleted() && !maps[0].deleted());
}

#[test]
fn a_process_address_becomes_a_file_offset_in_its_mapping() {
    let maps = parse_maps(MAPS);
    assert_eq!(
        locate(&maps, 0x5581c7a2b010),
        Some((0, BinaryAddr::File(0x2b010)))
    );
    assert_eq!(
        locate(&maps, 0x7f0000000100),
        Some((1, BinaryAddr::File(0x10100)))
    );
    assert_eq!(locate(&maps, 0x5581c7c00010), None, "heap is not code");
}

fn mapping(start: u64, limit: u64, offset: u64) -> Mapping {
    Mapping {
        id: 1,
        memory_start: start,
        memory_limit: limit,
        file_offset: offset,
        ..Mapping::default()
    }
}

#[test]
fn pprof_and_jemalloc_pprof_addresses_translate() {
    // jemalloc_pprof: the whole address space at offset 0, ELF virtual addresses.
    assert_eq!(
        translate(&mapping(0, u64::MAX, 0), 0x1234),
        Some(BinaryAddr::Virt(0x1234))
    );
    // pprof: a process address within the mapping, offset of its start.
    let m = mapping(0x7000, 0x9000, 0x1000);
    assert_eq!(translate(&m, 0x7010), Some(BinaryAddr::File(0x1010)));
    assert_eq!(translate(&m, 0x9000), None, "limit is exclusive");
    assert_eq!(translate(&m, 0x6fff), None);
}

#[test]
fn mappings_match_by_build_id_then_path() {
    let ids = [
        Identity {
            path: "/usr/bin/svc".into(),
            build_id: Some("abcd".into()),
        },
        Identity {
            path: "/lib/libc.so.6".into(),
            build_id: None,
        },
    ];
    assert_eq!(match_binary("ABCD", "/elsewhere/svc", &ids), Ok(0));
    assert_eq!(match_binary("", "/lib/libc.so.6", &ids), Ok(1));
    let wrong = match_binary("ffff", "/usr/bin/svc", &ids).unwrap_err();
    assert!(matches!(wrong, Unmatched::WrongBuildId { .. }));
    assert!(
        wrong
            .to_string()
            .contains("wrong build ID for /usr/bin/svc")
    );
    assert!(wrong.to_string().contains("ffff") && wrong.to_string().contains("abcd"));
    let none = match_binary("", "/opt/other.so", &ids).unwrap_err();
    assert_eq!(
        none.to_string(),
        "/opt/other.so is not among the target's opened binaries"
    );
    assert!(match_binary("", "", &ids).is_err(), "nothing to match by");
}

#[test]
fn the_report_counts_and_names_the_most_frequent_reasons() {
    let mut r = Report {
        wanted: 10,
        symbolized: 4,
        took: Duration::from_millis(12),
        ..Report::default()
    };
    r.fail("a", 1);
    r.fail("b", 3);
    r.fail("c", 1);
    r.fail("c", 1);
    r.opening.push("/x.so: denied".into());
    assert_eq!(
        r.summary(),
        "symbolized 4 of 10 locations in 12 ms; not symbolized: 3 (b); 2 (c); 1 (a); \
         opening the target's binaries: /x.so: denied"
    );
    r.fail("d", 1);
    assert!(r.summary().contains("; 1 more reasons"), "{}", r.summary());
}

/// A function whose address this test process symbolizes in itself.
#[inline(never)]
fn distinctive_function_for_the_symbolizer_test() -> usize {
    std::hint::black_box(42)
}

/// A profile of one sample whose location is `address` in `mapping` (no
/// mapping when None).
fn profile_at(address: u64, mapping: Option<Mapping>, build_id: &str, path: &str) -> Profile {
    let mut p = Profile::default();
    let bytes = p.intern("bytes");
    let space = p.intern("inuse_space");
    p.sample_type.push(ValueType {
        r#type: space,
        unit: bytes,
    });
    let mapping_id = match mapping {
        Some(mut m) => {
            m.build_id = p.intern(build_id);
            m.filename = p.intern(path);
            p.mapping.push(m);
            1
        }
        None => 0,
    };
    p.location.push(Location {
        id: 1,
        mapping_id,
        address,
        ..Location::default()
    });
    p.sample.push(Sample {
        location_id: vec![1],
        value: vec![100],
        label: vec![],
    });
    p
}

fn function_names(p: &Profile) -> Vec<String> {
    p.location[0]
        .line
        .iter()
        .filter_map(|l| p.function.iter().find(|f| f.id == l.function_id))
        .map(|f| p.string(f.name).to_string())
        .collect()
}

#[test]
fn this_process_symbolizes_its_own_function() {
    let binaries = Binaries::open(&ProcFs::default(), std::process::id() as i32);
    assert!(!binaries.binaries.is_empty(), "{:?}", binaries.problems);
    let exe = &binaries.binaries[0].identity;
    assert!(exe.build_id.is_some(), "cargo's binaries carry a build ID");
    let address = distinctive_function_for_the_symbolizer_test as *const () as u64 + 1;

    // A raw process address, no mapping: found through the captured maps.
    let mut p = profile_at(address, None, "", "");
    let report = symbolize(&mut p, &binaries);
    assert_eq!((report.wanted, report.symbolized), (1, 1), "{report:?}");
    let names = function_names(&p);
    assert!(
        names
            .last()
            .is_some_and(|n| n.contains("distinctive_function_for_the_symbolizer_test")),
        "{names:?}"
    );

    // The same through a pprof mapping matched by build ID.
    let (m, _) = binaries
        .maps
        .iter()
        .find(|(m, _)| (m.start..m.end).contains(&address))
        .expect("the test's code is mapped");
    let pprof_mapping = mapping(m.start, m.end, m.offset);
    let id = exe.build_id.clone().unwrap_or_default();
    let mut p = profile_at(address, Some(pprof_mapping.clone()), &id, "/else");
    let report = symbolize(&mut p, &binaries);
    assert_eq!(report.symbolized, 1, "{report:?}");
    assert!(p.mapping[0].has_functions);
    let out = crate::profile::decode_gz(&encode_gz(&p), 1 << 30).expect("valid after");
    assert!(
        function_names(&out)
            .iter()
            .any(|n| n.contains("distinctive_function"))
    );

    // A wrong build ID for the same path: the address stays, the reason is said.
    let mut p = profile_at(address, Some(pprof_mapping), "00ff", &exe.path);
    let gz = encode_gz(&p);
    let report = symbolize(&mut p, &binaries);
    assert_eq!(report.symbolized, 0);
    assert!(p.location[0].line.is_empty());
    assert!(
        report.summary().contains("wrong build ID"),
        "{}",
        report.summary()
    );
    let outcome = process(&gz, Some(&binaries), &SymbolizeSettings::default());
    assert!(outcome.symbolized.is_none(), "stored as it came");
    assert!(
        outcome.summary().contains("wrong build ID"),
        "{}",
        outcome.summary()
    );
}

#[test]
fn process_stores_as_it_came_when_it_cannot_or_should_not_symbolize() {
    let p = profile_at(0x1000, None, "", "");
    let gz = encode_gz(&p);
    let small = SymbolizeSettings {
        enabled: true,
        max_size: 10,
    };
    let o = process(&gz, None, &small);
    assert!(o.symbolized.is_none() && o.profile.is_none());
    assert!(
        o.summary().contains("over SYMBOLIZE_MAX_SIZE"),
        "{}",
        o.summary()
    );

    let o = process(b"not gzip", None, &SymbolizeSettings::default());
    assert!(o.summary().contains("cannot decode"), "{}", o.summary());

    let off = SymbolizeSettings {
        enabled: false,
        ..SymbolizeSettings::default()
    };
    let o = process(&gz, None, &off);
    assert!(o.symbolized.is_none() && o.profile.is_some());
    assert!(o.summary().contains("SYMBOLIZE=false"));

    let o = process(&gz, None, &SymbolizeSettings::default());
    assert!(
        o.summary().contains("binaries were not opened"),
        "{}",
        o.summary()
    );
}

#[test]
fn a_gone_process_opens_nothing_and_says_why() {
    let b = Binaries::open(&ProcFs::default(), i32::MAX);
    assert!(b.binaries.is_empty());
    assert!(
        b.problems[0].contains("cannot open the target's executable"),
        "{:?}",
        b.problems
    );
}
