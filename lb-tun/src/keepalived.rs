//! `--keepalived FILE`: the `virtual_server` sections of a keepalived.conf, read from disk
//! (with its `include`s) and parsed by lb-core's keepalived parser into the same commands as
//! the equivalent `ipvsadm-save` lines, ready for [`Gateway::apply_items`](crate::gateway::Gateway::apply_items).
//!
//! The checkers (`TCP_CHECK`, `HTTP_GET`), `sorry_server`, `quorum` and `hysteresis` are parsed
//! and validated, but nothing runs them yet: [`Loaded::not_run`] says so, and lb-tun logs it
//! as a warning.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use lb_core::keepalived::{
    Checker, Config, ErrorKind, FileId, Files, IncludeError, RealServer, Url, VirtualServer,
};

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

/// A keepalived.conf, parsed: its commands, what was skipped, and what is not acted upon yet.
#[derive(Debug, Default)]
pub struct Loaded {
    /// `-A` and `-a` commands, each with its `FILE:LINE`.
    pub items: Vec<BatchItem>,
    /// What was skipped or ignored, as `FILE:LINE: ...` lines (log them at info).
    pub notices: Vec<String>,
    /// Checkers parsed.
    pub checkers: usize,
    /// Virtual servers with a `sorry_server`, or a `quorum`/`hysteresis` other than the
    /// defaults.
    pub quorum_settings: usize,
}

impl Loaded {
    /// What is parsed but not acted upon yet, as a warning, if anything is.
    pub fn not_run(&self) -> Option<String> {
        let mut parts = Vec::new();
        if self.checkers > 0 {
            parts.push(format!(
                "{} health checkers parsed but not run yet: every real server stays in service \
                 at its configured weight whatever its health (and alpha does not hold it back)",
                self.checkers
            ));
        }
        if self.quorum_settings > 0 {
            parts.push(format!(
                "sorry_server, quorum and hysteresis of {} virtual servers parsed but not acted \
                 upon yet",
                self.quorum_settings
            ));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
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
            Ok(()) => return Ok(loaded(&cfg, &files, notices)),
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

fn loaded(cfg: &Config<'_>, files: &FsFiles, notices: Vec<String>) -> Loaded {
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
    for vs in cfg.virtual_servers() {
        if vs.sorry_server.is_some() || vs.quorum != 1 || vs.hysteresis != 0 {
            out.quorum_settings += 1;
        }
        for rs in cfg.real_servers(vs) {
            out.checkers += cfg.checkers(rs).len();
        }
    }
    out
}

#[cfg(test)]
mod tests;
