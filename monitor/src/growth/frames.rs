//! Which frame of an allocation's stack gets the blame: the first one (from
//! the leaf) that is not the allocator and not the standard library's
//! allocation plumbing. A heap profile's leaf frames are always jemalloc's
//! own (it records the stack from inside `malloc`), then Rust's global
//! allocator shims, then `Vec`/`String`/`HashMap` growing: none of those is
//! what the reader wants to fix.
//!
//! Frames are matched by their demangled name (the pprof `Function.name`),
//! on prefixes. A trait method `<Type as Trait>::method` is matched by its
//! type when that is a path (`<alloc::vec::Vec<T> as Clone>::clone` as
//! `alloc::vec::...`, `<my::Thing as Clone>::clone` as `my::...`), and by its
//! trait when the type is a primitive or a generic parameter
//! (`<u8 as alloc::vec::spec_from_elem::SpecFromElem>::from_elem` as
//! `alloc::vec::...`).

/// Frames that are the allocator itself: jemalloc's entry points and
/// internals (`_rjem_` is tikv-jemalloc-sys's symbol prefix, `je_` jemalloc's
/// own, `prof_`/`imalloc`/`arena_`/`tcache_` its profiling and allocation
/// paths), the C allocation API, Rust's global-allocator shims
/// (`__rust_alloc` → `__rg_alloc`/`__rdl_alloc`) and the `GlobalAlloc` impl of
/// tikv-jemallocator (`__rustc::` is the shims' namespace in newer
/// compilers). Never blamed while any other frame exists.
pub const ALLOCATOR_PREFIXES: &[&str] = &[
    "_rjem_",
    "__rustc::",
    "__rust_alloc",
    "__rust_realloc",
    "__rg_",
    "__rdl_",
    "__libc_malloc",
    "__libc_calloc",
    "__libc_realloc",
    "__libc_memalign",
    "tikv_jemallocator::",
    "alloc::alloc::",
    "std::alloc::",
];

/// jemalloc's internal C functions: matched only on names without `::` (C
/// symbols), so a Rust crate named e.g. `arena_…` or `prof_…` is still blamed.
pub const JEMALLOC_C_PREFIXES: &[&str] = &[
    "je_",
    "prof_",
    "imalloc",
    "ialloc",
    "iralloc",
    "do_rallocx",
    "do_xallocx",
    "arena_",
    "tcache_",
    "malloc_default",
];

/// The C allocation API, matched whole (as prefixes they would also catch
/// unrelated C functions such as `malloc_trim`'s callers' neighbours).
pub const ALLOCATOR_NAMES: &[&str] = &[
    "malloc",
    "calloc",
    "realloc",
    "free",
    "posix_memalign",
    "aligned_alloc",
    "memalign",
    "valloc",
    "pvalloc",
    "mallocx",
    "rallocx",
    "xallocx",
    "sdallocx",
];

/// The collections under the standard library: their frames between the
/// allocator and the caller only say *how* memory was requested (a `Vec`
/// grew, a `HashMap` rehashed, a `String` was formatted), so the caller is
/// blamed instead.
pub const COLLECTION_PREFIXES: &[&str] = &["alloc::", "core::", "hashbrown::"];

/// The standard library proper: skipped like the collections, but preferred
/// to them when a stack has no caller above the allocator (a thread's own
/// start-up: `std::thread::...` says more than `alloc::raw_vec::...`).
pub const STD_PREFIXES: &[&str] = &["std::", "__rust_try"];

/// How a frame is treated when choosing whom to blame, from least to most
/// worth blaming.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FrameKind {
    /// The allocator ([`ALLOCATOR_PREFIXES`], [`ALLOCATOR_NAMES`]).
    Allocator,
    /// Collections' allocation plumbing ([`COLLECTION_PREFIXES`]).
    Collections,
    /// The standard library ([`STD_PREFIXES`]).
    Std,
    /// Anything else: the code that asked for the memory.
    Caller,
}

/// Classifies one frame by its (demangled) function name.
pub fn classify(name: &str) -> FrameKind {
    let bare = subject(name);
    let starts = |prefixes: &[&str]| prefixes.iter().any(|p| bare.starts_with(p));
    let c_symbol = !bare.contains("::");
    if ALLOCATOR_NAMES.contains(&name)
        || starts(ALLOCATOR_PREFIXES)
        || (c_symbol && starts(JEMALLOC_C_PREFIXES))
    {
        FrameKind::Allocator
    } else if starts(COLLECTION_PREFIXES) {
        FrameKind::Collections
    } else if starts(STD_PREFIXES) {
        FrameKind::Std
    } else {
        FrameKind::Caller
    }
}

