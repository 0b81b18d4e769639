//! The bodies of the fuzz targets, in one place: each `fuzz_targets/NAME.rs`
//! calls the function of the same name, and `tests/replay.rs` runs every
//! body over its checked-in corpus (`corpus/NAME/`) on stable Rust, so what
//! fuzzing once found stays fixed.
//!
//! A body panics exactly when it finds a bug: a decoder or parser that
//! panics, or an invariant that does not hold (a text that does not parse
//! back to what printed it, bytes that do not encode back to themselves).
//!
//! ```
//! podnet_fuzz::route_text(b"10.0.0.0/8 via 10.0.0.1 dev eth0 table 300");
//! podnet_fuzz::rule_text(b"priority 30 from 10.0.0.5 lookup 92");
//! ```

use std::fmt::Write as _;
use std::time::Duration;

use podnet_conntrack::nat::NatEntry;
use podnet_conntrack::{AnyCtKey, CtEntry, CtKey4, CtKey4Global, CtKey6, CtKey6Global, GcInterval};
use podnet_route::{Route, Rule, ShowStyle};

/// A fuzz body: takes the fuzzer's bytes, panics on a bug.
pub type Body = fn(&[u8]);

/// Every target: its name (the binary in `fuzz_targets/` and the corpus
/// directory) and its body.
pub const TARGETS: &[(&str, Body)] = &[
    ("route_text", route_text),
    ("rule_text", rule_text),
    ("netlink_decode", netlink_decode),
    ("ct_decode", ct_decode),
    ("gc_interval", gc_interval),
];

/// `Route`'s `FromStr` and `Display`: whatever parses prints as text that
/// parses back to the same route (and to the same text); `show()`,
/// `to_ip_command()` and `validate()` never panic.
pub fn route_text(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(r) = text.parse::<Route>() else {
        return;
    };
    let printed = r.to_string();
    let again: Route = printed
        .parse()
        .unwrap_or_else(|e| panic!("{text:?} printed as {printed:?}, which does not parse: {e}"));
    assert_eq!(again, r, "{text:?} -> {printed:?} parsed back differently");
    assert_eq!(again.to_string(), printed);
    let cmd = r.to_ip_command();
    assert_eq!(cmd.parse::<Route>().ok().as_ref(), Some(&r), "{cmd:?}");
    let _ = r.show(ShowStyle::TableAll).to_string();
    let _ = r.show(ShowStyle::OneTable).to_string();
    let _ = r.validate(podnet_route::Op::Upsert);
}

/// `Rule`'s `FromStr` and `Display`, like [`route_text`]; a parsed rule's
/// prefixes are of its family.
pub fn rule_text(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(r) = text.parse::<Rule>() else {
        return;
    };
    for net in [r.from, r.to].into_iter().flatten() {
        assert_eq!(
            net.addr().is_ipv6(),
            r.family == podnet_route::Family::V6,
            "{text:?}: {net} in a {:?} rule",
            r.family
        );
    }
    let printed = r.to_string();
    let again: Rule = printed
        .parse()
        .unwrap_or_else(|e| panic!("{text:?} printed as {printed:?}, which does not parse: {e}"));
    assert_eq!(again, r, "{text:?} -> {printed:?} parsed back differently");
    let cmd = r.to_ip_command();
    assert_eq!(cmd.parse::<Rule>().ok().as_ref(), Some(&r), "{cmd:?}");
    let _ = r.show().to_string();
    let _ = r.validate(podnet_route::Op::ReplaceRule);
}

/// The netlink decoders of podnet-route (feature `fuzzing`): the first
/// byte picks one, the rest is its input. Decoded routes and rules must
/// print without panicking; an errno is never negative.
pub fn netlink_decode(data: &[u8]) {
    use podnet_route::fuzzing as f;
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 6 {
        0 => {
            if let Ok(Some(r)) = f::decode_route(rest) {
                let _ = r.to_string();
                let _ = r.show(ShowStyle::TableAll).to_string();
            }
        }
        1 => {
            if let Ok(Some((r, _))) = f::decode_rule(rest) {
                let _ = r.to_string();
                let _ = r.show().to_string();
            }
        }
        2 => {
            let _ = f::decode_link(rest);
        }
        3 => {
            let (flags, payload) = match rest {
                [a, b, p @ ..] => (u16::from_ne_bytes([*a, *b]), p),
                _ => return,
            };
            if let Ok((errno, _)) = f::parse_error(flags, payload) {
                assert!(errno >= 0, "negative errno {errno}");
            }
        }
        4 => {
            for m in f::messages(rest).into_iter().flatten() {
                assert!(m.3 <= rest.len());
            }
        }
        _ => {
            // Two datagrams of a dump, split where the first byte says.
            let cut = rest.first().map_or(0, |b| usize::from(*b)).min(rest.len());
            let (a, b) = rest.split_at(cut);
            let _ = f::scan_route_dump(&[a, b], 1);
        }
    }
}

