//! Configuration between packets: [`Balancer::apply`] runs one ipvsadm command against the
//! director and the [`Settings`]; [`Balancer::set_settings`] replaces the settings.

use crate::config::{ConfigError, ForwardMethod};
use crate::ipvsadm::{Command, Setting};
use crate::time::Instant;

use super::{fast, Balancer, Settings};

/// Errors from [`Balancer::apply`].
pub type ApplyError = ConfigError;

impl<'a> Balancer<'a> {
    /// Changes the settings (defence levels are re-evaluated at once).
    pub fn set_settings(&mut self, settings: Settings) {
        self.settings = settings;
        self.update_defence();
    }

    /// Applies one ipvsadm command (`-A/-E/-D`, `-a/-e/-d`, `-C`, `-Z`, `--set`, and our
    /// settings). Listing, saving and restoring are the frontend's (they read
    /// [`director`](Balancer::director)); they return `Unsupported`. Call between packets;
    /// established flows are never moved: a changed scheduler affects new connections only.
    pub fn apply(&mut self, now: Instant, cmd: &Command) -> Result<(), ApplyError> {
        self.svc_cache = fast::SvcCache::EMPTY;
        match cmd {
            Command::AddService(cfg) => self.director.add_service(cfg).map(|_| ()),
            Command::EditService(cfg) => self.director.edit_service(cfg),
            Command::DelService(key) => self.director.del_service(key),
            Command::AddServer(key, cfg) => {
                check_method(cfg.method)?;
                self.director.add_server(key, cfg).map(|_| ())
            }
            Command::EditServer(key, cfg) => {
                check_method(cfg.method)?;
                self.director.edit_server(key, cfg)
            }
            Command::DelServer(key, addr) => self.director.del_server(key, *addr),
            Command::Clear => {
                self.director.clear();
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
                    Setting::ConnReuseMode(m) => self.settings.conn_reuse_mode = m,
                    Setting::ExpireNodestConn(b) => self.settings.expire_nodest_conn = b,
                    Setting::ExpireQuiescentTemplate(b) => {
                        self.settings.expire_quiescent_template = b
                    }
                    Setting::SecureTcp(m) => self.settings.secure_tcp = m,
                    Setting::DropEntry(m) => self.settings.drop_entry = m,
                    Setting::SloppyTcp(b) => self.settings.sloppy_tcp = b,
                }
                self.update_defence();
                let _ = now;
                Ok(())
            }
            Command::List(_) | Command::Save { .. } | Command::Restore => Err(
                ConfigError::Unsupported("listing, saving and restoring belong to the frontend"),
            ),
        }
    }
}

fn check_method(m: ForwardMethod) -> Result<(), ConfigError> {
    match m {
        ForwardMethod::Masq => Ok(()),
        ForwardMethod::Route => Err(ConfigError::Unsupported(
            "direct routing (-g): lb-core forwards by NAT only; use -m",
        )),
        ForwardMethod::Tunnel => Err(ConfigError::Unsupported(
            "tunnelling (-i): lb-core forwards by NAT only; use -m",
        )),
    }
}
