use super::*;
use crate::ebpf::attach::VMLINUX_BTF;
use crate::ebpf::object::OBJECT;

/// `oom:mark_victim` on this machine's 6.18 kernel (Debian's 6.1.0-48 in
/// the test VM shows the same fields and offsets).
const FORMAT_PID_ONLY8: &str = "name: mark_victim
ID: 609
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:int pid;\toffset:8;\tsize:4;\tsigned:1;
\tfield:__data_loc char[] comm;\toffset:12;\tsize:4;\tsigned:0;
\tfield:unsigned long total_vm;\toffset:16;\tsize:8;\tsigned:0;
\tfield:unsigned long anon_rss;\toffset:24;\tsize:8;\tsigned:0;
\tfield:unsigned long file_rss;\toffset:32;\tsize:8;\tsigned:0;
\tfield:unsigned long shmem_rss;\toffset:40;\tsize:8;\tsigned:0;
\tfield:uid_t uid;\toffset:48;\tsize:4;\tsigned:0;
\tfield:unsigned long pgtables;\toffset:56;\tsize:8;\tsigned:0;
\tfield:short oom_score_adj;\toffset:64;\tsize:2;\tsigned:1;

print fmt: \"pid=%d comm=%s total-vm=%lukB anon-rss=%lukB file-rss:%lukB shmem-rss:%lukB uid=%u pgtables=%lukB oom_score_adj=%hd\", REC->pid, __get_str(comm), REC->total_vm, REC->anon_rss, REC->file_rss, REC->shmem_rss, REC->uid, REC->pgtables, REC->oom_score_adj
";

/// `oom:mark_victim` on older kernels, before fields were appended to the
/// victim's pid.
const FORMAT_PID_ONLY: &str = "name: mark_victim
ID: 497
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:int pid;\toffset:8;\tsize:4;\tsigned:1;

print fmt: \"pid=%d\", REC->pid
";

#[test]
fn the_pid_is_found_in_both_kernels_formats() {
    for format in [FORMAT_PID_ONLY8, FORMAT_PID_ONLY] {
        assert!(has_pid_at(format, MARK_VICTIM_PID_OFFSET), "{format}");
        assert!(!has_pid_at(format, 12), "{format}");
    }
    // `common_pid` is not the victim; a moved or resized pid is refused.
    let moved = FORMAT_PID_ONLY.replace("int pid;\toffset:8;", "int pid;\toffset:16;");
    assert!(!has_pid_at(&moved, 8));
    let wider = FORMAT_PID_ONLY.replace(
        "int pid;\toffset:8;\tsize:4;",
        "int pid;\toffset:8;\tsize:8;",
    );
    assert!(!has_pid_at(&wider, 8));
    assert!(!has_pid_at("", 8));
    assert!(!has_pid_at("garbage\n\u{0}field:int pid", 8));
}

#[test]
fn the_layout_follows_the_tracepoint_prototype() {
    let tgid = |offset, size| move || Ok(Field { offset, size });
    // Older kernels: TP_PROTO(int pid); the task's fields are not needed.
    let pid_only = [ArgType::Int { size: 4 }];
    let unused = || -> Result<Field, String> { panic!("tgid looked up for an int pid") };
    assert_eq!(decide_layout(&pid_only, unused), Ok(Layout::Pid));
    // Newer kernels: TP_PROTO(struct task_struct *task, uid_t uid).
    let task = [
        ArgType::StructPtr("task_struct".into()),
        ArgType::Int { size: 4 },
    ];
    assert_eq!(
        decide_layout(&task, tgid(2504, 4)),
        Ok(Layout::Task { tgid_offset: 2504 })
    );
    // What the programs cannot read is refused, with the reason.
    let e = decide_layout(&task, tgid(2504, 8)).unwrap_err();
    assert!(e.contains("8 bytes at offset 2504"), "{e}");
    let e = decide_layout(
        &task,
        || Err("struct task_struct has no member tgid".into()),
    )
    .unwrap_err();
    assert!(e.contains("no member tgid"), "{e}");
    for args in [
        vec![],
        vec![ArgType::Int { size: 8 }],
        vec![ArgType::StructPtr("mm_struct".into())],
        vec![ArgType::Other(3)],
    ] {
        let e = decide_layout(&args, tgid(2504, 4)).unwrap_err();
        assert!(e.contains("neither an int pid nor"), "{e}");
    }
}

/// This kernel's BTF declares one of the two prototypes the programs know
/// (the task, both on this 6.18 and on the VM's Debian 6.1.0-48).
#[test]
fn this_kernels_mark_victim_has_a_known_layout() {
    if !Path::new(VMLINUX_BTF).exists() {
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            format!("\n!!! NOT RUN: no {VMLINUX_BTF} on this kernel\n").as_bytes(),
        );
        return;
    }
    let vmlinux = std::fs::read(VMLINUX_BTF).map_err(|e| e.to_string());
    let layout = raw_layout(&vmlinux).expect("a known mark_victim layout");
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("mark_victim layout on this kernel: {layout:?}\n").as_bytes(),
    );
    if let Layout::Task { tgid_offset } = layout {
        // pid_t pid and pid_t tgid sit next to each other in task_struct.
        let btf = vmlinux.as_ref().unwrap();
        let pid = int_field(btf, "task_struct", "pid").unwrap();
        assert_eq!((pid.offset + 4, pid.size), (tgid_offset, 4));
    }
    let unreadable = Err("reading /nonexistent: No such file".to_string());
    assert!(
        raw_layout(&unreadable)
            .unwrap_err()
            .contains("/nonexistent")
    );
}

/// Every OOM program passes this kernel's verifier, including the one for
/// the other prototype (`int pid`), which no test kernel here attaches: the
/// machine and the VM both pass the task.
#[test]
fn every_oom_program_passes_the_verifier() {
    if !testkit::guard::can_run(testkit::guard::ebpf_missing(!OBJECT.is_empty())) {
        return;
    }
    let btf = aya::Btf::from_sys_fs().expect("kernel BTF");
    let mut ebpf = aya::EbpfLoader::new()
        .btf(Some(&btf))
        .load(OBJECT)
        .expect("load the object");
    for program in [OOM_PID_PROGRAM, OOM_TASK_PROGRAM] {
        let raw = program_mut::<RawTracePoint>(&mut ebpf, program).unwrap();
        raw.load()
            .unwrap_or_else(|e| panic!("{}", load_error(program, &e)));
    }
    let tp = program_mut::<TracePoint>(&mut ebpf, OOM_TRACEPOINT_PROGRAM).unwrap();
    tp.load()
        .unwrap_or_else(|e| panic!("{}", load_error(OOM_TRACEPOINT_PROGRAM, &e)));
}
