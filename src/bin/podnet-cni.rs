//! The podnet CNI plugin: `CNI_COMMAND` and friends in the environment,
//! the network config on stdin, the result (or a CNI error) on stdout.
//! See `podnet::cni` and the README's "CNI plugin" section.

use std::io::{Read, Write};

fn main() {
    let mut stdin = Vec::new();
    let read = std::io::stdin().read_to_end(&mut stdin);
    // The error's cniVersion: the config's, when it has a readable one.
    let version = serde_json::from_slice::<serde_json::Value>(&stdin)
        .ok()
        .and_then(|v| {
            v.get("cniVersion")
                .and_then(|s| s.as_str().map(String::from))
        })
        .filter(|v| podnet::cni::SUPPORTED_VERSIONS.contains(&v.as_str()))
        .unwrap_or_else(|| "1.0.0".into());
    let outcome = match read {
        Err(e) => Err(podnet::cni::CniError::from_err(
            podnet::cni::IO_FAILURE,
            "read stdin",
            &e,
        )),
        Ok(_) => podnet::cni::Env::from_lookup(|k| std::env::var(k).ok())
            .and_then(|env| podnet::cni::run(&env, &stdin)),
    };
    let mut out = std::io::stdout();
    match outcome {
        Ok(Some(s)) => {
            let _ = writeln!(out, "{s}");
        }
        Ok(None) => {}
        Err(e) => {
            let _ = writeln!(out, "{}", e.to_json(&version));
            let _ = out.flush();
            std::process::exit(1);
        }
    }
}
