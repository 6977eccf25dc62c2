use super::pprof::*;
use super::*;

/// A two-sample profile: one symbolized frame, one bare address.
pub(crate) fn sample_profile() -> Profile {
    let mut p = Profile::default();
    let space = p.intern("inuse_space");
    let bytes = p.intern("bytes");
    p.sample_type.push(ValueType {
        r#type: space,
        unit: bytes,
    });
    let exe = p.intern("/usr/bin/demo");
    let id = p.intern("abcd");
    p.mapping.push(Mapping {
        id: 1,
        memory_start: 0x1000,
        memory_limit: 0x9000,
        filename: exe,
        build_id: id,
        ..Mapping::default()
    });
    let name = p.intern("demo::grow");
    p.function.push(Function {
        id: 1,
        name,
        system_name: name,
        ..Function::default()
    });
    p.location.push(Location {
        id: 1,
        mapping_id: 1,
        address: 0x1234,
        line: vec![Line {
            function_id: 1,
            line: 7,
            column: 0,
        }],
        ..Location::default()
    });
    p.location.push(Location {
        id: 2,
        mapping_id: 1,
        address: 0x2345,
        ..Location::default()
    });
    p.sample.push(Sample {
        location_id: vec![1, 2],
        value: vec![4096],
        label: vec![],
    });
    p.sample.push(Sample {
        location_id: vec![2],
        value: vec![512],
        label: vec![],
    });
    p
}

#[test]
fn a_profile_survives_encode_and_decode() {
    let p = sample_profile();
    let back = decode_gz(&encode_gz(&p), 1 << 20).expect("decodes");
    assert_eq!(back, p);
    assert_eq!(back.sample_type_index("inuse_space"), Some(0));
    assert_eq!(back.string(back.function[0].name), "demo::grow");
}

#[test]
fn garbage_and_oversized_input_are_errors_naming_the_cause() {
    assert!(matches!(
        decode_gz(b"not gzip", 1 << 20),
        Err(ProfileError::Gzip(_))
    ));
    let gz = encode_gz(&sample_profile());
    assert!(matches!(
        decode_gz(&gz, 8),
        Err(ProfileError::TooLarge { max: 8 })
    ));
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&[0xff; 16]).expect("write");
    let junk = enc.finish().expect("finish");
    assert!(matches!(
        decode_gz(&junk, 1 << 20),
        Err(ProfileError::Protobuf(_))
    ));
}

#[test]
fn dangling_references_are_malformed_not_panics() {
    let mut p = sample_profile();
    p.sample[0].location_id.push(99);
    let err = decode_gz(&encode_gz(&p), 1 << 20).unwrap_err();
    assert!(err.to_string().contains("location 99"), "{err}");

    let mut p = sample_profile();
    p.location[0].line[0].function_id = 42;
    assert!(
        validate(&p)
            .unwrap_err()
            .to_string()
            .contains("function 42")
    );

    let mut p = sample_profile();
    p.function[0].name = 1000;
    assert!(
        validate(&p)
            .unwrap_err()
            .to_string()
            .contains("out of range")
    );

    let mut p = sample_profile();
    p.sample[1].value.push(1);
    assert!(validate(&p).unwrap_err().to_string().contains("2 values"));
}

#[test]
fn interning_reuses_existing_strings() {
    let mut p = Profile::default();
    assert_eq!(p.intern("a"), 1);
    assert_eq!(p.intern(""), 0);
    assert_eq!(p.intern("a"), 1);
    assert_eq!(p.intern("b"), 2);
}
