//! Configuration between packets: [`Balancer::apply`] runs one ipvsadm command against the
//! director and the [`Settings`]; [`Balancer::set_settings`] replaces the settings.

use crate::config::{ConfigError, ForwardMethod, ServerConfig};
use crate::ipvsadm::{Command, LineError, Setting};
use crate::time::Instant;

use super::{fast, Balancer, ConnReuseMode, DefenceMode, Settings};

/// Errors from [`Balancer::apply`].
pub type ApplyError = ConfigError;

impl<'a> Balancer<'a> {
    /// Changes the settings (defence levels are re-evaluated at once).
    pub fn set_settings(&mut self, settings: Settings) {
        self.settings = settings;
        self.update_defence();
        self.update_embryonic_limit();
    }

    /// Applies one ipvsadm command line, as `ipvsadm` takes it (without the program name) or as
    /// `ipvsadm -S` writes it: `-A -t 10.0.0.1:80 -s wrr`, `-a -t 10.0.0.1:80 -r 10.1.0.1:8080 -m
    /// -w 3`, `--set 900 120 300`. Blank lines and `#` comments are accepted and do nothing.
    /// On error nothing is applied: [`LineError::Parse`] names the token and why,
    /// [`LineError::Config`] what was refused with its numbers. Call between packets, as
    /// [`apply`](Balancer::apply).
    ///
    /// ```
    /// use lb_core::{Balancer, ConfigError, Instant, LineError, Limits, Secrets};
    ///
    /// let now = Instant::ZERO;
    /// let mut lb = Balancer::alloc(Limits::new(1, 2), 1024, &Secrets::from_bytes([3; 24]), now);
    /// lb.apply_line(now, "-A -t 10.0.0.1:80 -s sh --table-size 256")?;
    /// lb.apply_line(now, "-a -t 10.0.0.1:80 -r 10.1.0.1:80 -m")?;
    /// // Errors say what and why, with the numbers.
    /// let e = lb.apply_line(now, "-a -t 10.0.0.1:80 -r 10.1.0.2:80 -m -w 70000").unwrap_err();
    /// assert!(matches!(e, LineError::Parse(_)), "{e}");
    /// let e = lb.apply_line(now, "-A -t 10.0.0.2:80").unwrap_err();
    /// assert_eq!(e, LineError::Config(ConfigError::TooManyServices { max: 1 }));
    /// assert_eq!(e.to_string(), "no room for another service: all 1 service slots are in use");
    /// # Ok::<(), LineError>(())
    /// ```
    pub fn apply_line(&mut self, now: Instant, line: &str) -> Result<(), LineError> {
        match crate::ipvsadm::parse_line(line)? {
            Some(cmd) => Ok(self.apply(now, &cmd)?),
            None => Ok(()),
        }
    }

    /// Applies one ipvsadm command (`-A/-E/-D`, `-a/-e/-d`, `-C`, `-Z`, `--set`, and our
    /// settings). Listing, saving and restoring are the frontend's (they read
    /// [`director`](Balancer::director)); they return `Unsupported`. Call between packets;
    /// established flows are never moved: a changed scheduler affects new connections only.
    pub fn apply(&mut self, now: Instant, cmd: &Command) -> Result<(), ApplyError> {
        self.svc_cache = fast::SvcCache::EMPTY;
        if matches!(
            cmd,
            Command::DelService(_) | Command::DelServer(..) | Command::Clear
        ) {
            // First-fragment decisions may name what goes: their later fragments become
            // counted drops rather than go to a removed server or from a removed VIP.
            self.conns.fragments.clear();
        }
        let r = self.apply_command(cmd);
        if r.is_ok() {
            // Quorums follow the servers the operator changed.
            self.health_after_apply(now);
        }
        r
    }

