//! Reading the datapath's events in the BPF_PROG_TEST_RUN tests.

use std::net::SocketAddr;

use podnet_datapath::{DatapathEvent, DropNotify, Events, TraceNotify};

/// Every event queued now.
pub fn drain(ev: &mut Events) -> Vec<DatapathEvent> {
    let mut out = Vec::new();
    while let Some(e) = ev.try_recv().unwrap() {
        out.push(e);
    }
    out
}

/// The drop notifications of `evs`.
pub fn drops(evs: &[DatapathEvent]) -> Vec<&DropNotify> {
    evs.iter()
        .filter_map(|e| match e {
            DatapathEvent::Drop(d) => Some(d),
            _ => None,
        })
        .collect()
}

/// The trace notifications of `evs`.
pub fn traces(evs: &[DatapathEvent]) -> Vec<&TraceNotify> {
    evs.iter()
        .filter_map(|e| match e {
            DatapathEvent::Trace(t) => Some(t),
            _ => None,
        })
        .collect()
}

/// The one trace queued now (asserting there is exactly one; `what` names
/// the case in the message), and all the events queued with it.
pub fn one_trace(ev: &mut Events, what: &str) -> (TraceNotify, Vec<DatapathEvent>) {
    let evs = drain(ev);
    let t = traces(&evs);
    assert_eq!(t.len(), 1, "{what}: {evs:#?}");
    (t[0].clone(), evs)
}

/// The source and destination (address and port) of an event's flow.
pub fn flow_ends(e: DatapathEvent) -> (SocketAddr, SocketAddr) {
    let f = e.flow().unwrap();
    (
        SocketAddr::new(f.src, f.sport),
        SocketAddr::new(f.dst, f.dport),
    )
}
