//! `--keepalived FILE`: the `virtual_server` sections of a keepalived.conf, read from disk
//! (with its `include`s) and parsed by lb-core's keepalived parser into the same commands as
//! the equivalent `ipvsadm-save` lines, ready for [`Gateway::apply_items`](crate::gateway::Gateway::apply_items).
//!
//! The checkers (`TCP_CHECK`, `HTTP_GET`) and the virtual servers' `sorry_server`, `quorum`
//! and `hysteresis` become lb-core's health configuration ([`HealthPlan`]), run by lb-tun's
//! probes (`--probe-source`). What is parsed but not acted upon is listed by
//! [`Loaded::not_run`], which lb-tun logs as a warning.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use std::net::SocketAddr;

use lb_core::health::{StatusSet, PATH_MAX, STATUS_RANGES_MAX, URLS_MAX};
use lb_core::keepalived::{
    CheckKind, Checker, Config, ErrorKind, FileId, Files, HttpProtocol, IncludeError, RealServer,
    Url, VirtualServer,
};
use lb_core::{HealthCheck, HttpUrl, ServiceKey, VirtualServerHealth};

use crate::gateway::BatchItem;

/// [`Files`] over the file system: `include` patterns are globs relative to the including
/// file's directory; each file (by canonical path) gets one id.
pub struct FsFiles {
    /// Canonical path and display name of each file, by id; the main file is id 0.
    files: RefCell<Vec<(PathBuf, String)>>,
}

impl FsFiles {
    /// The files of a configuration whose main file is `main` (id 0).
    pub fn new(main: &Path) -> Self {
        let canon = std::fs::canonicalize(main).unwrap_or_else(|_| main.to_path_buf());
        FsFiles {
            files: RefCell::new(vec![(canon, main.display().to_string())]),
        }
    }

    /// The name of file `id` as errors print it.
    pub fn name(&self, id: FileId) -> String {
        let files = self.files.borrow();
        files
            .get(usize::from(id.0))
            .map_or_else(|| format!("file #{}", id.0), |(_, n)| n.clone())
    }

    /// The id of the file at canonical path `canon`, new if it has none.
    fn id_of(&self, canon: PathBuf, name: String) -> Result<FileId, IncludeError> {
        let mut files = self.files.borrow_mut();
        if let Some(i) = files.iter().position(|(p, _)| *p == canon) {
            // Ids are given below u16::MAX.
            return Ok(FileId(i as u16));
        }
        let id = u16::try_from(files.len())
            .map_err(|_| IncludeError::new(&"more than 65535 files included"))?;
        files.push((canon, name));
        Ok(FileId(id))
    }
}

impl Files for FsFiles {
    fn include(
        &self,
        from: FileId,
        pattern: &str,
        each: &mut dyn FnMut(FileId, &str, &str) -> ControlFlow<()>,
    ) -> Result<usize, IncludeError> {
        if pattern.contains(['{', '}']) {
            return Err(IncludeError::new(&format_args!(
                "{pattern}: brace patterns ({{a,b}}) are not supported"
            )));
        }
        let dir = {
            let files = self.files.borrow();
            let from = files.get(usize::from(from.0)).map(|(p, _)| p.clone());
            from.and_then(|p| p.parent().map(Path::to_path_buf))
                .unwrap_or_default()
        };
        let full = dir.join(pattern);
        let full = full.to_string_lossy();
        let paths = glob::glob(&full)
            .map_err(|e| IncludeError::new(&format_args!("{pattern}: bad pattern: {e}")))?;
        let mut n = 0;
        for path in paths {
            let path = path.map_err(|e| IncludeError::new(&e))?;
            if path.is_dir() {
                continue;
            }
            let text = std::fs::read_to_string(&path).map_err(|e| {
                IncludeError::new(&format_args!("cannot read {}: {e}", path.display()))
            })?;
            let canon = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
            let name = path.display().to_string();
            let id = self.id_of(canon, name.clone())?;
            n += 1;
            if each(id, &name, &text).is_break() {
                break;
            }
        }
        Ok(n)
    }
}

/// One real server's check, ready for `Balancer::set_health_check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedCheck {
    /// The checker's `FILE:LINE`.
    pub at: String,
    /// Its virtual service.
    pub service: ServiceKey,
    /// The real server.
    pub server: SocketAddr,
    /// The check, with keepalived's knobs.
    pub check: HealthCheck,
}

