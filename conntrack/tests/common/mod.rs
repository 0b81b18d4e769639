//! Helpers shared by the privileged tests.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

use podnet_conntrack::{CtEntry, CtKey4, CtKey6, TupleFlags};

/// Runs bpftool and returns stdout; panics with stderr on failure.
pub fn bpftool(args: &[&str]) -> String {
    let out = Command::new("bpftool")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("bpftool {}: {e}", args.join(" ")));
    assert!(
        out.status.success(),
        "bpftool {} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `bpftool map create PATH type T key K value V entries N name NAME`.
pub fn bpftool_create(path: &Path, ty: &str, key: u32, value: u32, entries: u32, name: &str) {
    bpftool(&[
        "map",
        "create",
        path.to_str().unwrap(),
        "type",
        ty,
        "key",
        &key.to_string(),
        "value",
        &value.to_string(),
        "entries",
        &entries.to_string(),
        "name",
        name,
    ]);
}

/// Formats bytes as bpftool `hex` arguments.
pub fn hex_args(bytes: &[u8]) -> Vec<String> {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `bpftool map update pinned PATH key hex .. value hex ..`.
pub fn bpftool_update(path: &Path, key: &[u8], value: &[u8]) {
    let mut args: Vec<String> = vec![
        "map".into(),
        "update".into(),
        "pinned".into(),
        path.to_str().unwrap().into(),
        "key".into(),
        "hex".into(),
    ];
    args.extend(hex_args(key));
    args.push("value".into());
    args.push("hex".into());
    args.extend(hex_args(value));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    bpftool(&refs);
}

/// Parses `bpftool -j map dump` output of a map without BTF into
/// (key bytes, value bytes) pairs.
pub fn bpftool_dump(path: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let out = bpftool(&["-j", "map", "dump", "pinned", path.to_str().unwrap()]);
    let mut res = Vec::new();
    let mut rest = out.as_str();
    while let Some(i) = rest.find("\"key\":[") {
        rest = &rest[i + 7..];
        let end = rest.find(']').unwrap();
        let key = parse_hex_list(&rest[..end]);
        rest = &rest[end..];
        let j = rest.find("\"value\":[").unwrap();
        rest = &rest[j + 9..];
        let end = rest.find(']').unwrap();
        let value = parse_hex_list(&rest[..end]);
        rest = &rest[end..];
        res.push((key, value));
    }
    res
}

fn parse_hex_list(s: &str) -> Vec<u8> {
    s.split(',')
        .map(|t| t.trim().trim_matches('"'))
        .filter(|t| !t.is_empty())
        .map(|t| u8::from_str_radix(t.trim_start_matches("0x"), 16).unwrap())
        .collect()
}

/// The i-th synthetic IPv4 key: distinct addresses and ports.
pub fn key4(i: u32) -> CtKey4 {
    let a = 0x0a00_0000u32 | (i & 0x00ff_ffff);
    CtKey4::new(
        a.into(),
        std::net::Ipv4Addr::new(192, 168, (i >> 8) as u8, i as u8),
        80,
        (1024 + (i % 60000)) as u16,
        if i % 3 == 0 { 17 } else { 6 },
        if i % 2 == 0 {
            TupleFlags::OUT
        } else {
            TupleFlags::IN
        },
    )
}

/// The i-th synthetic IPv6 key.
pub fn key6(i: u32) -> CtKey6 {
    let mut d = [0u8; 16];
    d[0] = 0xf0;
    d[1] = 0x0d;
    d[12..16].copy_from_slice(&i.to_be_bytes());
    let mut s = d;
    s[11] = 1;
    CtKey6::new(
        d.into(),
        s.into(),
        443,
        (i % 60000) as u16,
        6,
        TupleFlags::OUT,
    )
}

/// An entry with `lifetime` and some recognisable fields.
pub fn entry(lifetime: u32, tag: u64) -> CtEntry {
    let mut e = CtEntry::default();
    e.set_lifetime(lifetime);
    e.set_packets(tag);
    e.set_bytes(tag * 100);
    e.set_rev_nat_index((tag % 65536) as u16);
    e
}
