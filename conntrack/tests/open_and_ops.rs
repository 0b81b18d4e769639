//! Opening maps (by path, by name, created by bpftool as the datapath or a
//! Cilium agent would), the errors for bad input, and typed operations.

mod common;

use common::*;
use podnet_conntrack::{
    CreateOptions, CtKey4, CtKey6, CtMap, CtMapKind, Direction, Error, IpFamily, TupleFlags,
};
use testsupport::{require_privileges, BpfDir};

fn contents(path: &std::path::Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut d = bpftool_dump(path);
    d.sort();
    d
}

#[test]
fn open_by_name_and_path_checks_sizes_and_type() {
    require_privileges!();
    let dir = BpfDir::new("ct-open");
    // Maps as the datapath creates them (Cilium's names, pinned directly in dir).
    for (name, key) in [
        ("cilium_ct4_global", 14),
        ("cilium_ct_any4_global", 14),
        ("cilium_ct6_global", 38),
        ("cilium_ct_any6_global", 38),
        ("cilium_ct4_00042", 14),
    ] {
        bpftool_create(&dir.join(name), "lru_hash", key, 56, 128, "ct");
        let m = CtMap::open_named(dir.path(), name).unwrap();
        assert_eq!(m.family().key_size(), key as usize);
        assert_eq!(m.kind(), CtMapKind::from_name(name));
        assert_eq!(m.max_entries(), 128);
        assert_eq!(m.count().unwrap(), 0);
    }
    let all: Vec<CtMap> = [
        "cilium_ct4_global",
        "cilium_ct_any4_global",
        "cilium_ct6_global",
    ]
    .iter()
    .map(|n| CtMap::open_named(dir.path(), n).unwrap())
    .collect();
    let (t, a) = podnet_conntrack::filter_maps_by_proto(&all, IpFamily::V4);
    assert_eq!(t.unwrap().name(), "cilium_ct4_global");
    assert_eq!(a.unwrap().name(), "cilium_ct_any4_global");
    let (t, a) = podnet_conntrack::filter_maps_by_proto(&all, IpFamily::V6);
    assert_eq!(t.unwrap().name(), "cilium_ct6_global");
    assert!(a.is_none());
    // A plain hash map is accepted too.
    bpftool_create(&dir.join("cilium_ct6_00007"), "hash", 38, 56, 16, "ct");
    CtMap::open(dir.join("cilium_ct6_00007")).unwrap();

    // Wrong key size: a 16-byte key under a v4 name.
    let p = dir.join("cilium_ct_any4_00001");
    bpftool_create(&p, "lru_hash", 16, 56, 16, "bad");
    let before = contents(&p);
    match CtMap::open(&p) {
        Err(Error::KeySize {
            name,
            path,
            expected: 14,
            found: 16,
        }) => {
            assert_eq!(name, "cilium_ct_any4_00001");
            assert_eq!(path, p);
        }
        other => panic!("expected KeySize, got {other:?}"),
    }
    // An IPv6-sized map under an IPv4 name.
    let p6 = dir.join("cilium_ct4_00002");
    bpftool_create(&p6, "lru_hash", 38, 56, 16, "bad");
    let err = CtMap::open(&p6).unwrap_err();
    assert!(
        matches!(
            err,
            Error::KeySize {
                expected: 14,
                found: 38,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("cilium_ct4_00002"), "{err}");
    // Wrong value size.
    let pv = dir.join("cilium_ct4_00003");
    bpftool_create(&pv, "lru_hash", 14, 48, 16, "bad");
    let err = CtMap::open(&pv).unwrap_err();
    assert!(
        matches!(
            err,
            Error::ValueSize {
                expected: 56,
                found: 48,
                ..
            }
        ),
        "{err}"
    );
    // Wrong map type.
    let pa = dir.join("cilium_ct4_00004");
    bpftool_create(&pa, "array", 4, 56, 16, "bad");
    let err = CtMap::open(&pa).unwrap_err();
    assert!(matches!(err, Error::MapType { .. }), "{err}");
    assert!(err.to_string().contains("array"), "{err}");
    // Nothing was modified by the failed opens.
    assert_eq!(contents(&p), before);
    assert!(p.exists() && p6.exists() && pv.exists() && pa.exists());
}

#[test]
fn bad_paths_are_typed_errors() {
    require_privileges!();
    let dir = BpfDir::new("ct-badpath");
    let err = CtMap::open(dir.join("cilium_ct4_global")).unwrap_err();
    assert!(matches!(err, Error::Open { .. }), "{err}");
    assert_eq!(err.errno(), Some(libc::ENOENT));

    // A regular file outside bpffs.
    let tmp = std::env::temp_dir().join(format!("ct-notbpffs-{}", std::process::id()));
    std::fs::write(&tmp, b"not a map").unwrap();
    let err = CtMap::open(&tmp).unwrap_err();
    std::fs::remove_file(&tmp).unwrap();
    assert!(matches!(err, Error::NotBpffs { .. }), "{err}");

    // A directory on bpffs.
    let err = CtMap::open(dir.path()).unwrap_err();
    assert!(matches!(err, Error::Open { .. }), "{err}");

    // A pinned program is not a map.
    let prog = dir.join("cilium_ct4_global");
    pin_trivial_prog(&prog);
    let err = CtMap::open(&prog).unwrap_err();
    assert!(matches!(err, Error::NotAMap { .. }), "{err}");
    assert!(err.to_string().contains("bpf-prog"), "{err}");

    // Not a Cilium name.
    let err = CtMap::open_named(dir.path(), "cilium_lxc").unwrap_err();
    assert!(matches!(err, Error::UnknownName { .. }), "{err}");
}

#[test]
fn wrong_family_key_is_rejected_and_nothing_changes() {
    require_privileges!();
    let dir = BpfDir::new("ct-family");
    let m = CtMap::create(
        &CreateOptions::new(CtMapKind::from_name("cilium_ct4_global").unwrap())
            .max_entries(1024)
            .pin_in(dir.path()),
    )
    .unwrap();
    m.update(&key4(1), &entry(10, 1)).unwrap();
    let before = contents(&dir.join("cilium_ct4_global"));
    let k6 = key6(1);
    for err in [
        m.update(&k6, &entry(1, 1)).unwrap_err(),
        m.lookup(&k6).unwrap_err(),
        m.delete(&k6).unwrap_err(),
    ] {
        assert!(
            matches!(
                err,
                Error::KeyFamily {
                    map: IpFamily::V4,
                    key: IpFamily::V6,
                    key_size: 38,
                    map_key_size: 14,
                    ..
                }
            ),
            "{err}"
        );
    }
    assert_eq!(contents(&dir.join("cilium_ct4_global")), before);
    // Creating over an existing pin fails rather than replace it.
    let err = CtMap::create(
        &CreateOptions::new(CtMapKind::from_name("cilium_ct4_global").unwrap())
            .max_entries(16)
            .pin_in(dir.path()),
    )
    .unwrap_err();
    assert_eq!(err.errno(), Some(libc::EEXIST));
    assert_eq!(contents(&dir.join("cilium_ct4_global")), before);
}

#[test]
fn typed_ops_count_pressure_and_flow_lookup() {
    require_privileges!();
    let dir = BpfDir::new("ct-ops");
    let kind = CtMapKind::from_name("cilium_ct4_global").unwrap();
    let created = CtMap::create(&CreateOptions::new(kind).pin_in(dir.path())).unwrap();
    assert_eq!(
        created.max_entries(),
        podnet_conntrack::DEFAULT_MAX_ENTRIES_TCP
    );
    let m = CtMap::open_named(dir.path(), "cilium_ct4_global").unwrap();
    assert_eq!(m.info().map_type, 9, "LRU hash");
    {
        use libbpf_rs::MapCore as _;
        let h = m.to_map_handle().unwrap();
        assert_eq!(h.key_size(), 14);
        assert_eq!(h.value_size(), 56);
    }
    for i in 0..1000 {
        created.update(&key4(i), &entry(i, u64::from(i))).unwrap();
    }
    assert_eq!(m.count().unwrap(), 1000);
    let p = m.pressure().unwrap();
    assert!((p - 1000.0 / 524_288.0).abs() < 1e-12, "{p}");
    assert_eq!(m.lookup(&key4(7)).unwrap(), Some(entry(7, 7)));
    assert!(m.delete(&key4(7)).unwrap());
    assert!(!m.delete(&key4(7)).unwrap());
    assert_eq!(m.lookup(&key4(7)).unwrap(), None);
    assert_eq!(m.count().unwrap(), 999);

    // Cilium's Lookup/Update by flow: a TCP flow 10.0.0.1:40000 -> 10.0.0.2:80.
    let src = "10.0.0.1:40000".parse().unwrap();
    let dst = "10.0.0.2:80".parse().unwrap();
    let k = CtMap::flow_key(src, dst, 6, Direction::Egress).unwrap();
    let podnet_conntrack::AnyCtKey::V4(k4) = k else {
        panic!()
    };
    assert_eq!(
        k4,
        CtKey4::new(
            [10, 0, 0, 1].into(),
            [10, 0, 0, 2].into(),
            80,
            40000,
            6,
            TupleFlags::OUT
        )
    );
    m.update(&k4, &entry(5, 5)).unwrap();
    assert_eq!(
        podnet_conntrack::lookup(dir.path(), None, src, dst, 6, Direction::Egress).unwrap(),
        Some(entry(5, 5))
    );
    assert_eq!(
        m.lookup_flow(src, dst, 6, Direction::Ingress).unwrap(),
        None
    );
    assert!(
        podnet_conntrack::update(dir.path(), None, src, dst, 6, Direction::Egress, |e| {
            e.set_lifetime(99)
        })
        .unwrap()
    );
    assert_eq!(m.lookup(&k4).unwrap().unwrap().lifetime(), 99);
    assert!(!m
        .update_flow(src, dst, 6, Direction::Ingress, |e| e.set_lifetime(1))
        .unwrap());
    // A v6 flow against a v4 map is a typed error.
    let err = m
        .lookup_flow(
            "[::1]:1".parse().unwrap(),
            "[::2]:2".parse().unwrap(),
            6,
            Direction::Egress,
        )
        .unwrap_err();
    assert!(matches!(err, Error::KeyFamily { .. }), "{err}");
    // Batch delete carries on past keys that are not there.
    let some: Vec<CtKey4> = [10, 11, 7, 12, 100_000, 13]
        .iter()
        .map(|&i| key4(i))
        .collect();
    assert_eq!(m.delete_many(&some).unwrap(), 4);
    for i in [10, 11, 12, 13] {
        assert_eq!(m.lookup(&key4(i)).unwrap(), None);
    }
    assert_eq!(m.count().unwrap(), 996);
    // Flush deletes everything, entries that never expire included (#15).
    m.update(&key4(10), &entry(u32::MAX, 1)).unwrap();
    assert_eq!(m.flush().unwrap(), 997);
    assert_eq!(m.count().unwrap(), 0);
    let _ = CtKey6::default();
}

/// Loads `r0 = 0; exit` as a socket filter and pins it at `path`.
fn pin_trivial_prog(path: &std::path::Path) {
    use podnet_conntrack::libbpf_sys as sys;
    // SAFETY: bpf_insn is plain data; all-zero is a valid value.
    let mut insns: [sys::bpf_insn; 2] = unsafe { std::mem::zeroed() };
    insns[0].code = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K, r0 = imm 0
    insns[1].code = 0x95; // BPF_JMP | BPF_EXIT
    let license = c"GPL";
    // SAFETY: valid instruction array and NUL-terminated strings.
    let fd = unsafe {
        sys::bpf_prog_load(
            sys::BPF_PROG_TYPE_SOCKET_FILTER,
            std::ptr::null(),
            license.as_ptr(),
            insns.as_ptr(),
            2,
            std::ptr::null_mut(),
        )
    };
    assert!(fd >= 0, "bpf_prog_load: {fd}");
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: valid fd and path.
    let r = unsafe { sys::bpf_obj_pin(fd, c.as_ptr()) };
    // SAFETY: we own fd.
    unsafe { libc::close(fd) };
    assert_eq!(r, 0, "bpf_obj_pin");
}

#[test]
fn effective_pressure_reaches_one_when_an_lru_map_evicts() {
    require_privileges!();
    let dir = BpfDir::new("ct-lrufull");
    let kind = CtMapKind::from_name("cilium_ct4_global").unwrap();
    let m = CtMap::create(
        &CreateOptions::new(kind)
            .max_entries(4096)
            .pin_in(dir.path()),
    )
    .unwrap();
    for i in 0..2048 {
        m.update(&key4(i), &entry(1, 1)).unwrap();
    }
    let half = m.effective_pressure().unwrap();
    assert!(half > 0.5 && half < 1.0, "{half}");
    // Far more flows than entries: the map evicts on every insert now.
    for i in 2048..20_000 {
        m.update(&key4(i), &entry(1, 1)).unwrap();
    }
    let raw = m.pressure().unwrap();
    let eff = m.effective_pressure().unwrap();
    eprintln!("full LRU map: pressure {raw:.3}, effective {eff:.3}");
    assert!(eff >= 1.0, "evicting LRU map reads {eff} (pressure {raw})");
    // A plain hash map: the same as pressure, 1.0 only when full.
    let dir2 = BpfDir::new("ct-hashfull");
    let h = CtMap::create(
        &CreateOptions::new(kind)
            .max_entries(1024)
            .pin_in(dir2.path())
            .hash(),
    )
    .unwrap();
    for i in 0..512 {
        h.update(&key4(i), &entry(1, 1)).unwrap();
    }
    assert_eq!(h.effective_pressure().unwrap(), h.pressure().unwrap());
}

#[test]
fn create_refuses_bad_input_before_the_kernel_with_clear_messages() {
    require_privileges!();
    let kind = CtMapKind::from_name("cilium_ct4_global").unwrap();
    // Not bpffs: a typed error naming the directory, no EPERM.
    let tmp = std::env::temp_dir();
    let err = CtMap::create(&CreateOptions::new(kind).max_entries(16).pin_in(&tmp)).unwrap_err();
    assert!(matches!(err, Error::NotBpffs { .. }), "{err}");
    assert!(err.to_string().contains("not on a bpf filesystem"), "{err}");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(!tmp.join("cilium_ct4_global").exists());
    // max_entries 0: refused, nothing created.
    let dir = BpfDir::new("ct-badinput");
    let err =
        CtMap::create(&CreateOptions::new(kind).max_entries(0).pin_in(dir.path())).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
    assert!(
        err.to_string().contains("max_entries must be at least 1"),
        "{err}"
    );
    assert!(!dir.join("cilium_ct4_global").exists());
    let err =
        podnet_conntrack::nat::NatMap::create(podnet_conntrack::IpFamily::V4, 0, Some(dir.path()))
            .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
    // errno / kind / shorthands.
    let err = CtMap::open(dir.join("nothing")).unwrap_err();
    assert!(
        err.is_not_found() && err.errno() == Some(libc::ENOENT),
        "{err}"
    );
    // The cause is not repeated in the message.
    assert!(!err.to_string().contains("os error"), "{err}");
}
