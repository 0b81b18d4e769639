//! Attaching to an interface of another network namespace through the
//! public API (`Datapath::attach_in` / `detach_in`), with no `setns` by the
//! caller: the programs land on that namespace's interface, not on the one
//! with the same index in the caller's namespace.

use podnet_datapath::{Datapath, Error, Hook, Options};
use testsupport::{require_privileges, BpfDir, Netns};

/// How many tcx programs run at ingress (`egress` false) or egress of
/// `ifindex`, asked in the calling thread's namespace.
fn tcx_count(ifindex: u32, egress: bool) -> u32 {
    let attach = if egress {
        libbpf_sys::BPF_TCX_EGRESS
    } else {
        libbpf_sys::BPF_TCX_INGRESS
    };
    // SAFETY: zeroed opts are valid; sz set; no id arrays, so only the count is written.
    let mut opts: libbpf_sys::bpf_prog_query_opts = unsafe { std::mem::zeroed() };
    opts.sz = std::mem::size_of::<libbpf_sys::bpf_prog_query_opts>() as _;
    // SAFETY: valid opts for the call.
    let rc = unsafe { libbpf_sys::bpf_prog_query_opts(ifindex as i32, attach, &mut opts) };
    assert_eq!(rc, 0, "BPF_PROG_QUERY on ifindex {ifindex}");
    // SAFETY: the kernel wrote the count.
    unsafe { opts.__bindgen_anon_1.count }
}

#[test]
fn attach_in_lands_in_the_named_netns_only() {
    require_privileges!();
    // Two namespaces with an interface of the same index: the test thread
    // sits in `here`, the programs must land in `there`.
    let here = Netns::new("dp-here");
    let there = Netns::new("dp-there");
    here.add_link("d0");
    there.add_link("d0");
    let idx = there.ifindex("d0");
    assert_eq!(here.ifindex("d0"), idx, "same index in both namespaces");
    let pins = BpfDir::new("dp-netns");
    let mut dp = Datapath::load(&Options::small(pins.path())).unwrap();
    here.run(|| {
        dp.attach_in(there.path(), idx, Hook::FromContainer)
            .unwrap();
        dp.attach_in(there.path(), idx, Hook::ToContainer).unwrap();
        // Attaching again is a no-op there too.
        dp.attach_in(there.path(), idx, Hook::ToContainer).unwrap();
    });
    assert_eq!(dp.attached(), 2);
    assert_eq!(
        there.run(|| (tcx_count(idx, false), tcx_count(idx, true))),
        (1, 1)
    );
    assert_eq!(
        here.run(|| (tcx_count(idx, false), tcx_count(idx, true))),
        (0, 0)
    );

    here.run(|| {
        dp.detach_in(there.path(), idx, Hook::FromContainer)
            .unwrap();
        dp.detach_in(there.path(), idx, Hook::ToContainer).unwrap();
    });
    assert_eq!(dp.attached(), 0);
    assert_eq!(
        there.run(|| (tcx_count(idx, false), tcx_count(idx, true))),
        (0, 0)
    );

    // A namespace path that is not one is a typed error naming it.
    let e = dp
        .attach_in("/nonexistent/netns", idx, Hook::FromContainer)
        .unwrap_err();
    assert!(matches!(e, Error::Netns { .. }), "{e:?}");
    assert!(e.to_string().contains("/nonexistent/netns"), "{e}");
    assert_eq!(e.errno(), Some(libc::ENOENT));
    dp.teardown().unwrap();
}
