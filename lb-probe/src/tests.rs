//! The prober against a smoltcp server: two interfaces joined by in-memory queues on a virtual
//! clock. The server side has listening sockets (HTTP on port 80, a bare listener on 81,
//! nothing on 82); packets to 10.0.0.3 are dropped (a silent server).

extern crate std;

use std::net::{IpAddr, SocketAddr};
use std::string::ToString;
use std::vec::Vec;

use lb_core::{
    Balancer, Duration, HealthCheck, HealthLimits, HealthState, HealthStorage, HttpUrl, Instant,
    Limits, ProbeOutcome, Secrets, ServiceKey,
};
use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp;

use super::*;

const SRC: &str = "10.0.0.1";
const SERVER: &str = "10.0.0.2";

struct Net {
    lb: Balancer<'static>,
    prober: Prober<'static>,
    iface: Interface,
    dev: QueueDevice,
    s_iface: Interface,
    s_dev: QueueDevice,
    s_sockets: SocketSet<'static>,
    /// (socket, port) of the server's listeners.
    listeners: Vec<(SocketHandle, u16)>,
    /// The answer of the HTTP server.
    answer: &'static [u8],
    now: u64,
    done: Vec<(SocketAddr, ProbeOutcome)>,
    /// Most probes seen busy at once.
    max_busy: usize,
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

impl Net {
    /// A balancer with service 192.0.2.1:80 over `servers` (each checked with `check`), a
    /// prober of `pool` sockets.
    fn new(servers: &[&str], check: &HealthCheck, pool: usize) -> Net {
        let t0 = Instant::ZERO;
        let mut lb = Balancer::alloc(Limits::new(1, 16), 1024, &Secrets::from_bytes([7; 24]), t0);
        lb.apply_line(t0, "-A -t 192.0.2.1:80 -s rr").unwrap();
        for s in servers {
            lb.apply_line(t0, &std::format!("-a -t 192.0.2.1:80 -r {s} -m"))
                .unwrap();
        }
        let limits = HealthLimits {
            targets: 16,
            members: 16,
            services: 1,
            max_in_flight: pool,
        };
        lb.set_health_storage(HealthStorage::alloc(limits), 1);
        let svc = ServiceKey::tcp(sa("192.0.2.1:80"));
        for s in servers {
            lb.set_health_check(t0, &svc, sa(s), check).unwrap();
        }
        let mut prober = Prober::alloc(pool, 2048, 3);
        let src: IpAddr = SRC.parse().unwrap();
        prober.set_source(src);
        let mut dev = QueueDevice::new(1500, 64);
        let iface = probe_interface(&mut dev, &[src], t0).unwrap();
        let mut s_dev = QueueDevice::new(1500, 64);
        let s_iface = probe_interface(&mut s_dev, &[SERVER.parse().unwrap()], t0).unwrap();
        let mut net = Net {
            lb,
            prober,
            iface,
            dev,
            s_iface,
            s_dev,
            s_sockets: SocketSet::new(Vec::new()),
            listeners: Vec::new(),
            answer: b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            now: 0,
            done: Vec::new(),
            max_busy: 0,
        };
        for port in [80, 80, 80, 81, 81] {
            let mut s = tcp::Socket::new(
                tcp::SocketBuffer::new(std::vec![0; 1024]),
                tcp::SocketBuffer::new(std::vec![0; 1024]),
            );
            s.listen(port).unwrap();
            let h = net.s_sockets.add(s);
            net.listeners.push((h, port));
        }
        net
    }

    fn svc() -> ServiceKey {
        ServiceKey::tcp(sa("192.0.2.1:80"))
    }

    /// Runs `ms` milliseconds, one at a time.
    fn run(&mut self, ms: u64) {
        for _ in 0..ms {
            self.now += 1;
            let now = Instant::from_millis(self.now);
            if self.lb.poll_timeout().is_some_and(|t| t <= now) {
                self.lb.handle_timeout(now);
            }
            let done = &mut self.done;
            self.prober.poll(
                now,
                &mut self.lb,
                &mut self.iface,
                &mut self.dev,
                &mut |p, o| done.push((p.server, o)),
            );
            self.max_busy = self.max_busy.max(self.prober.busy());
            while let Some(p) = self.dev.tx.pop_front() {
                // IPv4 destination: bytes 16..20.
                if p[16..20] != [10, 0, 0, 3] {
                    self.s_dev.rx.push_back(p);
                }
            }
            let ts = smoltcp::time::Instant::from_millis(self.now as i64);
            self.s_iface.poll(ts, &mut self.s_dev, &mut self.s_sockets);
            self.serve();
            self.s_iface.poll(ts, &mut self.s_dev, &mut self.s_sockets);
            while let Some(p) = self.s_dev.tx.pop_front() {
                self.dev.rx.push_back(p);
            }
        }
    }

