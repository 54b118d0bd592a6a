//! Real server → client (docs/ipvs-semantics.md §6.1 `handle_response`): a reply of a tracked flow, run
//! through the state machine and rewritten to come from the virtual address.

use crate::addr::Protocol;
use crate::conn::Handle;
use crate::nat;
use crate::packet::Parsed;
use crate::tcp::{Direction, TcpState};
use crate::time::Instant;
use crate::verdict::{DropReason, Transmit, Verdict};

use super::method;
use super::Balancer;

impl Balancer<'_> {
    /// Real server → client (docs/ipvs-semantics.md §6.1 `handle_response`).
    pub(super) fn outbound(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        len: usize,
        p: &Parsed,
        h: Handle,
    ) -> Verdict {
        let Some(e) = self.conns.get(h) else {
            return self.pass(&buf[..len]);
        };
        if !method::is_nat(e.flags) {
            // Replies of DR and tunnel connections never pass the director; IPVS ignores what
            // looks like one (`ip_vs_out_hook`), and so do we: no state change, no rewrite.
            return self.pass(&buf[..len]);
        }
        let (server, svc) = (e.server, e.service);
        // The server's answer to a forwarded SYN (passive health signals).
        let answering = self.health.passive_on
            && e.proto() == Protocol::Tcp
            && e.state == TcpState::SynRecv as u8;
        let Some(vip) = self.vip_of(e) else {
            return self.pass(&buf[..len]);
        };
        self.transition(now, h, Direction::Output, p.tcp_flags);
        if answering {
            self.passive_reply(now, server, p.tcp_flags);
        }
        if nat::rewrite_transport(&mut buf[..len], p, vip, true, self.csum_partial).is_err() {
            return self.drop(DropReason::Malformed, false);
        }
        self.director.count_conn(server, svc, len, true);
        Verdict::ToClient(Transmit {
            start: 0,
            dst: p.dst.ip(),
            len: p.total_len as usize,
        })
    }
}
