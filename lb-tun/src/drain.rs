//! `lbadm --drain-gateway [--timeout SECONDS]`: the gateway's graceful leave. The packet loop
//! withdraws the announced routes (`--announce`, [`crate::announce`]), so the routers send no
//! new flow here, keeps forwarding the packets that still arrive (the held routes keep them
//! coming into the TUN), and exits once no flow is left ([`live_flows`]) or the timeout has
//! passed, as on SIGTERM (the `--state` file is written).

use std::time::Duration;

use lb_core::{Balancer, Instant, Protocol};

/// How long a drain waits for the flows by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// A drain's request: `--drain-gateway` and its options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainRequest {
    /// Exit when this has passed even if flows are left.
    pub timeout: Duration,
}

/// Reads `--drain-gateway [--timeout SECONDS]` (the lbadm arguments); `None` when the request
/// is not a drain, `Err` with lbadm's message when it is one, written wrong.
pub fn parse(args: &[String]) -> Option<Result<DrainRequest, String>> {
    let (first, rest) = args.split_first()?;
    if first != "--drain-gateway" {
        return None;
    }
    Some(match rest {
        [] => Ok(DrainRequest {
            timeout: DEFAULT_TIMEOUT,
        }),
        [opt, secs] if opt == "--timeout" => match secs.parse::<u32>() {
            Ok(s) => Ok(DrainRequest {
                timeout: Duration::from_secs(u64::from(s)),
            }),
            Err(_) => Err(format!(
                "lbadm: --drain-gateway --timeout takes whole seconds, not {secs:?}\n"
            )),
        },
        _ => Err(format!(
            "lbadm: --drain-gateway takes only --timeout SECONDS, not {:?}\n",
            rest.join(" ")
        )),
    })
}

/// Flows that may still send packets: every entry but persistence templates and TCP entries
/// in TIME_WAIT or CLOSE (the connection is over; only its entry waits out its timer).
pub fn live_flows(lb: &Balancer<'_>, now: Instant) -> usize {
    let over = |c: &lb_core::ConnInfo| {
        c.template || (c.proto == Protocol::Tcp && matches!(c.state, "TIME_WAIT" | "CLOSE"))
    };
    lb.connections(now).filter(|c| !over(c)).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::Gateway;
    use crate::test_support::FakeIo;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn drain_requests_parse_with_a_default_timeout() {
        assert_eq!(parse(&args("-L -n")), None);
        assert_eq!(
            parse(&args("--drain-gateway")),
            Some(Ok(DrainRequest {
                timeout: DEFAULT_TIMEOUT
            }))
        );
        assert_eq!(
            parse(&args("--drain-gateway --timeout 20")),
            Some(Ok(DrainRequest {
                timeout: Duration::from_secs(20)
            }))
        );
        for bad in [
            "--drain-gateway --timeout",
            "--drain-gateway --timeout 1.5",
            "--drain-gateway now",
        ] {
            assert!(matches!(parse(&args(bad)), Some(Err(_))), "{bad}");
        }
    }

    /// A flow counts from its SYN until it reaches TIME_WAIT; the persistence template it
    /// made does not.
    #[test]
    fn live_flows_end_with_the_connection_not_with_its_entry() {
        use crate::tun::PacketRing;
        use lb_testkit::pkt::{segment, ACK, FIN, SYN};
        let t0 = Instant::from_millis(0);
        let limits = lb_core::Limits {
            services: 2,
            servers_per_service: 2,
            table_slots_per_service: 4093,
            lblc_entries_per_service: 8,
        };
        let mut g = Gateway::with_limits(limits, 64, 7, [3; 16], t0);
        g.apply_batch(
            t0,
            "c",
            "-A -t 10.30.0.10:80 -s rr -p 60\n-a -t 10.30.0.10:80 -r 10.20.1.2:80 -m\n",
        )
        .unwrap();
        let (c, v, s) = (
            "10.40.0.2:40000".parse().unwrap(),
            "10.30.0.10:80".parse().unwrap(),
            "10.20.1.2:80".parse().unwrap(),
        );
        let send = |g: &mut Gateway, p: Vec<u8>| {
            let io = FakeIo::with(&[p]);
            let mut ring = PacketRing::new(1, 2048);
            ring.fill(&io).unwrap();
            g.process_ring(t0, &mut ring);
            assert_eq!(ring.flush(&io), 1);
        };
        assert_eq!(live_flows(g.balancer(), t0), 0);
        send(&mut g, segment(c, v, SYN, 1, 0, b""));
        send(&mut g, segment(s, c, SYN | ACK, 9, 2, b""));
        send(&mut g, segment(c, v, ACK, 2, 10, b""));
        assert_eq!(
            g.balancer().connection_count(),
            2,
            "the flow and its template"
        );
        assert_eq!(live_flows(g.balancer(), t0), 1);
        // Client FIN, server FIN+ACK, client ACK: TIME_WAIT (the INPUT/OUTPUT tables).
        send(&mut g, segment(c, v, FIN | ACK, 2, 10, b""));
        send(&mut g, segment(s, c, FIN | ACK, 10, 3, b""));
        send(&mut g, segment(c, v, ACK, 3, 11, b""));
        assert_eq!(g.balancer().connection_count(), 2);
        assert_eq!(live_flows(g.balancer(), t0), 0);
    }
}