    /// The server's applications: port 80 answers a request with `answer` and closes; port
    /// 81 only accepts. A closed socket listens again.
    fn serve(&mut self) {
        for &(h, port) in &self.listeners {
            let s = self.s_sockets.get_mut::<tcp::Socket>(h);
            if port == 80 && s.can_recv() {
                let mut buf = [0u8; 512];
                let n = s.peek_slice(&mut buf).unwrap();
                if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                    s.recv_slice(&mut buf).unwrap();
                    s.send_slice(self.answer).unwrap();
                    s.close();
                }
            }
            if s.state() == tcp::State::Closed {
                s.listen(port).unwrap();
            }
        }
    }

    fn state(&self, server: &str) -> HealthState {
        self.lb.health_state(&Net::svc(), sa(server)).unwrap()
    }

    fn server_states(&self) -> Vec<tcp::State> {
        self.listeners
            .iter()
            .map(|&(h, _)| self.s_sockets.get::<tcp::Socket>(h).state())
            .collect()
    }
}

fn tcp_check() -> HealthCheck {
    HealthCheck {
        delay_loop: Duration::from_secs(1),
        connect_timeout: Duration::from_millis(500),
        delay_before_retry: Duration::from_millis(200),
        warmup: Some(Duration::from_millis(0)),
        ..HealthCheck::tcp()
    }
}

fn http_check(path: &str) -> HealthCheck {
    let mut urls = heapless::Vec::<HttpUrl, { lb_core::health::URLS_MAX }>::new();
    urls.push(HttpUrl::new(path).unwrap()).unwrap();
    HealthCheck {
        delay_loop: Duration::from_secs(1),
        connect_timeout: Duration::from_millis(500),
        delay_before_retry: Duration::from_millis(200),
        warmup: Some(Duration::from_millis(0)),
        ..HealthCheck::http(urls)
    }
}

#[test]
fn handshake_passes_and_leaves_no_connection_behind() {
    let mut net = Net::new(&["10.0.0.2:81"], &tcp_check(), 4);
    net.run(50);
    assert_eq!(net.done, [(sa("10.0.0.2:81"), ProbeOutcome::Ok)]);
    assert_eq!(net.state("10.0.0.2:81"), HealthState::Up);
    // The probe's RST closed the server's socket at once (no TIME_WAIT, no FIN exchange):
    // every listener is listening again.
    assert!(net.server_states().iter().all(|s| *s == tcp::State::Listen));
    assert_eq!(net.prober.busy(), 0);
    // The next round, one delay_loop later.
    net.run(1000);
    assert_eq!(net.done.len(), 2);
    assert_eq!(net.prober.stats().started, 2);
}

#[test]
fn refused_port_takes_the_server_down() {
    let mut net = Net::new(&["10.0.0.2:82"], &tcp_check(), 4);
    net.run(50);
    assert_eq!(net.done, [(sa("10.0.0.2:82"), ProbeOutcome::Refused)]);
    assert_eq!(net.state("10.0.0.2:82"), HealthState::Down);
    let ev = net.lb.poll_event().map(|e| std::format!("{e:?}"));
    assert!(ev.is_some_and(|e| e.contains("Refused")));
}

#[test]
fn http_status_decides() {
    let mut net = Net::new(&["10.0.0.2:80"], &http_check("/health"), 4);
    net.run(50);
    assert_eq!(net.done, [(sa("10.0.0.2:80"), ProbeOutcome::Ok)]);
    net.answer = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
    net.run(1000);
    assert_eq!(
        net.done[1],
        (sa("10.0.0.2:80"), ProbeOutcome::HttpStatus(404))
    );
    // One retry (delay_before_retry later), then DOWN.
    assert_eq!(net.state("10.0.0.2:80"), HealthState::Up);
    net.run(250);
    assert_eq!(net.done.len(), 3);
    assert_eq!(net.state("10.0.0.2:80"), HealthState::Down);
    assert!(net.server_states().iter().all(|s| *s == tcp::State::Listen));
}

