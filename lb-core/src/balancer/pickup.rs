//! Mid-flow pickup (docs/ipvs-semantics.md §4.10, "Mid-flow pickup"): which TCP segments may
//! create an entry when a flow has none. IPVS schedules a SYN only, unless the global
//! `sloppy_tcp` is on; we add the same choice per service ([`ServiceConfig::sloppy_tcp`],
//! `--sloppy`), for a gateway in an ECMP group that receives a flow another gateway started.
//!
//! A picked-up entry is an ordinary one: the service's scheduler (or persistence template)
//! chooses its server, the method binds it (DR and tunnels start with NOOUTPUT, so TCP runs on
//! the INPUT_ONLY table), and its first transition is applied to the packet that created it:
//! an ACK from NONE gives ESTABLISHED, a FIN gives CLOSE (docs/ipvs-semantics.md §2.3). A RST
//! never creates an entry.
//!
//! [`ServiceConfig::sloppy_tcp`]: crate::ServiceConfig::sloppy_tcp

use crate::service::ServiceId;

use super::Balancer;

impl Balancer<'_> {
    /// Whether service `svc` picks up TCP segments without SYN (`--sloppy`); asked on the
    /// no-entry path only, when the global `sloppy_tcp` is off. Cold and out of line: the
    /// established DR and tunnel packets take the function that asks it (`inbound`), and the
    /// gate measured 2 instructions a packet more for them this way, 4 with the look-up inline
    /// or the global flag read inside.
    #[cold]
    #[inline(never)]
    pub(super) fn service_picks_up(&self, svc: ServiceId) -> bool {
        self.director
            .service(svc)
            .is_some_and(|s| s.config.sloppy_tcp)
    }
}