/// The health configuration of a keepalived.conf: the virtual servers' policies (sorry
/// server, quorum, hysteresis) and one check per checked real server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthPlan {
    /// `(FILE:LINE, service, policy)` of every virtual server with a checked real server or a
    /// policy other than the default.
    pub services: Vec<(String, ServiceKey, VirtualServerHealth)>,
    /// The checks.
    pub checks: Vec<PlannedCheck>,
}

/// A keepalived.conf, parsed: its commands, its health configuration, what was skipped, and
/// what is parsed but not acted upon.
#[derive(Debug, Default)]
pub struct Loaded {
    /// `-A` and `-a` commands, each with its `FILE:LINE`.
    pub items: Vec<BatchItem>,
    /// The checkers and the virtual servers' policies.
    pub health: HealthPlan,
    /// What was skipped or ignored, as `FILE:LINE: ...` lines (log them at info).
    pub notices: Vec<String>,
    /// What is parsed but not acted upon, as `FILE:LINE: ...` lines.
    pub ignored: Vec<String>,
}

impl Loaded {
    /// What is parsed but not acted upon, as one warning, if anything is.
    pub fn not_run(&self) -> Option<String> {
        (!self.ignored.is_empty())
            .then(|| format!("parsed but not acted upon: {}", self.ignored.join("; ")))
    }
}

/// Storage sizes to start with; a table that fills up is doubled and the file parsed again.
const START: [usize; 4] = [64, 1024, 1024, 256];
/// No table grows beyond this.
const MAX_ITEMS: usize = 1 << 20;

/// Reads and parses the keepalived.conf at `path` (and its includes). The error names
/// `FILE:LINE` and what is wrong.
pub fn load(path: &Path) -> Result<Loaded, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let name = path.display().to_string();
    let mut sizes = START;
    loop {
        let files = FsFiles::new(path);
        let mut vs = vec![VirtualServer::EMPTY; sizes[0]];
        let mut rs = vec![RealServer::EMPTY; sizes[1]];
        let mut ck = vec![Checker::EMPTY; sizes[2]];
        let mut urls = vec![Url::EMPTY; sizes[3]];
        let mut cfg = Config::new(&mut vs, &mut rs, &mut ck, &mut urls);
        let mut notices = Vec::new();
        let r = cfg.parse(&files, FileId(0), &name, &text, &mut |n| {
            notices.push(n.to_string())
        });
        match r {
            Ok(()) => return loaded(&cfg, &files, notices),
            Err(e) => {
                let grow = match e.kind {
                    ErrorKind::TooMany { what, max } if max < MAX_ITEMS => match what {
                        "virtual_server" => Some(0),
                        "real_server" => Some(1),
                        "checker" => Some(2),
                        _ => Some(3),
                    },
                    _ => None,
                };
                match grow {
                    Some(i) => sizes[i] *= 2,
                    None => return Err(e.to_string()),
                }
            }
        }
    }
}

fn loaded(cfg: &Config<'_>, files: &FsFiles, notices: Vec<String>) -> Result<Loaded, String> {
    let mut out = Loaded {
        notices,
        ..Loaded::default()
    };
    for (at, cmd) in cfg.commands() {
        let mut text = String::new();
        let _ = write!(text, "(as ipvsadm: {cmd})");
        out.items.push(BatchItem {
            at: format!("{}:{}", files.name(at.file), at.line),
            text,
            cmd,
        });
    }
    let at = |l: lb_core::keepalived::Location| format!("{}:{}", files.name(l.file), l.line);
    for vs in cfg.virtual_servers() {
        let key = vs.service.key;
        let policy = VirtualServerHealth {
            sorry_server: vs.sorry_server.map(|s| s.addr),
            quorum: vs.quorum,
            hysteresis: vs.hysteresis,
            ..VirtualServerHealth::default()
        };
        let mut checked = false;
        for rs in cfg.real_servers(vs) {
            let checkers = cfg.checkers(rs);
            let Some(ck) = checkers.first() else { continue };
            for extra in &checkers[1..] {
                out.ignored.push(format!(
                    "{}: a second checker of real server {} (one check per real server: the \
                     first, at line {}, runs)",
                    at(extra.at),
                    rs.server.addr,
                    ck.at.line
                ));
            }
            let check = health_check(cfg, rs, ck, &at, &mut out.ignored)?;
            checked = true;
            out.health.checks.push(PlannedCheck {
                at: at(ck.at),
                service: key,
                server: rs.server.addr,
                check,
            });
        }
        if checked || policy != VirtualServerHealth::default() {
            out.health.services.push((at(vs.at), key, policy));
        }
        if vs.sorry_server_inhibit {
            out.ignored.push(format!(
                "{}: sorry_server_inhibit (the sorry server is added and removed, never held at weight 0)",
                at(vs.at)
            ));
        }
        if vs.omega {
            out.ignored.push(format!(
                "{}: omega (no notify scripts: nothing runs at shutdown)",
                at(vs.at)
            ));
        }
    }
    Ok(out)
}