    fn apply_command(&mut self, cmd: &Command) -> Result<(), ApplyError> {
        match cmd {
            Command::AddService(cfg) => self.director.add_service(cfg).map(|_| ()),
            Command::EditService(cfg) => self.director.edit_service(cfg),
            Command::DelService(key) => {
                self.director.del_service(key)?;
                self.health_forget(Some(key), None);
                Ok(())
            }
            Command::AddServer(key, cfg) => {
                check_method(cfg, &self.settings)?;
                let id = self.director.add_server(key, cfg)?;
                self.health_readd(key, cfg, id);
                Ok(())
            }
            Command::EditServer(key, cfg) => {
                check_method(cfg, &self.settings)?;
                if let Some(r) = self.health_edit(key, cfg) {
                    return r;
                }
                self.director.edit_server(key, cfg)
            }
            Command::DelServer(key, addr) => {
                // A server the health checker removed is not listed: deleting it only
                // forgets its check.
                let r = self.director.del_server(key, *addr);
                let removed_by_health = self.health_forget(Some(key), Some(*addr));
                if removed_by_health && r == Err(ConfigError::NoSuchServer) {
                    return Ok(());
                }
                r
            }
            Command::Clear => {
                self.director.clear();
                self.health_forget(None, None);
                Ok(())
            }
            Command::Zero(key) => {
                self.director.zero_stats(key.as_ref())?;
                if key.is_none() {
                    self.zero_counters();
                }
                Ok(())
            }
            Command::SetTimeouts(t) => {
                self.settings.timeouts.apply_set(*t);
                Ok(())
            }
            Command::Set(s) => {
                match *s {
                    Setting::ConnReuseMode(m) => self.settings.conn_reuse_mode = reuse_mode(m)?,
                    Setting::ExpireNodestConn(b) => self.settings.expire_nodest_conn = b,
                    Setting::ExpireQuiescentTemplate(b) => {
                        self.settings.expire_quiescent_template = b
                    }
                    Setting::SecureTcp(m) => self.settings.secure_tcp = defence_mode(m)?,
                    Setting::DropEntry(m) => self.settings.drop_entry = defence_mode(m)?,
                    Setting::SloppyTcp(b) => self.settings.sloppy_tcp = b,
                    Setting::ReplyRate(n) => self.settings.reply_rate_per_sec = n,
                    Setting::ReplyBurst(n) => self.settings.reply_burst = n,
                    Setting::ReplyPeerInterval(n) => self.settings.reply_peer_interval_ms = n,
                    Setting::SyncThreshold(n) => self.settings.sync_threshold = n,
                    Setting::SyncPeriod(n) => self.settings.sync_period = n,
                    Setting::SyncVersion(n) => self.settings.sync_version = n.min(1),
                    Setting::EmbryonicPrefixShare(n) => self.settings.embryonic_prefix_share = n,
                }
                self.update_defence();
                self.update_embryonic_limit();
                Ok(())
            }
            Command::StartDaemon(d) => {
                if self.director.has_mixed_family_server() {
                    // As IPVS's netlink start command (EINVAL).
                    return Err(ConfigError::Unsupported(
                        "a sync daemon while a tunnel real server is of the other address \
                         family than its service: a sync record has one family",
                    ));
                }
                self.start_daemon(*d);
                Ok(())
            }
            Command::StopDaemon(role) => {
                self.stop_daemon(*role);
                Ok(())
            }
            Command::List(_) | Command::Save { .. } | Command::Restore => Err(
                ConfigError::Unsupported("listing, saving and restoring belong to the frontend"),
            ),
        }
    }
}

/// Refuses the forwarding methods the frontend cannot carry: direct routing unless it sends by
/// next hop ([`Settings::direct_routing`](crate::Settings::direct_routing)), and a tunnel to a
/// real server of a family it has no outer source address for
/// ([`Settings::tunnel_source_v4`](crate::Settings::tunnel_source_v4), `_v6`).
fn check_method(cfg: &ServerConfig, settings: &Settings) -> Result<(), ConfigError> {
    match cfg.method {
        ForwardMethod::Masq => Ok(()),
        ForwardMethod::Route if settings.direct_routing => Ok(()),
        ForwardMethod::Route => Err(ConfigError::Unsupported(
            "direct routing (-g): this frontend routes by the packet's destination and cannot \
             send to a real server as next hop (lb-tun: run it with --tap); use -m or -i",
        )),
        ForwardMethod::Tunnel(_) => {
            let has_source = if cfg.addr.is_ipv6() {
                settings.tunnel_source_v6.is_some()
            } else {
                settings.tunnel_source_v4.is_some()
            };
            if has_source {
                Ok(())
            } else if cfg.addr.is_ipv6() {
                Err(ConfigError::Unsupported(
                    "tunnelling (-i) to an IPv6 real server: no IPv6 outer source address \
                     (lb-tun: --tunnel-source ADDR)",
                ))
            } else {
                Err(ConfigError::Unsupported(
                    "tunnelling (-i) to an IPv4 real server: no IPv4 outer source address \
                     (lb-tun: --tunnel-source ADDR)",
                ))
            }
        }
    }
}

fn reuse_mode(v: u8) -> Result<ConnReuseMode, ConfigError> {
    ConnReuseMode::new(v).ok_or(ConfigError::Unsupported("conn_reuse_mode above 3"))
}

fn defence_mode(v: u8) -> Result<DefenceMode, ConfigError> {
    DefenceMode::new(v).ok_or(ConfigError::Unsupported("a defence mode above 3"))
}
