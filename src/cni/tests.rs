//! Config, result and error JSON against the examples of the CNI
//! specification 1.0.0 (SPEC.md), and the error codes of bad input.

use super::*;

const SPEC_CONFIG: &str = r#"{
  "cniVersion": "1.0.0",
  "name": "dbnet",
  "type": "bridge",
  "bridge": "cni0",
  "keyA": ["some more", "plugin specific", "configuration"],
  "ipam": {
    "type": "host-local",
    "subnet": "10.1.0.0/16",
    "gateway": "10.1.0.1"
  },
  "dns": {"nameservers": [ "10.1.0.1" ]}
}"#;

const SPEC_RESULT: &str = r#"{
  "cniVersion": "1.0.0",
  "interfaces": [
      {"name": "cni0", "mac": "00:11:22:33:44:55"},
      {"name": "veth3243", "mac": "55:44:33:22:11:11"},
      {"name": "eth0", "mac": "99:88:77:66:55:44", "sandbox": "/var/run/netns/blue"}
  ],
  "ips": [{"address": "10.1.0.5/16", "gateway": "10.1.0.1", "interface": 2}],
  "routes": [{"dst": "0.0.0.0/0"}],
  "dns": {"nameservers": [ "10.1.0.1" ]}
}"#;

fn env(vars: &[(&str, &str)]) -> CniResult<Env> {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Env::from_lookup(|k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
}

#[test]
fn spec_config_example_parses_and_unknown_keys_are_kept_for_ipam() {
    let c = NetConf::parse(SPEC_CONFIG.as_bytes()).unwrap();
    assert_eq!(
        (c.cni_version.as_str(), c.name.as_str(), c.kind.as_str()),
        ("1.0.0", "dbnet", "bridge")
    );
    assert_eq!(c.ipam_type().unwrap(), "host-local");
    assert_eq!(c.pin_dir(), std::path::PathBuf::from(DEFAULT_PIN_DIR));
    // The IPAM plugin gets the config as received.
    assert_eq!(c.raw, SPEC_CONFIG.as_bytes());
}

#[test]
fn spec_result_example_round_trips() {
    let r: Success = serde_json::from_str(SPEC_RESULT).unwrap();
    assert_eq!(
        r.interfaces[2].sandbox.as_deref(),
        Some("/var/run/netns/blue")
    );
    assert_eq!(r.ips[0].interface, Some(2));
    assert_eq!(r.dns.nameservers, ["10.1.0.1"]);
    let back: serde_json::Value = serde_json::to_value(&r).unwrap();
    let want: serde_json::Value = serde_json::from_str(SPEC_RESULT).unwrap();
    assert_eq!(back, want);
}

#[test]
fn old_versions_get_ip_version_fields() {
    let r: Success = serde_json::from_str(SPEC_RESULT).unwrap();
    for v in ["0.3.0", "0.3.1", "0.4.0"] {
        let o = r.clone().for_version(v);
        assert_eq!(o.cni_version, v);
        assert_eq!(o.ips[0].version.as_deref(), Some("4"));
    }
    let j = serde_json::to_string(&r.for_version("1.0.0")).unwrap();
    assert!(!j.contains("\"version\""), "{j}");
}

#[test]
fn spec_error_example_round_trips() {
    let text = r#"{"cniVersion":"1.0.0","code":7,"msg":"Invalid Configuration","details":"Network 192.168.0.0/31 too small to allocate from."}"#;
    let e: CniError = serde_json::from_str(text).unwrap();
    assert_eq!(e.code, INVALID_CONFIG);
    assert_eq!(e.to_json("1.0.0"), text);
}

#[test]
fn version_lists_what_is_supported() {
    let v: serde_json::Value =
        serde_json::from_str(&version(br#"{"cniVersion":"0.4.0"}"#)).unwrap();
    assert_eq!(v["cniVersion"], "0.4.0");
    assert_eq!(
        v["supportedVersions"],
        serde_json::json!(["0.3.0", "0.3.1", "0.4.0", "1.0.0"])
    );
    // VERSION needs nothing but CNI_COMMAND (podman sets the rest to "dummy").
    assert_eq!(
        env(&[("CNI_COMMAND", "VERSION")]).unwrap().command,
        Command::Version
    );
}

#[test]
fn bad_input_gets_the_spec_codes() {
    let code = |r: CniResult<NetConf>| r.unwrap_err().code;
    assert_eq!(code(NetConf::parse(b"{not json")), DECODE_FAILURE);
    assert_eq!(
        code(NetConf::parse(
            br#"{"cniVersion":"1.1.0","name":"n","type":"podnet-cni"}"#
        )),
        INCOMPATIBLE_VERSION
    );
    assert_eq!(
        code(NetConf::parse(
            br#"{"cniVersion":"1.0.0","type":"podnet-cni"}"#
        )),
        INVALID_CONFIG
    );
    assert_eq!(
        code(NetConf::parse(
            br#"{"cniVersion":"1.0.0","name":"n","type":"t","mtu":20}"#
        )),
        INVALID_CONFIG
    );
    let no_ipam = NetConf::parse(br#"{"cniVersion":"1.0.0","name":"n","type":"t"}"#).unwrap();
    assert_eq!(no_ipam.ipam_type().unwrap_err().code, INVALID_CONFIG);
    let sneaky = NetConf::parse(
        br#"{"cniVersion":"1.0.0","name":"n","type":"t","ipam":{"type":"../../bin/sh"}}"#,
    )
    .unwrap();
    assert_eq!(sneaky.ipam_type().unwrap_err().code, INVALID_CONFIG);

    let e = env(&[
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "c"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/x"),
    ])
    .unwrap_err();
    assert_eq!(
        (e.code, e.msg.as_str()),
        (INVALID_ENV, "CNI_NETNS is not set")
    );
    assert_eq!(env(&[("CNI_COMMAND", "GC")]).unwrap_err().code, INVALID_ENV);
    // DEL may come without a netns.
    let d = env(&[
        ("CNI_COMMAND", "DEL"),
        ("CNI_CONTAINERID", "c"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/a:/b"),
    ])
    .unwrap();
    assert_eq!(d.path.len(), 2);
    assert_eq!(parse_args("A=1;=;B").unwrap_err().code, INVALID_ENV);
}

#[test]
fn host_veth_names_fit_and_differ() {
    let a = host_ifname("8f41a9b8233c04f105c43be9ac50c722", "eth0");
    let b = host_ifname("8f41a9b8233c04f105c43be9ac50c722", "eth1");
    assert_eq!(a.len(), 15);
    assert!(a.starts_with("lxc"));
    assert_ne!(a, b);
}
