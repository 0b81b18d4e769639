//! Fragmented UDP in the lab: an echo server that checks each datagram
//! arrived whole and sends it back, and a client that sends datagrams
//! larger than the MTU (the pods' stacks fragment them) and checks every
//! reply, source included.

use std::collections::BTreeSet;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use testsupport::Netns;

use crate::lab::{LabResult, Pod};

/// Datagram `seq` of `len` bytes: its sequence number, then a pattern.
pub fn datagram(seq: u32, len: usize) -> Vec<u8> {
    let mut d: Vec<u8> = (0..len)
        .map(|j| (j.wrapping_mul(7) as u32).wrapping_add(seq.wrapping_mul(31)) as u8)
        .collect();
    d[..4].copy_from_slice(&seq.to_be_bytes());
    d
}

/// Whether `d` is a whole datagram as [`datagram`] makes them, `len` long.
pub fn is_whole(d: &[u8], len: usize) -> bool {
    if d.len() != len || len < 4 {
        return false;
    }
    let seq = u32::from_be_bytes([d[0], d[1], d[2], d[3]]);
    d == datagram(seq, len).as_slice()
}

/// A UDP echo server in a pod (or any namespace): a datagram that arrived
/// whole (length and pattern) goes back unchanged, anything else as
/// `b"BAD"`; it remembers who sent them.
pub struct UdpEchoServer {
    addr: SocketAddr,
    peers: Arc<Mutex<BTreeSet<SocketAddr>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl UdpEchoServer {
    /// Listens on `pod`'s address at `port` for datagrams of `len` bytes.
    pub fn start(pod: &Pod, port: u16, len: usize) -> LabResult<UdpEchoServer> {
        UdpEchoServer::start_in(&pod.ns, SocketAddr::new(pod.ip(), port), len)
    }

    /// Listens on `addr` in namespace `ns` (the outside of `lab_outside`,
    /// say) for datagrams of `len` bytes.
    pub fn start_in(ns: &Netns, addr: SocketAddr, len: usize) -> LabResult<UdpEchoServer> {
        let sock = ns.run(|| UdpSocket::bind(addr))?;
        sock.set_read_timeout(Some(Duration::from_millis(100)))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let peers = Arc::new(Mutex::new(BTreeSet::new()));
        let seen = peers.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !flag.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                if let Ok(mut s) = seen.lock() {
                    s.insert(from);
                }
                let reply: &[u8] = if is_whole(&buf[..n], len) {
                    &buf[..n]
                } else {
                    b"BAD"
                };
                let _ = sock.send_to(reply, from);
            }
        });
        Ok(UdpEchoServer {
            addr,
            peers,
            stop,
            thread: Some(thread),
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The source addresses of every datagram it received so far.
    pub fn peers(&self) -> BTreeSet<SocketAddr> {
        self.peers.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for UdpEchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// From inside `pod`, sends `count` datagrams of `len` bytes to `to`, one
/// at a time, and waits for each reply (2 s): how many came back whole,
/// from `to` itself (a service's replies must come from its frontend).
pub fn udp_exchange(pod: &Pod, to: SocketAddr, count: u32, len: usize) -> LabResult<u32> {
    let bind = SocketAddr::new(pod.ip(), 0);
    let sock = pod.ns.run(|| UdpSocket::bind(bind))?;
    sock.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut whole = 0;
    let mut buf = vec![0u8; 65536];
    for seq in 0..count {
        let d = datagram(seq, len);
        sock.send_to(&d, to)?;
        // Skip late replies of earlier datagrams; a timeout means lost.
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            if n >= 4 && buf[..4] != seq.to_be_bytes() && is_whole(&buf[..n], len) {
                continue;
            }
            if from == to && buf[..n] == d[..] {
                whole += 1;
            }
            break;
        }
    }
    Ok(whole)
}