/// The conntrack key, entry and NAT decoders and their text (public API of
/// podnet-conntrack): the first byte picks a type, the rest is its bytes.
/// Bytes that decode encode back to themselves; `Display` and `dump` never
/// panic.
pub fn ct_decode(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let mut out = String::new();
    match which % 7 {
        0 => {
            if let Ok(k) = CtKey4::from_bytes(rest) {
                assert_eq!(&k.to_bytes()[..], rest);
                let _ = write!(out, "{k}");
                k.dump(&mut out, false);
                k.dump(&mut out, true);
            }
        }
        1 => {
            if let Ok(k) = CtKey6::from_bytes(rest) {
                assert_eq!(&k.to_bytes()[..], rest);
                let _ = write!(out, "{k}");
                k.dump(&mut out, false);
                k.dump(&mut out, true);
            }
        }
        2 => {
            if let Ok(k) = CtKey4Global::from_bytes(rest) {
                assert_eq!(&k.to_bytes()[..], rest);
                let _ = write!(out, "{k}");
                k.dump(&mut out, true);
                let any = AnyCtKey::from(k);
                any.dump(&mut out, true, false);
                let _ = (any.src_ip(), any.dst_ip(), any.sport(), any.dport());
            }
        }
        3 => {
            if let Ok(k) = CtKey6Global::from_bytes(rest) {
                assert_eq!(&k.to_bytes()[..], rest);
                let _ = write!(out, "{k}");
                k.dump(&mut out, false);
                let any = AnyCtKey::from(k);
                any.dump(&mut out, false, true);
                let _ = write!(out, "{any}");
            }
        }
        4 => {
            if let Ok(e) = CtEntry::from_bytes(rest) {
                assert_eq!(&e.to_bytes()[..], rest);
                let _ = write!(out, "{e}");
                let _ = e.flags_string();
                let _ = e.string_with_time_diff(Some("5"));
                let _ = (e.flags(), e.rev_nat_index());
            }
        }
        n => {
            // The family without naming its type (so this body does not
            // depend on the name podnet-conntrack gives it).
            let fam = if n == 5 {
                AnyCtKey::from(CtKey4::from_array([0; CtKey4::SIZE])).family()
            } else {
                AnyCtKey::from(CtKey6::from_array([0; CtKey6::SIZE])).family()
            };
            if let Ok(e) = NatEntry::from_bytes(fam, rest) {
                assert_eq!(e.to_bytes(), rest);
                let _ = write!(out, "{e}");
                let _ = (e.to_addr(), e.to_port(), e.created(), e.needs_ct());
            }
        }
    }
}

fn take<const N: usize>(data: &mut &[u8]) -> [u8; N] {
    let mut b = [0u8; N];
    let n = data.len().min(N);
    b[..n].copy_from_slice(&data[..n]);
    *data = &data[n..];
    b
}

fn duration(data: &mut &[u8]) -> Duration {
    let secs = u64::from_le_bytes(take::<8>(data));
    let nanos = u32::from_le_bytes(take::<4>(data)) % 1_000_000_000;
    Duration::new(secs, nanos)
}

/// The GC interval arithmetic (`calculate_interval`, `GcInterval`) over
/// any durations and ratios: no panic, and the result respects the
/// configured maximum.
pub fn gc_interval(data: &[u8]) {
    let mut d = data;
    let prev = duration(&mut d);
    let ratio = f64::from_le_bytes(take::<8>(&mut d));
    let _ = podnet_conntrack::calculate_interval(prev, ratio);
    let flags = take::<1>(&mut d)[0];
    let mut iv = GcInterval::default();
    if flags & 1 != 0 {
        iv.fixed = Some(duration(&mut d));
    }
    if flags & 2 != 0 {
        iv.max = Some(duration(&mut d));
    }
    while !d.is_empty() {
        let actual = duration(&mut d);
        let ratio = f64::from_le_bytes(take::<8>(&mut d));
        let next = iv.get_interval(actual, ratio);
        if let (None, Some(m)) = (iv.fixed.filter(|f| !f.is_zero()), iv.max) {
            if !m.is_zero() {
                assert!(next <= m, "{next:?} above the maximum {m:?}");
            }
        }
    }
}
