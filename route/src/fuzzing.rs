//! The netlink decoders, exposed for the fuzz targets in `fuzz/` (feature
//! `fuzzing`; not part of the supported API, may change at any time).
//!
//! Each function runs one decoder over bytes as the kernel would send them
//! and returns what it made of them, so a fuzz target can check its
//! invariants; none of them may panic, whatever the bytes.

use crate::codec;
use crate::nl::{self, DumpState, NlError};
use crate::{Route, Rule};

/// Decodes an `RTM_NEWROUTE` body (`rtmsg` + attributes). `Err` carries
/// the decode error's text.
pub fn decode_route(buf: &[u8]) -> Result<Option<Route>, String> {
    codec::decode_route(buf)
        .map(|d| d.map(|d| d.route))
        .map_err(|e| format!("{e:?}"))
}

/// Decodes an `RTM_NEWRULE` body (`fib_rule_hdr` + attributes); the flag
/// says whether it has selectors this crate does not model.
pub fn decode_rule(buf: &[u8]) -> Result<Option<(Rule, bool)>, String> {
    codec::decode_rule_full(buf).map_err(|e| format!("{e:?}"))
}

/// Decodes an `RTM_NEWLINK` body into (index, name).
pub fn decode_link(buf: &[u8]) -> Result<(u32, String), String> {
    codec::decode_link(buf).map_err(|e| format!("{e:?}"))
}

/// Decodes an `NLMSG_ERROR` body with header flags `flags` into (errno,
/// extended-ack message).
pub fn parse_error(flags: u16, payload: &[u8]) -> Result<(i32, Option<String>), String> {
    nl::parse_error(flags, payload).map_err(|e| format!("{e:?}"))
}

/// Walks the messages of one datagram: (type, flags, sequence, payload
/// length) of each, or the framing error that ended the walk.
#[must_use]
pub fn messages(datagram: &[u8]) -> Vec<Result<(u16, u16, u32, usize), String>> {
    nl::messages(datagram)
        .map(|m| {
            m.map(|m| (m.ty, m.flags, m.seq, m.payload.len()))
                .map_err(|e| format!("{e:?}"))
        })
        .collect()
}

/// Feeds `datagrams` to the dump scanner as the answer to a route dump of
/// sequence `seq`, decoding each route; returns how many routes decoded and
/// the dump's outcome once it completed (`None`: not complete).
#[must_use]
pub fn scan_route_dump(datagrams: &[&[u8]], seq: u32) -> (usize, Option<Result<(), String>>) {
    let mut st = DumpState::default();
    let mut n = 0usize;
    let mut each = |p: &[u8]| -> Result<(), NlError> {
        if codec::decode_route(p)?.is_some() {
            n += 1;
        }
        Ok(())
    };
    let mut done = None;
    for d in datagrams {
        match nl::scan_dump(d, seq, nl::RTM_NEWROUTE, &mut st, &mut each) {
            Ok(Some(r)) => {
                done = Some(r.map_err(|e| format!("{e:?}")));
                break;
            }
            Ok(None) => {}
            Err(e) => {
                done = Some(Err(format!("{e:?}")));
                break;
            }
        }
    }
    (n, done)
}
