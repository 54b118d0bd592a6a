//! The `ipvsadm` target: arbitrary configuration lines and argv through the grammar.
//!
//! Checks: parsing never panics; a parsed command's `Display` parses back to the same command;
//! `parse_line` and `parse_args` agree on the same words; the commands that apply leave a
//! director whose `-S` output (`write_save`) parses and applies, on a fresh director, to the
//! same configuration (services, servers and their list order), and prints the same text again.
//! Needs nothing but lb-core and std, so lb-tun's tests can include it too.

use std::string::String;
use std::vec::Vec;

use lb_core::config::{ServerConfig, ServiceConfig};
use lb_core::director::{Director, DirectorStorage, Limits};
use lb_core::ipvsadm::{parse_args, parse_line, write_save, Command};
use lb_core::ConfigError;

/// The director limits the grammar targets use (small: full tables are part of the game).
pub fn limits() -> Limits {
    Limits {
        services: 6,
        servers_per_service: 6,
        table_slots_per_service: 4093,
        lblc_entries_per_service: 8,
    }
}

pub fn director() -> Director<'static> {
    Director::new(DirectorStorage::alloc(limits()), 3)
}

/// Applies a configuration command to a director, as the balancer would (but accepting every
/// forwarding method, which `-S` must round-trip too). Other commands are ignored.
pub fn apply(d: &mut Director<'_>, cmd: &Command) -> Result<(), ConfigError> {
    match cmd {
        Command::AddService(c) => d.add_service(c).map(|_| ()),
        Command::EditService(c) => d.edit_service(c),
        Command::DelService(k) => d.del_service(k),
        Command::AddServer(k, s) => d.add_server(k, s).map(|_| ()),
        Command::EditServer(k, s) => d.edit_server(k, s),
        Command::DelServer(k, a) => d.del_server(k, *a),
        Command::Clear => {
            d.clear();
            Ok(())
        }
        Command::Zero(k) => d.zero_stats(k.as_ref()),
        _ => Ok(()),
    }
}

/// A director's configuration: each live service with its servers in insertion order.
pub fn config_of(d: &Director<'_>) -> Vec<(ServiceConfig, Vec<ServerConfig>)> {
    d.services()
        .map(|(id, s)| {
            let mut servers: Vec<ServerConfig> =
                d.servers(id).iter().map(|(_, r)| r.config).collect();
            servers.reverse();
            (s.config, servers)
        })
        .collect()
}

/// `-S` text of a director.
pub fn save(d: &Director<'_>) -> String {
    let mut text = String::new();
    write_save(&mut text, config_of(d)).expect("writing to a String");
    text
}

/// Checks that `d`'s `-S` output restores to the same configuration and prints the same.
pub fn check_save_round_trip(d: &Director<'_>) {
    let text = save(d);
    let mut fresh = director();
    for line in text.lines() {
        let cmd = parse_line(line)
            .unwrap_or_else(|e| panic!("-S printed a line that does not parse: {line:?}: {e}"))
            .unwrap_or_else(|| panic!("-S printed an empty line: {line:?}"));
        apply(&mut fresh, &cmd)
            .unwrap_or_else(|e| panic!("-S printed a line that does not apply: {line:?}: {e}"));
    }
    assert_eq!(
        config_of(&fresh),
        config_of(d),
        "-S output restores to a different configuration:\n{text}"
    );
    assert_eq!(save(&fresh), text, "-S output is not a fixed point");
}

/// Checks that a command's `Display` parses back to it.
pub fn check_display(cmd: &Command) {
    let shown = std::format!("{cmd}");
    match parse_line(&shown) {
        Ok(Some(back)) => assert_eq!(&back, cmd, "Display {shown:?} parses to another command"),
        other => panic!("Display {shown:?} of {cmd:?} does not parse: {other:?}"),
    }
}

/// Runs every line of `text` (at most 200): parse, check `Display`, apply; then the `-S`
/// round trip of what applied.
pub fn run_text(text: &str, d: &mut Director<'_>) {
    for line in text.lines().take(200) {
        if let Ok(Some(cmd)) = parse_line(line) {
            check_display(&cmd);
            let _ = apply(d, &cmd);
        }
    }
    check_save_round_trip(d);
}

/// The `ipvsadm` fuzz target: the input as text, one command a line.
pub fn run_lines(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut d = director();
    run_text(&text, &mut d);
}

/// The argv path (`lbadm` and the control socket): `parse_args` over `args`; the same words
/// as one line must parse the same way; a command applies to a configured director (with
/// `-R`, `stdin` is restored line by line); then the `-S` round trip.
pub fn check_argv(args: &[String], stdin: Option<&str>) {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let parsed = parse_args(words.iter().copied());
    let plain = words
        .iter()
        .all(|w| !w.is_empty() && !w.contains(|c: char| c.is_whitespace() || c == '#'));
    if plain && !words.is_empty() {
        let line = words.join(" ");
        let as_line = parse_line(&line);
        match (&parsed, &as_line) {
            (Ok(a), Ok(Some(b))) => assert_eq!(a, b, "argv and line parse differently: {line:?}"),
            (Err(_), Err(_)) => {}
            _ => panic!("argv {words:?} gave {parsed:?}, the line gave {as_line:?}"),
        }
    }
    let Ok(cmd) = parsed else { return };
    check_display(&cmd);
    let mut d = director();
    run_text(SETUP, &mut d);
    match (cmd, stdin) {
        (Command::Restore, Some(text)) => run_text(text, &mut d),
        (cmd, _) => {
            let _ = apply(&mut d, &cmd);
            check_save_round_trip(&d);
        }
    }
}

/// A small configuration the argv path starts from.
pub const SETUP: &str = "\
-A -t 10.0.0.100:80 -s wrr
-a -t 10.0.0.100:80 -r 10.1.0.1:8080 -m -w 2
-a -t 10.0.0.100:80 -r 10.1.0.2:8080 -g
-A -u [2001:db8::100]:53 -s mh -p 30 -M 64 -o
-a -u [2001:db8::100]:53 -r [2001:db8:1::1]:53 -m -x 10 -y 5
";
