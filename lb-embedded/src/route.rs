//! The static route table: where a forwarded packet goes next.
//!
//! The subnets of the gateway's own addresses are connected (the destination itself is the next
//! hop). [`Route`]s add more: an on-link subnet (`via: None`, e.g. real servers on the same link
//! in a subnet the gateway has no address in) or a subnet reached through a router
//! (`via: Some(router)`, e.g. the default route `0.0.0.0/0`). The longest matching prefix wins;
//! a packet with no route is dropped and counted (`no_route`).

use core::net::IpAddr;

use smoltcp::wire::{IpAddress, IpCidr};

use crate::neighbour::Key;

/// A static route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The destinations it covers.
    pub dest: IpCidr,
    /// The router to send them to, or `None` if they are on the link.
    pub via: Option<IpAddr>,
}

impl Route {
    /// A default route (`0.0.0.0/0` or `::/0`, by the router's family) through `router`.
    pub fn default_via(router: IpAddr) -> Route {
        let any = match router {
            IpAddr::V4(_) => IpCidr::new(IpAddress::Ipv4(core::net::Ipv4Addr::UNSPECIFIED), 0),
            IpAddr::V6(_) => IpCidr::new(IpAddress::Ipv6(core::net::Ipv6Addr::UNSPECIFIED), 0),
        };
        Route {
            dest: any,
            via: Some(router),
        }
    }

    /// An on-link subnet.
    pub fn on_link(dest: IpCidr) -> Route {
        Route { dest, via: None }
    }
}

/// One route-table slot (37 bytes; all zero when free).
#[derive(Debug, Clone, Copy)]
pub struct RouteSlot {
    used: bool,
    v6: bool,
    prefix_len: u8,
    has_via: bool,
    via_v6: bool,
    prefix: [u8; 16],
    via: [u8; 16],
}

impl RouteSlot {
    /// A free slot.
    pub const EMPTY: RouteSlot = RouteSlot {
        used: false,
        v6: false,
        prefix_len: 0,
        has_via: false,
        via_v6: false,
        prefix: [0; 16],
        via: [0; 16],
    };

    fn route(&self) -> Option<Route> {
        if !self.used {
            return None;
        }
        let prefix = Key::from_parts(self.v6, self.prefix).addr();
        let via = self
            .has_via
            .then(|| Key::from_parts(self.via_v6, self.via).addr());
        Some(Route {
            dest: IpCidr::new(prefix.into(), self.prefix_len),
            via,
        })
    }
}

/// The table over caller-owned slots (emptied by [`new`](Self::new)).
pub struct Routes<'a> {
    slots: &'a mut [RouteSlot],
}

impl<'a> Routes<'a> {
    /// The table over `slots`, all of them freed.
    pub fn new(slots: &'a mut [RouteSlot]) -> Self {
        slots.fill(RouteSlot::EMPTY);
        Routes { slots }
    }

    /// Adds (or replaces the route for the same destination); `false` if the table is full.
    pub fn add(&mut self, r: Route) -> bool {
        let dest = IpAddr::from(r.dest.address());
        let pk = Key::of(dest);
        let slot = match self.slots.iter().position(|s| {
            s.used
                && s.v6 == pk.is_v6()
                && s.prefix == pk.bytes()
                && s.prefix_len == r.dest.prefix_len()
        }) {
            Some(i) => i,
            None => match self.slots.iter().position(|s| !s.used) {
                Some(i) => i,
                None => return false,
            },
        };
        let s = &mut self.slots[slot];
        *s = RouteSlot::EMPTY;
        s.used = true;
        s.v6 = pk.is_v6();
        s.prefix = pk.bytes();
        s.prefix_len = r.dest.prefix_len();
        if let Some(via) = r.via {
            let vk = Key::of(via);
            s.has_via = true;
            s.via_v6 = vk.is_v6();
            s.via = vk.bytes();
        }
        true
    }

    /// Removes the route for exactly `dest`; whether there was one.
    pub fn remove(&mut self, dest: IpCidr) -> bool {
        let mut found = false;
        for s in self.slots.iter_mut() {
            if s.route().is_some_and(|r| r.dest == dest) {
                *s = RouteSlot::EMPTY;
                found = true;
            }
        }
        found
    }

    /// The routes, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = Route> + '_ {
        self.slots.iter().filter_map(RouteSlot::route)
    }

    /// The next hop for `dst`: longest prefix among `connected` (on-link subnets) and the
    /// table.
    pub fn next_hop(&self, dst: IpAddr, connected: &[IpCidr]) -> Option<IpAddr> {
        let d: IpAddress = dst.into();
        let mut best: Option<(u8, IpAddr)> = None;
        let mut consider = |len: u8, hop: IpAddr| {
            if best.is_none_or(|(l, _)| len > l) {
                best = Some((len, hop));
            }
        };
        for c in connected {
            if c.contains_addr(&d) {
                consider(c.prefix_len(), dst);
            }
        }
        for r in self.iter() {
            if r.dest.contains_addr(&d) {
                consider(r.dest.prefix_len(), r.via.unwrap_or(dst));
            }
        }
        best.map(|(_, hop)| hop)
    }
}
