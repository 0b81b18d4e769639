//! Events on real traffic in the two-node lab: a policy deny on node2 for a
//! pod of node1 is seen through node2's events (the ring buffer pinned in
//! its pin directory) with both identities, and the Prometheus text counts it.

use std::time::{Duration, Instant};

use podnet::lab::{self, Lab, LabPlan};
use podnet_datapath::{reason, AttachMode, DatapathEvent, PolicyKey, TrafficDirection};
use testsupport::require_privileges;

#[test]
fn policy_deny_across_nodes_is_seen_in_the_monitor_with_both_identities() {
    require_privileges!();
    let mut lab = Lab::create(&LabPlan::two_nodes("evx"), false).expect("topology");
    lab.install_routes().expect("routes");
    lab.start_datapath(AttachMode::Auto).expect("datapath");
    let (pod1a, pod2a) = (lab.pod("pod1a").unwrap(), lab.pod("pod2a").unwrap());
    let node2 = lab.node("node2").unwrap();
    // A reader of node2's pins, as another process would open them.
    let mut events = podnet_datapath::Events::open(&node2.pin_dir).unwrap();
    assert_eq!(
        lab::ping(pod1a, pod2a.ip(), 1),
        1,
        "allowed before the deny"
    );
    let deny = PolicyKey::new(pod2a.plan.endpoint_id, TrafficDirection::Ingress)
        .identity(pod1a.plan.identity)
        .protocol(1);
    node2.dp().unwrap().deny(&deny).unwrap();
    assert_eq!(lab::ping(pod1a, pod2a.ip(), 1), 0, "denied by policy");

    let deadline = Instant::now() + Duration::from_secs(5);
    let mut found = None;
    while found.is_none() && Instant::now() < deadline {
        match events.recv_timeout(Duration::from_millis(500)).unwrap() {
            Some(DatapathEvent::Drop(d)) if d.reason() == reason::POLICY_DENY => found = Some(d),
            _ => {}
        }
    }
    let d = found.expect("a policy drop event on node2");
    assert_eq!(d.src_identity, pod1a.plan.identity);
    assert_eq!(d.dst_identity, pod2a.plan.identity);
    assert_eq!(d.dst_endpoint, u32::from(pod2a.plan.endpoint_id));
    let text = d.to_string();
    assert!(
        text.starts_with("xx drop (Policy denied by denylist)")
            && text.contains(&format!(
                "identity {}->{}: {} -> {} EchoRequest",
                pod1a.plan.identity,
                pod2a.plan.identity,
                pod1a.ip(),
                pod2a.ip()
            )),
        "{text}"
    );
    let prom = node2.dp().unwrap().prometheus().unwrap();
    assert!(
        prom.contains(
            "cilium_drop_count_total{direction=\"INGRESS\",reason=\"Policy denied by denylist\"} 1"
        ),
        "{prom}"
    );
    assert!(
        prom.contains(&format!(
            "podnet_endpoint_drop_count_total{{direction=\"INGRESS\",endpoint=\"{}\"}} 1",
            pod2a.plan.endpoint_id
        )),
        "{prom}"
    );
    drop(events);
    lab.teardown().unwrap();
}