/// The path a name is matched by: the name itself, or for a qualified
/// `<Type as Trait>::m` the type when it is a path, else the trait; for an
/// inherent `<Type>::m` the type. References, pointers and `dyn` are looked
/// through.
fn subject(name: &str) -> &str {
    let Some(inner) = name.strip_prefix('<') else {
        return name;
    };
    // The qualified part ends at the `>` matching the leading `<`; ` as `
    // at that level separates type and trait.
    let mut depth = 0usize;
    let mut as_at = None;
    let mut end = inner.len();
    let bytes = inner.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'<' => depth += 1,
            b'>' if i > 0 && bytes[i - 1] == b'-' => {}
            b'>' if depth == 0 => {
                end = i;
                break;
            }
            b'>' => depth -= 1,
            b' ' if depth == 0 && as_at.is_none() && inner[i..].starts_with(" as ") => {
                as_at = Some(i)
            }
            _ => {}
        }
    }
    let (ty, tr) = match as_at {
        Some(i) => (&inner[..i], Some(&inner[i + 4..end])),
        None => (&inner[..end], None),
    };
    let ty = look_through(ty);
    let is_path = ty.split('<').next().is_some_and(|head| head.contains("::"));
    match tr {
        Some(tr) if !is_path => look_through(tr),
        _ => ty,
    }
}

/// `&mut dyn a::B` → `a::B`.
fn look_through(mut ty: &str) -> &str {
    loop {
        let next = ty
            .trim_start_matches(['&', '*', '(', '['])
            .trim_start_matches("mut ")
            .trim_start_matches("const ")
            .trim_start_matches("dyn ");
        if next == ty {
            return ty;
        }
        ty = next;
    }
}

/// The index (leaf first) of the frame to blame: the first
/// [`FrameKind::Caller`]; failing that the first `std::` frame, then the
/// first collections frame; failing all (a stack of allocator frames only)
/// the leaf. `None` only for an empty stack.
pub fn blamed<S: AsRef<str>>(frames: &[S]) -> Option<usize> {
    let kinds: Vec<FrameKind> = frames.iter().map(|f| classify(f.as_ref())).collect();
    blamed_kind(&kinds)
}

/// [`blamed`] over frames already classified.
pub fn blamed_kind(kinds: &[FrameKind]) -> Option<usize> {
    // The first frame of the best kind present.
    let best = kinds.iter().max()?;
    kinds.iter().position(|k| k == best)
}

/// Makes a long Rust name readable in a table of `max` characters: generic
/// arguments become `<…>` (`Vec<HashMap<K, V>>` → `Vec<…>`; the brackets of
/// a qualified path `<A as B>::f` stay, with their contents shortened), a
/// legacy `::h<16 hex>` hash is dropped, and what is still too long keeps
/// its end (the function's own name) behind a leading `…`.
pub fn shorten(name: &str, max: usize) -> String {
    let name = strip_hash(name);
    let mut out = String::with_capacity(name.len());
    let mut depth = 0usize;
    let mut prev: Option<char> = None;
    for c in name.chars() {
        if depth > 0 {
            match c {
                '<' => depth += 1,
                // `->` inside `Fn(A) -> B` closes nothing.
                '>' if prev != Some('-') => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                out.push_str("<…>");
            }
        } else if c == '<' && prev.is_some_and(|p| p.is_alphanumeric() || p == '_' || p == ':') {
            depth = 1;
            // `Vec::<T>` reads as `Vec<…>`.
            if out.ends_with("::") {
                out.truncate(out.len() - 2);
            }
        } else {
            out.push(c);
        }
        prev = Some(c);
    }
    if depth > 0 {
        // Unbalanced: the name was cut; say so.
        out.push_str("<…");
    }
    let count = out.chars().count();
    if count <= max {
        return out;
    }
    let keep = max.saturating_sub(1);
    let tail: String = out.chars().skip(count - keep).collect();
    format!("…{tail}")
}