#[test]
fn digest_waits_for_the_whole_body() {
    let mut check = http_check("/");
    if let lb_core::CheckKind::HttpGet { urls } = &mut check.kind {
        // MD5("hello").
        urls[0].digest = Some([
            0x5d, 0x41, 0x40, 0x2a, 0xbc, 0x4b, 0x2a, 0x76, 0xb9, 0x71, 0x9d, 0x91, 0x10, 0x17,
            0xc5, 0x92,
        ]);
    }
    let mut net = Net::new(&["10.0.0.2:80"], &check, 4);
    net.run(50);
    assert_eq!(net.done, [(sa("10.0.0.2:80"), ProbeOutcome::Ok)]);
    net.answer = b"HTTP/1.0 200 OK\r\n\r\nhellp";
    net.run(1000);
    assert_eq!(net.done[1].1, ProbeOutcome::DigestMismatch);
}

#[test]
fn silent_server_times_out_and_frees_the_socket() {
    let mut net = Net::new(&["10.0.0.3:80"], &tcp_check(), 4);
    net.run(499);
    assert!(net.done.is_empty());
    assert_eq!(net.prober.busy(), 1);
    net.run(2);
    assert_eq!(net.done, [(sa("10.0.0.3:80"), ProbeOutcome::Timeout)]);
    assert_eq!(net.prober.busy(), 0);
    assert_eq!(net.prober.stats().timeouts, 1);
    assert_eq!(net.state("10.0.0.3:80"), HealthState::Down);
    let reason = match net.lb.poll_event() {
        Some(lb_core::Event::Health { reason, .. }) => reason.to_string(),
        e => panic!("{e:?}"),
    };
    assert_eq!(reason, "timeout after 0.5 s");
    // Balancer and prober agree: nothing in flight, no stale report.
    assert_eq!(net.lb.health_counters().in_flight, 0);
    assert_eq!(net.lb.health_counters().stale_results, 0);
}

#[test]
fn pool_bounds_the_probes_in_flight() {
    let servers: Vec<std::string::String> = (0..10)
        .map(|i| std::format!("10.0.0.3:{}", 1000 + i))
        .collect();
    let refs: Vec<&str> = servers.iter().map(|s| s.as_str()).collect();
    let mut net = Net::new(&refs, &tcp_check(), 3);
    net.run(3000);
    assert_eq!(net.max_busy, 3);
    assert!(net.done.len() >= 10, "{}", net.done.len());
    assert!(net.done.iter().all(|d| d.1 == ProbeOutcome::Timeout));
    assert!(refs.iter().all(|s| net.state(s) == HealthState::Down));
}

#[test]
fn no_source_of_the_family_is_unreachable() {
    let mut net = Net::new(&["10.0.0.2:81"], &tcp_check(), 2);
    // Replace the prober with one without a source.
    net.prober = Prober::alloc(2, 2048, 0);
    net.run(5);
    assert_eq!(net.done, [(sa("10.0.0.2:81"), ProbeOutcome::Unreachable)]);
    assert_eq!(net.prober.stats().no_source, 1);
}

#[test]
fn interface_refuses_two_sources_of_a_family() {
    let mut dev = QueueDevice::new(1500, 8);
    let two: [IpAddr; 2] = ["10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()];
    assert_eq!(
        probe_interface(&mut dev, &two, Instant::ZERO).err(),
        Some(SourceError)
    );
}

#[test]
fn borrowed_storage_without_alloc() {
    let mut storage = [SocketStorage::EMPTY, SocketStorage::EMPTY];
    let mut slots = [Slot::EMPTY, Slot::EMPTY];
    let (mut rx1, mut tx1, mut rx2, mut tx2, mut rx3, mut tx3) = (
        [0u8; 512],
        [0u8; REQUEST_MAX],
        [0u8; 512],
        [0u8; REQUEST_MAX],
        [0u8; 512],
        [0u8; REQUEST_MAX],
    );
    let mut p = Prober::new(
        ManagedSlice::Borrowed(&mut storage[..]),
        ManagedSlice::Borrowed(&mut slots[..]),
        9,
    );
    assert_eq!(
        p.add_socket(tcp::Socket::new(
            tcp::SocketBuffer::new(&mut rx1[..]),
            tcp::SocketBuffer::new(&mut tx1[..])
        )),
        Ok(())
    );
    assert_eq!(
        p.add_socket(tcp::Socket::new(
            tcp::SocketBuffer::new(&mut rx2[..]),
            tcp::SocketBuffer::new(&mut tx2[..])
        )),
        Ok(())
    );
    assert_eq!(
        p.add_socket(tcp::Socket::new(
            tcp::SocketBuffer::new(&mut rx3[..]),
            tcp::SocketBuffer::new(&mut tx3[..])
        )),
        Err(PoolFull)
    );
    assert_eq!((p.capacity(), p.busy()), (2, 0));
}