/// keepalived's checker `ck` of `rs` as lb-core's check. Error: what lb-core cannot hold
/// (more than [`URLS_MAX`] urls, a path over [`PATH_MAX`] bytes, more than
/// [`STATUS_RANGES_MAX`] status ranges, a retry over 65,535), naming `FILE:LINE`.
fn health_check(
    cfg: &Config<'_>,
    rs: &RealServer,
    ck: &Checker,
    at: &dyn Fn(lb_core::keepalived::Location) -> String,
    ignored: &mut Vec<String>,
) -> Result<HealthCheck, String> {
    let here = at(ck.at);
    let mut check = match ck.kind {
        CheckKind::Tcp => HealthCheck::tcp(),
        CheckKind::Http => {
            let mut urls = heapless::Vec::new();
            let written = cfg.urls(ck);
            if written.len() > URLS_MAX {
                return Err(format!(
                    "{here}: HTTP_GET with {} urls: at most {URLS_MAX} are supported",
                    written.len()
                ));
            }
            for u in written {
                let mut url = HttpUrl::new(&u.path).map_err(|_| {
                    format!(
                        "{}: url path of {} bytes: at most {PATH_MAX} are supported",
                        at(u.at),
                        u.path.len()
                    )
                })?;
                url.status = status_set(u).ok_or_else(|| {
                    format!(
                        "{}: status_code with more than {STATUS_RANGES_MAX} ranges",
                        at(u.at)
                    )
                })?;
                url.digest = u.digest;
                if let Some(vh) = &u.virtualhost {
                    ignored.push(format!(
                        "{}: virtualhost {vh} (the Host header is the address checked)",
                        at(u.at)
                    ));
                }
                // Cannot fail: at most URLS_MAX were counted above.
                let _ = urls.push(url);
            }
            if ck.http_protocol != HttpProtocol::default() {
                ignored.push(format!(
                    "{here}: http_protocol (requests are HTTP/1.1 with Connection: close, HTTP/1.0 \
                     when a digest is checked)"
                ));
            }
            if ck.fast_recovery {
                ignored.push(format!("{here}: fast_recovery"));
            }
            HealthCheck::http(urls)
        }
    };
    let t = ck.timing;
    check.connect_to = (ck.connect != rs.server.addr).then_some(ck.connect);
    check.bind_to = ck
        .bindto
        .map(|ip| SocketAddr::new(ip, ck.bind_port.unwrap_or(0)));
    check.delay_loop = t.delay_loop;
    check.connect_timeout = t.connect_timeout;
    check.retry = u16::try_from(t.retry)
        .map_err(|_| format!("{here}: retry {}: at most 65535 are supported", t.retry))?;
    check.delay_before_retry = t.delay_before_retry;
    check.warmup = Some(t.warmup);
    check.alpha = ck.alpha;
    check.inhibit_on_failure = rs.inhibit_on_failure;
    Ok(check)
}

/// A url's accepted status codes as ranges; `None` if they need more than
/// [`STATUS_RANGES_MAX`].
fn status_set(u: &Url) -> Option<StatusSet> {
    let mut set = StatusSet::default();
    let mut code = 100;
    while code <= 599 {
        if !u.status.contains(code) {
            code += 1;
            continue;
        }
        let lo = code;
        while code < 599 && u.status.contains(code + 1) {
            code += 1;
        }
        set.ranges.push((lo, code)).ok()?;
        code += 1;
    }
    Some(set)
}

#[cfg(test)]
mod tests;