/// Drops a legacy-mangling hash suffix (`::h0123456789abcdef`).
fn strip_hash(name: &str) -> &str {
    match name.rsplit_once("::h") {
        Some((head, hash)) if hash.len() == 16 && hash.chars().all(|c| c.is_ascii_hexdigit()) => {
            head
        }
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_crates_named_like_jemalloc_internals_are_still_blamed() {
        for name in [
            "arena_alloc::Arena::push",
            "prof_tools::record",
            "je_utils::grow",
            "<arena_foo::Pool as core::ops::Drop>::drop",
        ] {
            assert_eq!(classify(name), FrameKind::Caller, "{name}");
        }
        assert_eq!(classify("arena_malloc_hard"), FrameKind::Allocator);
    }

    #[test]
    fn allocator_frames_are_recognised() {
        for name in [
            "_rjem_je_prof_backtrace",
            "_rjem_malloc",
            "je_malloc_default",
            "prof_backtrace_impl",
            "imalloc_body",
            "malloc",
            "calloc",
            "realloc",
            "posix_memalign",
            "__rust_alloc",
            "__rdl_alloc",
            "__rg_alloc",
            "<tikv_jemallocator::Jemalloc as core::alloc::global::GlobalAlloc>::alloc",
            "tikv_jemallocator::layout_to_flags",
            "alloc::alloc::alloc",
            "alloc::alloc::Global::alloc_impl",
            "<alloc::alloc::Global as core::alloc::Allocator>::allocate",
            "std::alloc::rust_oom",
            "__rustc::__rust_alloc_zeroed",
            "__rustc::__rust_realloc",
            "do_rallocx",
            "irallocx_prof",
            "__rdl_alloc_zeroed",
            "__libc_malloc",
        ] {
            assert_eq!(classify(name), FrameKind::Allocator, "{name}");
        }
    }

    #[test]
    fn collection_and_std_frames_are_recognised() {
        for name in [
            "alloc::raw_vec::RawVec<T,A>::try_allocate_in",
            "alloc::raw_vec::finish_grow",
            "<alloc::vec::Vec<T> as alloc::vec::spec_from_iter::SpecFromIter<T,I>>::from_iter",
            "alloc::vec::from_elem",
            "<alloc::string::String as core::clone::Clone>::clone",
            "core::iter::traits::iterator::Iterator::collect",
            "hashbrown::raw::RawTable<T,A>::reserve_rehash",
            "<u8 as alloc::vec::spec_from_elem::SpecFromElem>::from_elem",
            "<T as alloc::vec::spec_from_elem::SpecFromElem>::from_elem",
            "<&dyn core::ops::function::Fn<(), Output = i32> + core::marker::Sync as core::ops::function::FnOnce<()>>::call_once",
            "<alloc::boxed::Box<dyn core::ops::function::FnOnce<(), Output = ()> + core::marker::Send> as core::ops::function::FnOnce<()>>::call_once",
        ] {
            assert_eq!(classify(name), FrameKind::Collections, "{name}");
        }
        for name in [
            "std::collections::hash::map::HashMap<K,V,S>::insert",
            "std::thread::Builder::spawn_unchecked_",
            "<std::io::BufReader<R> as std::io::Read>::read",
            "<std::sys::thread::unix::Thread>::new::thread_start",
            "__rust_try",
        ] {
            assert_eq!(classify(name), FrameKind::Std, "{name}");
        }
    }

    #[test]
    fn callers_are_everything_else() {
        for name in [
            "demo_target::memory::allocate_touched",
            "my_service::cache::Cache::insert",
            "<my_service::Thing as core::clone::Clone>::clone",
            "<&mut my_service::Thing as core::fmt::Write>::write_str",
            "<my_service::Wrapper<alloc::vec::Vec<u8>> as core::clone::Clone>::clone",
            "backtrace::symbolize::gimli::elf::<impl backtrace::symbolize::gimli::Mapping>::new",
            "<tokio::runtime::blocking::task::BlockingTask<T> as core::future::future::Future>::poll",
            "<u8 as my_service::Codec>::encode",
            "demo_target::handle::{{closure}}::{{closure}}",
            "tokio::runtime::task::raw::poll",
            "malloc_trim_wrapper",
            "__libc_start_main",
            "mallory::steal",
            "0x1234",
            "",
        ] {
            assert_eq!(classify(name), FrameKind::Caller, "{name}");
        }
    }

    #[test]
    fn the_first_caller_frame_is_blamed() {
        let stack = [
            "prof_backtrace_impl",
            "_rjem_je_malloc_default",
            "__rust_alloc",
            "alloc::raw_vec::RawVec<T,A>::try_allocate_in",
            "alloc::vec::from_elem",
            "demo_target::memory::allocate_touched",
            "demo_target::memory::leak",
            "main",
        ];
        assert_eq!(blamed(&stack), Some(5));
        // No caller: the first std frame, else the first collections frame.
        assert_eq!(
            blamed(&[
                "malloc",
                "alloc::raw_vec::finish_grow",
                "std::thread::spawn",
                "std::rt::lang_start"
            ]),
            Some(2)
        );
        assert_eq!(
            blamed(&[
                "malloc",
                "alloc::raw_vec::finish_grow",
                "alloc::vec::from_elem"
            ]),
            Some(1)
        );
        // Only the allocator: the leaf.
        assert_eq!(blamed(&["prof_backtrace_impl", "malloc"]), Some(0));
        assert_eq!(blamed::<&str>(&[]), None);
        // An unsymbolized frame is a caller: addresses are never skipped.
        assert_eq!(blamed(&["malloc", "0x7f00", "main"]), Some(1));
    }

    /// Stacks of a real demo-target dump (jemalloc_pprof 0.8, rustc 1.95),
    /// leaf first, inlined frames flattened, cut after the blamed frame's caller.
    #[test]
    fn real_jemalloc_pprof_stacks_blame_the_demos_code() {
        let calloc = [
            "prof_backtrace_impl",
            "_rjem_je_prof_backtrace",
            "_rjem_je_prof_tctx_create",
            "prof_alloc_prep",
            "imalloc_body",
            "imalloc",
            "calloc",
            "<tikv_jemallocator::Jemalloc as core::alloc::global::GlobalAlloc>::alloc_zeroed",
            "__rustc::__rust_alloc_zeroed",
            "alloc::alloc::alloc_zeroed",
            "alloc::alloc::Global::alloc_impl_runtime",
            "alloc::alloc::Global::alloc_impl",
            "<alloc::alloc::Global as core::alloc::Allocator>::allocate_zeroed",
            "alloc::raw_vec::RawVecInner<A>::try_allocate_in",
            "alloc::raw_vec::RawVecInner<A>::with_capacity_zeroed_in",
            "alloc::raw_vec::RawVec<T,A>::with_capacity_zeroed_in",
            "<u8 as alloc::vec::spec_from_elem::SpecFromElem>::from_elem",
            "alloc::vec::from_elem",
            "demo_target::memory::allocate_touched",
            "demo_target::memory::leak",
        ];
        assert_eq!(blamed(&calloc), Some(18));
        let realloc = [
            "prof_backtrace_impl",
            "_rjem_je_prof_backtrace",
            "_rjem_je_prof_tctx_create",
            "prof_alloc_prep",
            "irallocx_prof",
            "do_rallocx",
            "realloc",
            "<tikv_jemallocator::Jemalloc as core::alloc::global::GlobalAlloc>::realloc",
            "__rustc::__rust_realloc",
            "alloc::alloc::realloc",
            "alloc::alloc::Global::grow_impl_runtime",
            "alloc::alloc::Global::grow_impl",
            "<alloc::alloc::Global as core::alloc::Allocator>::grow",
            "alloc::raw_vec::RawVecInner<A>::finish_grow",
            "alloc::raw_vec::RawVecInner<A>::grow_amortized",
            "alloc::raw_vec::RawVecInner<A>::grow_one",
            "alloc::raw_vec::RawVec<T,A>::grow_one",
            "alloc::vec::Vec<T,A>::push_mut",
            "alloc::vec::Vec<T,A>::push",
            "gimli::read::line::LineProgramHeader<R,Offset>::parse",
        ];
        assert_eq!(blamed(&realloc), Some(19));
    }

    #[test]
    fn shorten_drops_generic_arguments_and_keeps_the_end() {
        assert_eq!(
            shorten("alloc::vec::Vec<std::collections::HashMap<K, V>>::push", 80),
            "alloc::vec::Vec<…>::push"
        );
        assert_eq!(
            shorten("<alloc::vec::Vec<T> as core::clone::Clone>::clone", 80),
            "<alloc::vec::Vec<…> as core::clone::Clone>::clone"
        );
        assert_eq!(
            shorten("core::ops::function::FnOnce::call_once<F, fn() -> u8>", 80),
            "core::ops::function::FnOnce::call_once<…>"
        );
        assert_eq!(shorten("a::Vec::<u8>::new", 80), "a::Vec<…>::new");
        assert_eq!(shorten("demo::f::h0123456789abcdef", 80), "demo::f");
        assert_eq!(shorten("cut::Vec<HashMap<K", 80), "cut::Vec<…");
        let long = format!("{}::the_function", "a_module".repeat(20));
        let short = shorten(&long, 30);
        assert_eq!(short.chars().count(), 30);
        assert!(short.starts_with('…') && short.ends_with("::the_function"));
        // Plain names and comparisons survive.
        assert_eq!(shorten("a < b", 80), "a < b");
        assert_eq!(shorten("0x1f00", 80), "0x1f00");
    }
}
