//! Delegation to the IPAM plugin named in the config: it runs with the same
//! environment and stdin, as the specification's "delegated plugin" says.

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Command as Proc, Stdio};

use ipnet::IpNet;

use super::config::{Env, NetConf};
use super::error::{CniError, CniResult, INVALID_CONFIG, IPAM_FAILURE};
use super::result::Success;

/// Finds the plugin `name` in `CNI_PATH`.
fn find(env: &Env, name: &str) -> CniResult<PathBuf> {
    env.path
        .iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            CniError::new(
                INVALID_CONFIG,
                format!(
                    "IPAM plugin {name:?} not found in CNI_PATH {}",
                    env.path
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(":")
                ),
            )
        })
}

/// Runs the IPAM plugin with `CNI_COMMAND=verb`; its stdout on success, its
/// error (passed through, code and message prefixed) otherwise.
fn exec(conf: &NetConf, env: &Env, verb: &str) -> CniResult<Vec<u8>> {
    let name = conf.ipam_type()?;
    let bin = find(env, name)?;
    let mut child = Proc::new(&bin)
        .env("CNI_COMMAND", verb)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            CniError::from_err(
                IPAM_FAILURE,
                &format!("IPAM {verb}: run {}", bin.display()),
                &e,
            )
        })?;
    if let Some(mut si) = child.stdin.take() {
        si.write_all(&conf.raw).map_err(|e| {
            CniError::from_err(IPAM_FAILURE, &format!("IPAM {verb}: write to {name}"), &e)
        })?;
    }
    let out = child.wait_with_output().map_err(|e| {
        CniError::from_err(IPAM_FAILURE, &format!("IPAM {verb}: wait for {name}"), &e)
    })?;
    if out.status.success() {
        return Ok(out.stdout);
    }
    // A CNI error from the delegate keeps its message; anything else is ours.
    let msg = match serde_json::from_slice::<CniError>(&out.stdout) {
        Ok(e) => format!("code {}: {}", e.code, e.msg),
        Err(_) => format!(
            "{} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    };
    Err(CniError::new(
        IPAM_FAILURE,
        format!("IPAM {verb} with {name} failed: {msg}"),
    ))
}

/// The addresses IPAM assigned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assigned {
    /// The IPv4 address to give the pod.
    pub ip: IpAddr,
    /// The IPAM result, for its DNS section.
    pub result: Success,
}

/// IPAM ADD: the pod's IPv4 address (the first one of the result).
pub fn add(conf: &NetConf, env: &Env) -> CniResult<Assigned> {
    let out = exec(conf, env, "ADD")?;
    let result: Success = serde_json::from_slice(&out).map_err(|e| {
        CniError::new(
            IPAM_FAILURE,
            format!(
                "IPAM ADD: undecodable result ({e}): {}",
                String::from_utf8_lossy(&out)
            ),
        )
    })?;
    let ip = result
        .ips
        .iter()
        .filter_map(|c| c.address.parse::<IpNet>().ok())
        .map(|n| n.addr())
        .find(IpAddr::is_ipv4)
        .ok_or_else(|| {
            CniError::new(
                IPAM_FAILURE,
                format!(
                    "IPAM ADD returned no IPv4 address (podnet-cni wires IPv4 pods): {}",
                    String::from_utf8_lossy(&out)
                ),
            )
        })?;
    Ok(Assigned { ip, result })
}

/// IPAM DEL: releases what IPAM gave the container (idempotent in the
/// delegate, as the specification requires).
pub fn del(conf: &NetConf, env: &Env) -> CniResult<()> {
    exec(conf, env, "DEL").map(|_| ())
}
