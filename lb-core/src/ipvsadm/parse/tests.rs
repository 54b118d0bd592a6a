//! Unit tests and property tests of the grammar, through `parse_line` and `parse_args`.

use core::net::SocketAddr;

use crate::config::{
    ForwardMethod, GueCsum, Persistence, SchedFlags, SchedulerKind, ServerConfig, ServiceConfig,
    ServiceKey, Timeouts, TunnelKind,
};
use crate::ipvsadm::{
    parse_args, parse_line, Command, ListOptions, ListView, ParseError, ParseErrorKind, Setting,
    MAX_TIMEOUT_SECS,
};
use proptest::prelude::*;
use std::format;
use std::string::{String, ToString};
use std::vec::Vec;

fn cmd(line: &str) -> Command {
    match parse_line(line) {
        Ok(Some(c)) => c,
        other => panic!("{line:?}: {other:?}"),
    }
}

fn err(line: &str) -> (usize, ParseErrorKind) {
    match parse_line(line) {
        Err(e) => (e.token, e.kind),
        other => panic!("{line:?} should fail: {other:?}"),
    }
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn tcp(s: &str) -> ServiceKey {
    ServiceKey::tcp(sa(s))
}

fn udp(s: &str) -> ServiceKey {
    ServiceKey::udp(sa(s))
}

#[test]
fn add_service_with_defaults() {
    assert_eq!(
        cmd("-A -t 10.0.0.1:80"),
        Command::AddService(ServiceConfig::new(tcp("10.0.0.1:80")))
    );
}

#[test]
fn add_service_full() {
    let mut want = ServiceConfig::new(tcp("10.30.0.10:80"));
    want.scheduler = SchedulerKind::Wrr;
    want.persistence = Some(Persistence {
        timeout_secs: 300,
        prefix: 32,
    });
    assert_eq!(
        cmd("-A -t 10.30.0.10:80 -s wrr -p 300"),
        Command::AddService(want)
    );
    assert_eq!(
        cmd("--add-service --tcp-service 10.30.0.10:80 --scheduler=wrr --persistent"),
        Command::AddService(want)
    );
    // Short options grouped, values attached.
    assert_eq!(
        cmd("-At 10.30.0.10:80 -swrr -p300"),
        Command::AddService(want)
    );
}

#[test]
fn persistent_optional_value() {
    let p = |line: &str| match cmd(line) {
        Command::AddService(c) | Command::EditService(c) => c.persistence,
        c => panic!("{c:?}"),
    };
    let t = |timeout_secs, prefix| {
        Some(Persistence {
            timeout_secs,
            prefix,
        })
    };
    assert_eq!(p("-A -t 10.0.0.1:80 -p"), t(300, 32));
    assert_eq!(p("-A -t 10.0.0.1:80 -p -s rr"), t(300, 32));
    assert_eq!(p("-A -t 10.0.0.1:80 -p 600 -s rr"), t(600, 32));
    assert_eq!(p("-A -t 10.0.0.1:80 --persistent=60"), t(60, 32));
    assert_eq!(p("-A -t 10.0.0.1:80 -p -M 255.255.255.0"), t(300, 24));
    assert_eq!(p("-A -t 10.0.0.1:80 -p 30 -M /16"), t(30, 16));
    assert_eq!(p("-A -t 10.0.0.1:80 -p -M 0.0.0.0"), t(300, 0));
    assert_eq!(p("-E -u [2001:db8::1]:53 -p -M 64"), t(300, 64));
    assert_eq!(p("-E -u [2001:db8::1]:53 -p --netmask /48"), t(300, 48));
    assert_eq!(p("-E -u [2001:db8::1]:53 -p"), t(300, 128));
    assert_eq!(p("-A -f 7 -6 -p 5"), t(5, 128));
    assert_eq!(p("-A -f 7 -p 5 -M 255.255.0.0"), t(5, 16));
    assert_eq!(p("-A -t 10.0.0.1:80"), None);
    // Port 0 with persistence is allowed; no port means port 0.
    match cmd("-A -t 10.0.0.1 -p") {
        Command::AddService(c) => assert_eq!(c.key, tcp("10.0.0.1:0")),
        c => panic!("{c:?}"),
    }
}

#[test]
fn edit_and_delete_service() {
    let mut want = ServiceConfig::new(udp("[2001:db8::1]:53"));
    want.scheduler = SchedulerKind::Rr;
    want.one_packet = true;
    assert_eq!(
        cmd("-E -u [2001:db8::1]:53 -s rr -o"),
        Command::EditService(want)
    );
    assert_eq!(
        cmd("--edit-service --udp-service [2001:db8::1]:53 -s rr --ops"),
        Command::EditService(want)
    );
    let mark = ServiceKey::Fwmark { mark: 7, v6: true };
    assert_eq!(cmd("-D -f 7 -6"), Command::DelService(mark));
    assert_eq!(
        cmd("--delete-service --fwmark-service 7 --ipv6"),
        Command::DelService(mark)
    );
    assert_eq!(
        cmd("-D -f 4294967295"),
        Command::DelService(ServiceKey::Fwmark {
            mark: u32::MAX,
            v6: false
        })
    );
}

#[test]
fn sched_flags_and_table_size() {
    let c = |line: &str| match cmd(line) {
        Command::AddService(c) => c,
        c => panic!("{c:?}"),
    };
    let both = SchedFlags {
        fallback: true,
        port: true,
    };
    assert_eq!(c("-A -f 1 -s sh -b sh-fallback,sh-port").flags, both);
    assert!(c("-A -f 1 -s mh --sched-flags mh-port").flags.port);
    assert!(c("-A -f 1 -s mh -b mh-fallback").flags.fallback);
    assert_eq!(c("-A -f 1 -s wrr -b flag-1,flag-2").flags, both);
    let mh = c("-A -f 1 -s mh --table-size 65521");
    assert_eq!(
        (mh.scheduler, mh.table_size),
        (SchedulerKind::Mh, Some(65521))
    );
    assert_eq!(c("-A -f 1 -s dh --table-size=1024").table_size, Some(1024));
}

/// `--sloppy` (our extension): per-service `sloppy_tcp` on TCP and fwmark services; a UDP
/// service, whose datagrams all schedule, refuses it; `-E` without it switches it off.
#[test]
fn sloppy_is_a_tcp_or_fwmark_service_option() {
    let mut want = ServiceConfig::new(tcp("10.0.0.1:80"));
    want.scheduler = SchedulerKind::Mh;
    want.sloppy_tcp = true;
    assert_eq!(
        cmd("-A -t 10.0.0.1:80 -s mh --sloppy"),
        Command::AddService(want)
    );
    match cmd("-E -f 3 -s sh --sloppy") {
        Command::EditService(c) => assert!(c.sloppy_tcp),
        c => panic!("{c:?}"),
    }
    match cmd("-E -t 10.0.0.1:80 -s mh") {
        Command::EditService(c) => assert!(!c.sloppy_tcp),
        c => panic!("{c:?}"),
    }
}

#[test]
fn add_and_edit_server() {
    let key = tcp("10.0.0.1:80");
    let mut s = ServerConfig::new(sa("10.0.1.2:8080"), ForwardMethod::Masq);
    s.weight = 3;
    s.u_threshold = 100;
    s.l_threshold = 50;
    assert_eq!(
        cmd("-a -t 10.0.0.1:80 -r 10.0.1.2:8080 -m -w 3 -x 100 -y 50"),
        Command::AddServer(key, s)
    );
    assert_eq!(
        cmd(
            "--add-server --tcp-service 10.0.0.1:80 --real-server 10.0.1.2:8080 \
             --masquerading --weight 3 --u-threshold 100 --l-threshold=50"
        ),
        Command::AddServer(key, s)
    );
    // Defaults: service port, -g, weight 1.
    assert_eq!(
        cmd("-a -t 10.0.0.1:80 -r 10.0.1.2"),
        Command::AddServer(
            key,
            ServerConfig::new(sa("10.0.1.2:80"), ForwardMethod::Route)
        )
    );
    // -g and -i force the service port on a non-fwmark service, as ipvsadm does.
    assert_eq!(
        cmd("-e -t 10.0.0.1:80 -r 10.0.1.2:8080 --gatewaying"),
        Command::EditServer(
            key,
            ServerConfig::new(sa("10.0.1.2:80"), ForwardMethod::Route)
        )
    );
    assert_eq!(
        cmd("-a -t 10.0.0.1:80 -r 10.0.1.2:8080 --ipip --tun-type ipip"),
        Command::AddServer(
            key,
            ServerConfig::new(sa("10.0.1.2:80"), ForwardMethod::Tunnel(TunnelKind::Ipip))
        )
    );
    // ... but not on a fwmark service, whose port is 0.
    let mark = ServiceKey::Fwmark { mark: 7, v6: false };
    assert_eq!(
        cmd("-a -f 7 -r 10.0.1.2:8080 -g"),
        Command::AddServer(
            mark,
            ServerConfig::new(sa("10.0.1.2:8080"), ForwardMethod::Route)
        )
    );
    assert_eq!(
        cmd("-a -f 7 -r 10.0.1.2 -m"),
        Command::AddServer(
            mark,
            ServerConfig::new(sa("10.0.1.2:0"), ForwardMethod::Masq)
        )
    );
    // IPv6 real servers: [addr]:port, [addr], bare addr.
    let k6 = udp("[2001:db8::1]:53");
    for r in ["[2001:db8::2]:53", "[2001:db8::2]", "2001:db8::2"] {
        assert_eq!(
            cmd(&format!("-e -u [2001:db8::1]:53 -r {r} -m -w 0")),
            Command::EditServer(k6, {
                let mut s = ServerConfig::new(sa("[2001:db8::2]:53"), ForwardMethod::Masq);
                s.weight = 0;
                s
            })
        );
    }
    // A tunnel may cross families.
    assert_eq!(
        cmd("-a -t 10.0.0.1:80 -r [2001:db8::2]:80 -i"),
        Command::AddServer(
            key,
            ServerConfig::new(
                sa("[2001:db8::2]:80"),
                ForwardMethod::Tunnel(TunnelKind::Ipip)
            )
        )
    );
    // Every tunnel type and checksum option, as ipvsadm takes them (its
    // `tunnel_types_v_options`: GUE needs a port, one checksum option at most).
    let tun = |line: &str| match cmd(line) {
        Command::AddServer(_, s) => s.method,
        other => panic!("{line}: {other:?}"),
    };
    let base = "-a -t 10.0.0.1:80 -r 10.0.1.2 -i";
    let gue = |port, csum| ForwardMethod::Tunnel(TunnelKind::Gue { port, csum });
    for (opts, want) in [
        ("", ForwardMethod::Tunnel(TunnelKind::Ipip)),
        ("--tun-type=ipip", ForwardMethod::Tunnel(TunnelKind::Ipip)),
        ("--tun-type gue --tun-port 6080", gue(6080, GueCsum::None)),
        (
            "--tun-port=1 --tun-nocsum --tun-type gue",
            gue(1, GueCsum::None),
        ),
        (
            "--tun-type gue --tun-port 65535 --tun-csum",
            gue(65535, GueCsum::Csum),
        ),
        (
            "--tun-type gue --tun-remcsum --tun-port 6080",
            gue(6080, GueCsum::RemCsum),
        ),
        (
            "--tun-type gre",
            ForwardMethod::Tunnel(TunnelKind::Gre { csum: false }),
        ),
        (
            "--tun-type gre --tun-nocsum",
            ForwardMethod::Tunnel(TunnelKind::Gre { csum: false }),
        ),
        (
            "--tun-type gre --tun-csum",
            ForwardMethod::Tunnel(TunnelKind::Gre { csum: true }),
        ),
    ] {
        assert_eq!(tun(&format!("{base} {opts}")), want, "{opts}");
    }
    // Weight and thresholds at their limits; -y equal to -x is fine.
    match cmd("-a -t 10.0.0.1:80 -r 10.0.1.2 -w 65535 -x 2147483647 -y 2147483647") {
        Command::AddServer(_, s) => {
            assert_eq!(
                (s.weight, s.u_threshold, s.l_threshold),
                (65535, i32::MAX as u32, i32::MAX as u32)
            )
        }
        c => panic!("{c:?}"),
    }
}

#[test]
fn delete_server() {
    let key = tcp("10.0.0.1:80");
    assert_eq!(
        cmd("-d -t 10.0.0.1:80 -r 10.0.1.2:8080"),
        Command::DelServer(key, sa("10.0.1.2:8080"))
    );
    assert_eq!(
        cmd("--delete-server -t 10.0.0.1:80 -r 10.0.1.2"),
        Command::DelServer(key, sa("10.0.1.2:80"))
    );
}

#[test]
fn table_wide_commands() {
    assert_eq!(cmd("-C"), Command::Clear);
    assert_eq!(cmd("--clear"), Command::Clear);
    assert_eq!(cmd("-Z"), Command::Zero(None));
    assert_eq!(
        cmd("--zero -t 10.0.0.1:80"),
        Command::Zero(Some(tcp("10.0.0.1:80")))
    );
    assert_eq!(
        cmd("--set 900 120 300"),
        Command::SetTimeouts(Timeouts {
            tcp: 900,
            tcp_fin: 120,
            udp: 300
        })
    );
    assert_eq!(
        cmd("--set 0 0 2678400"),
        Command::SetTimeouts(Timeouts {
            tcp: 0,
            tcp_fin: 0,
            udp: MAX_TIMEOUT_SECS
        })
    );
    assert_eq!(cmd("-S"), Command::Save { numeric: false });
    assert_eq!(cmd("-S -n"), Command::Save { numeric: true });
    assert_eq!(cmd("--save --numeric"), Command::Save { numeric: true });
    assert_eq!(cmd("-Sn"), Command::Save { numeric: true });
    assert_eq!(cmd("-R"), Command::Restore);
    assert_eq!(cmd("--restore"), Command::Restore);
}

#[test]
fn settings() {
    let s = |line: &str| match cmd(line) {
        Command::Set(s) => s,
        c => panic!("{c:?}"),
    };
    assert_eq!(s("--conn-reuse-mode 0"), Setting::ConnReuseMode(0));
    assert_eq!(s("--conn-reuse-mode=3"), Setting::ConnReuseMode(3));
    assert_eq!(s("--expire-nodest-conn 1"), Setting::ExpireNodestConn(true));
    assert_eq!(
        s("--expire-quiescent-template 0"),
        Setting::ExpireQuiescentTemplate(false)
    );
    assert_eq!(s("--secure-tcp 2"), Setting::SecureTcp(2));
    assert_eq!(s("--drop-entry 3"), Setting::DropEntry(3));
    assert_eq!(s("--sloppy-tcp 1"), Setting::SloppyTcp(true));
    assert_eq!(
        s("--embryonic-prefix-share 25"),
        Setting::EmbryonicPrefixShare(25)
    );
    assert_eq!(
        s("--embryonic-prefix-share 25").to_string(),
        "--embryonic-prefix-share 25"
    );
}

#[test]
fn list() {
    let l = |line: &str| match cmd(line) {
        Command::List(o) => o,
        c => panic!("{c:?}"),
    };
    assert_eq!(l("-L"), ListOptions::default());
    assert_eq!(l("-l"), ListOptions::default());
    assert_eq!(l("--list --sort"), ListOptions::default());
    let n = ListOptions {
        numeric: true,
        ..ListOptions::default()
    };
    assert_eq!(l("-L -n"), n);
    assert_eq!(l("-Ln"), n);
    assert_eq!(
        l("-L -n --stats -t 10.0.0.1:80"),
        ListOptions {
            numeric: true,
            exact: false,
            view: ListView::Stats,
            service: Some(tcp("10.0.0.1:80")),
        }
    );
    assert_eq!(l("-L --rate --exact").view, ListView::Rate);
    assert!(l("-L --rate --exact").exact);
    assert!(l("-L -X").exact);
    assert_eq!(l("-L --thresholds").view, ListView::Thresholds);
    assert_eq!(l("-L -n --tun-info").view, ListView::TunInfo);
    assert_eq!(l("-L --timeout").view, ListView::Timeouts);
    assert_eq!(l("-L -c -n").view, ListView::Connections);
    assert_eq!(l("-Lnc").view, ListView::Connections);
    assert_eq!(l("-L --connection").view, ListView::Connections);
}

#[test]
fn blank_lines_and_comments() {
    assert_eq!(parse_line(""), Ok(None));
    assert_eq!(parse_line("   \t "), Ok(None));
    assert_eq!(parse_line("# a comment -A"), Ok(None));
    assert_eq!(parse_line("   #-C"), Ok(None));
    assert_eq!(parse_line("-C   # clear all\r\n"), Ok(Some(Command::Clear)));
}

#[test]
fn argv() {
    assert_eq!(
        parse_args(["-A", "-t", "10.0.0.1:80", "-s", "rr"]),
        Ok(Command::AddService({
            let mut c = ServiceConfig::new(tcp("10.0.0.1:80"));
            c.scheduler = SchedulerKind::Rr;
            c
        }))
    );
    // No argument at all lists, as ipvsadm does.
    assert_eq!(parse_args([]), Ok(Command::List(ListOptions::default())));
    // argv tokens keep their whitespace-free identity: no splitting inside one.
    let e = parse_args(["-a", "-t", "10.0.0.1:80", "-r", "10.0.1.2", "-w", "70000"]).unwrap_err();
    assert_eq!((e.token, e.span), (6, None));
    assert_eq!(
        e.to_string(),
        "token 6 \"70000\": weight out of range (0..=65535)"
    );
}

#[test]
fn every_error_kind_at_its_token() {
    use ParseErrorKind as K;
    let range = |what, min, max| K::OutOfRange { what, min, max };
    let cases: &[(&str, usize, ParseErrorKind)] = &[
        ("-t 10.0.0.1:80", 0, K::MissingCommand),
        ("-n -L -C", 2, K::MultipleCommands),
        ("-A -t 10.0.0.1:80 --bogus", 3, K::UnknownOption),
        ("-A -t 10.0.0.1:80 -q", 3, K::UnknownOption),
        ("-A -t 10.0.0.1:80 -sq", 3, K::UnknownScheduler),
        (
            "-A --sctp-service 10.0.0.1:80",
            1,
            K::Unsupported("SCTP services"),
        ),
        (
            "-A -t 10.0.0.1:80 --pe sip",
            3,
            K::Unsupported("persistence engines (--pe)"),
        ),
        ("-A -t 10.0.0.1:80 -s rr -s wrr", 5, K::DuplicateOption),
        ("-A -t 10.0.0.1:80 -u 10.0.0.1:53", 3, K::DuplicateOption),
        ("-a -t 10.0.0.1:80 -r 10.0.0.2 -m -g", 6, K::DuplicateOption),
        ("-a -t 10.0.0.1:80 -r 10.0.0.2 -w", 5, K::MissingValue),
        ("-A -t", 1, K::MissingValue),
        ("-A -t 10.0.0.1:80 --ops=1", 3, K::UnexpectedValue),
        ("-A -u 10.0.0.1:53 -s mh --sloppy", 5, K::SloppyNeedsTcp),
        ("-A -t 10.0.0.1:80 --sloppy 1", 4, K::UnexpectedArgument),
        (
            "-a -t 10.0.0.1:80 -r 10.0.0.2 --sloppy",
            5,
            K::NotValidFor("-a"),
        ),
        ("-C extra", 1, K::UnexpectedArgument),
        ("--start-daemon primary", 1, K::BadSyncRole),
        ("--stop-daemon", 0, K::MissingValue),
        (
            "--start-daemon master --mcast-interface abcdefghijklmnop",
            3,
            K::BadInterface,
        ),
        (
            "--start-daemon master --mcast-group 224.0.0.81:8848",
            3,
            K::NotMulticast,
        ),
        (
            "--start-daemon master --mcast-group 0.0.0.0",
            3,
            K::NotMulticast,
        ),
        (
            "--start-daemon backup --syncid 256",
            3,
            range("syncid", 0, 255),
        ),
        (
            "--start-daemon backup -t 10.0.0.1:80",
            2,
            K::NotValidFor("--start-daemon"),
        ),
        ("--sync-version 2", 1, range("sync_version", 0, 1)),
        (
            "--sync-refresh-period 10",
            0,
            K::Unsupported(
                "sync_refresh_period (entries are sent by the packet and state rules only)",
            ),
        ),
        ("--set 1 2 3 4", 4, K::UnexpectedArgument),
        ("-A -t 10.0.0.1:80 -w 3", 3, K::NotValidFor("-A")),
        ("-d -t 10.0.0.1:80 -r 10.0.0.2 -m", 5, K::NotValidFor("-d")),
        ("-S -t 10.0.0.1:80", 1, K::NotValidFor("-S")),
        (
            "-w 3 -a -t 10.0.0.1:80 -r 10.0.0.2 -s rr",
            7,
            K::NotValidFor("-a"),
        ),
        ("-A -s rr", 0, K::MissingService),
        ("-D", 0, K::MissingService),
        ("-a -t 10.0.0.1:80 -w 2", 0, K::MissingRealServer),
        ("-d -t 10.0.0.1:80", 0, K::MissingRealServer),
        ("--set 1 2", 0, K::MissingTimeouts),
        ("-L --stats --rate", 2, K::ConflictingOptions),
        ("-L --rate -n --stats", 3, K::ConflictingOptions),
        ("-L --tun-info --thresholds", 2, K::ConflictingOptions),
        ("-L -c -t 10.0.0.1:80", 2, K::ConflictingOptions),
        ("-L -t 10.0.0.1:80 --timeout", 3, K::ConflictingOptions),
        ("-A -t 10.0.0:80", 2, K::BadAddress),
        ("-A -t [10.0.0.1]:80", 2, K::BadAddress),
        ("-A -t [2001:db8::1]80", 2, K::BadAddress),
        ("-A -t 2001:db8::zz", 2, K::BadAddress),
        ("-A -t www.example.com:80", 2, K::HostName),
        ("-a -t 10.0.0.1:80 -r backend1", 4, K::HostName),
        ("-A -t 10.0.0.1:70000", 2, K::BadPort),
        ("-A -t 10.0.0.1:", 2, K::BadPort),
        ("-A -t 10.0.0.1:http", 2, K::PortName),
        (
            "-a -t 10.0.0.1:80 -r 10.0.0.2 -w abc",
            6,
            K::NotANumber("weight"),
        ),
        (
            "-a -t 10.0.0.1:80 -r 10.0.0.2 -w -3",
            6,
            K::NotANumber("weight"),
        ),
        (
            "-a -t 10.0.0.1:80 -r 10.0.0.2 -w 70000",
            6,
            range("weight", 0, 65535),
        ),
        (
            "-a -t 10.0.0.1:80 -r 10.0.0.2 -x 2147483648",
            6,
            range("upper threshold", 0, i32::MAX as u32),
        ),
        ("-A -f 0", 2, range("fwmark", 1, u32::MAX)),
        ("-A -f 4294967296", 2, range("fwmark", 1, u32::MAX)),
        (
            "-A -t 10.0.0.1:80 -p 0",
            4,
            range("persistence timeout", 1, MAX_TIMEOUT_SECS),
        ),
        (
            "--set 1 2678401 3",
            2,
            range("timeout", 0, MAX_TIMEOUT_SECS),
        ),
        ("--conn-reuse-mode 4", 1, range("conn_reuse_mode", 0, 3)),
        ("--sloppy-tcp 2", 1, range("sloppy_tcp", 0, 1)),
        (
            "--embryonic-prefix-share 101",
            1,
            range("embryonic_prefix_share", 0, 100),
        ),
        ("--expire-nodest-conn", 0, K::MissingValue),
        ("-A -t [::1]:80 -p -M 0", 5, range("netmask prefix", 1, 128)),
        (
            "-A -t 10.0.0.1:80 -p -M /33",
            5,
            range("netmask prefix", 0, 32),
        ),
        (
            "-A -f 1 -s mh --table-size 0",
            6,
            range("table size", 1, u32::MAX),
        ),
        ("-A -t 10.0.0.1:80 -6", 3, K::Ipv6NeedsFwmark),
        ("-Z -6", 1, K::Ipv6NeedsFwmark),
        ("-A -t 10.0.0.1:80 -s foo", 4, K::UnknownScheduler),
        (
            "-A -t 10.0.0.1:80 -s sh -b sh-port,bogus",
            6,
            K::UnknownSchedFlag,
        ),
        ("-A -t 10.0.0.1:80 -s sh -b", 5, K::MissingValue),
        ("-A -t 10.0.0.1:80 -b sh-port", 4, K::SchedFlagMismatch),
        (
            "-A -t 10.0.0.1:80 -s sh -b mh-port",
            6,
            K::SchedFlagMismatch,
        ),
        (
            "-A -t 10.0.0.1:80 -s rr -b flag-3",
            6,
            K::Unsupported("scheduler flag-3"),
        ),
        ("-A -t 10.0.0.1:80 -p -M 255.0.255.0", 5, K::BadNetmask),
        ("-A -t 10.0.0.1:80 -p -M 24", 5, K::BadNetmask),
        ("-A -t [::1]:80 -p -M 255.255.0.0", 5, K::BadNetmask),
        ("-A -t 10.0.0.1:80 -p -M /x", 5, K::BadNetmask),
        (
            "-A -t 10.0.0.1:80 -M 255.255.255.0",
            3,
            K::NetmaskNeedsPersistence,
        ),
        (
            "-A -t 10.0.0.1:80 --table-size 64",
            4,
            K::TableSizeNeedsHashScheduler,
        ),
        ("-A -t 10.0.0.1:0", 2, K::PortZeroNeedsPersistence),
        ("-A -t 10.0.0.1", 2, K::PortZeroNeedsPersistence),
        ("-A -t 10.0.0.1:80 -o", 3, K::OpsNeedsUdp),
        (
            "-a -t 10.0.0.1:80 -r 10.0.0.2 -x 10 -y 20",
            8,
            K::ThresholdOrder,
        ),
        ("-a -t 10.0.0.1:80 -r 10.0.0.2 -y 1", 6, K::ThresholdOrder),
        ("-a -t 10.0.0.1:80 -r [::1]:80 -m", 4, K::FamilyMismatch),
        ("-a -f 1 -6 -r 10.0.0.2 -g", 5, K::FamilyMismatch),
        (
            "-a -t 10.0.0.1:80 -r 10.0.0.2 -m --tun-type ipip",
            6,
            K::TunnelTypeNeedsTunnel,
        ),
        (
            "-a -t 10.0.0.1:80 -r 10.0.0.2 -i --tun-type foo",
            7,
            K::UnknownTunnelType,
        ),
        (
            "-a -t 10.0.0.1:80 -r 10.0.0.2 -i --tun-type gue",
            7,
            K::GueNeedsPort,
        ),
        (
            "-a -t 10.0.0.1:80 -r 10.0.0.2 -i --tun-type gue --tun-port 0",
            9,
            K::GueNeedsPort,
        ),
        (
            "-a -t 10.0.0.1:80 -r 10.0.0.2 -i --tun-type gue --tun-port 65536",
            9,
            K::OutOfRange {
                what: "tunnel port",
                min: 0,
                max: 65535,
            },
        ),
        (
            "-a -t 10.0.0.1:80 -r 10.0.0.2 -i --tun-type gue --tun-port 1 --tun-csum --tun-nocsum",
            11,
            K::DuplicateOption,
        ),
        (
            "-a -t 10.0.0.1:80 -r 10.0.0.2 -i --tun-port 6080",
            6,
            K::TunnelOptionMismatch,
        ),
        (
            "-a -t 10.0.0.1:80 -r 10.0.0.2 -i --tun-type ipip --tun-csum",
            8,
            K::TunnelOptionMismatch,
        ),
        (
            "-a -t 10.0.0.1:80 -r 10.0.0.2 -i --tun-type gre --tun-port 1",
            8,
            K::TunnelOptionMismatch,
        ),
        (
            "-a -t 10.0.0.1:80 -r 10.0.0.2 -i --tun-type gre --tun-remcsum",
            8,
            K::TunnelOptionMismatch,
        ),
        (
            "-a -t 10.0.0.1:80 -r 10.0.0.2 -g --tun-csum",
            6,
            K::TunnelTypeNeedsTunnel,
        ),
        (
            "-a -t 10.0.0.1:80 -r 10.0.0.2 --tun-port 6080",
            5,
            K::TunnelTypeNeedsTunnel,
        ),
        (
            "-d -t 10.0.0.1:80 -r 10.0.0.2 --tun-csum",
            5,
            K::NotValidFor("-d"),
        ),
    ];
    for &(line, token, kind) in cases {
        assert_eq!(err(line), (token, kind), "{line}");
    }
}

#[test]
fn spans_point_at_the_offending_text() {
    let check = |line: &str, want: &str| {
        let e = parse_line(line).unwrap_err();
        let (s, t) = e.span.unwrap();
        assert_eq!(&line[s..t], want, "{line}");
        assert_eq!(e.text.as_str(), want, "{line}");
    };
    check("-A  -t 10.0.0.1:80   -s   foo", "foo");
    check("-a -t 10.0.0.1:80 -r 10.0.0.2 --weight=70000", "70000");
    check("-a -t 10.0.0.1:80 -r 10.0.0.2 -w70000", "70000");
    check("-A -t www.example.com:80", "www.example.com");
    check("-A -t 10.0.0.1:http", "http");
    check("-A -t 10.0.0.1:80 -s sh -b sh-port,bogus", "bogus");
    check("-A -t 10.0.0.1:80 --frob", "--frob");
    let e = parse_line("-A -t www.example.com:80").unwrap_err();
    assert_eq!(
        e.to_string(),
        "token 2 \"www.example.com\": host names are not resolved; use a numeric address"
    );
}

#[test]
fn long_token_text_is_cut_at_a_char_boundary() {
    let long = "é".repeat(100);
    let e = parse_line(&format!("-A -t {long}")).unwrap_err();
    assert!(e.text.len() <= ParseError::TEXT_CAP && e.text.len() >= ParseError::TEXT_CAP - 1);
    assert!(long.starts_with(e.text.as_str()));
}

/// Words that make the fuzzing below reach deep into the grammar.
const VOCAB: &[&str] = &[
    "-A",
    "-E",
    "-D",
    "-a",
    "-e",
    "-d",
    "-C",
    "-Z",
    "--set",
    "-L",
    "-l",
    "-S",
    "-R",
    "-t",
    "-u",
    "-f",
    "-6",
    "-s",
    "-b",
    "-p",
    "-M",
    "-o",
    "-r",
    "-m",
    "-g",
    "-i",
    "-w",
    "-x",
    "-y",
    "-n",
    "-c",
    "--stats",
    "--rate",
    "--timeout",
    "--exact",
    "--table-size",
    "--tun-type",
    "--tun-port",
    "--tun-csum",
    "--tun-nocsum",
    "--tun-remcsum",
    "gue",
    "gre",
    "ipip",
    "--conn-reuse-mode",
    "--sloppy-tcp",
    "--sloppy",
    "10.0.0.1:80",
    "10.0.0.1",
    "[::1]:53",
    "[::1]",
    "::1",
    "0",
    "1",
    "7",
    "300",
    "65536",
    "4294967296",
    "sh",
    "mh",
    "wrr",
    "sh-port,sh-fallback",
    "flag-1",
    "255.255.255.0",
    "/24",
    "64",
    "ipip",
    "#",
    "-At",
    "-w3",
    "--weight=2",
    "-p=",
    "--=",
    "[",
    "]:",
    "é",
    "-",
    "--",
];

proptest! {
    #[test]
    fn arbitrary_lines_never_panic(line in "\\PC{0,80}") {
        check_no_panic(&line);
    }

    #[test]
    fn arbitrary_token_sequences_never_panic(
        idx in proptest::collection::vec(0..VOCAB.len(), 0..12)
    ) {
        let toks: Vec<&str> = idx.iter().map(|&i| VOCAB[i]).collect();
        check_no_panic(&toks.join(" "));
        if let Err(e) = parse_args(toks.iter().copied()) {
            let _ = e.to_string();
            prop_assert!(e.token < toks.len().max(1));
        }
    }
}

fn check_no_panic(line: &str) {
    match parse_line(line) {
        Ok(Some(c)) => {
            // Whatever parses prints back to something that parses the same.
            let again = parse_line(&c.to_string());
            assert_eq!(again, Ok(Some(c)), "{line:?} -> {c}");
        }
        Ok(None) => {}
        Err(e) => {
            let shown: String = e.to_string();
            assert!(shown.starts_with("token "));
            if let Some((s, t)) = e.span {
                let text = line.get(s..t).expect("span on char boundaries");
                assert!(text.starts_with(e.text.as_str()));
            }
        }
    }
}

#[test]
fn sync_daemon_lines_parse_with_ipvsadm_defaults_and_print_back() {
    use crate::sync::daemon::{DaemonConfig, IfName, SyncRole};
    let d = |line: &str| match parse_line(line) {
        Ok(Some(Command::StartDaemon(d))) => d,
        other => panic!("{line}: {other:?}"),
    };
    let plain = d("--start-daemon master --mcast-interface sy0 --syncid 7");
    let mut want = DaemonConfig::new(SyncRole::Master, IfName::new("sy0").unwrap());
    want.syncid = 7;
    assert_eq!(plain, want);
    assert_eq!(plain.effective_maxlen(), 1472);
    assert_eq!(
        plain.to_string(),
        "master sync daemon (mcast=sy0, syncid=7, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)"
    );
    // ipvsadm fills in eth0 when no interface is given.
    assert_eq!(d("--start-daemon backup").interface.as_str(), "eth0");
    let full = d("--start-daemon backup --mcast-interface eth1 --syncid 3 --mcast-group ff02::81 --mcast-port 9000 --mcast-ttl 4 --sync-maxlen 9000");
    assert_eq!(full.effective_maxlen(), 9000);
    assert_eq!((full.port, full.ttl), (9000, 4));
    assert!(full.group.is_ipv6());
    let v6 = d("--start-daemon master --mcast-group ff02::81");
    assert_eq!(
        v6.effective_maxlen(),
        1452,
        "1500 - 40 - 8 with an IPv6 group"
    );
    // A unicast address (our extension).
    assert_eq!(
        d("--start-daemon backup --mcast-group 10.50.0.2")
            .group
            .to_string(),
        "10.50.0.2"
    );
    // Every form prints as a line that parses back to it.
    for line in [
        "--start-daemon master --mcast-interface sy0 --syncid 7",
        "--start-daemon backup --mcast-interface eth1 --syncid 3 --mcast-group ff02::81 --mcast-port 9000 --mcast-ttl 4 --sync-maxlen 9000",
        "--stop-daemon backup",
        "-L --daemon",
    ] {
        let cmd = parse_line(line).unwrap().unwrap();
        assert_eq!(cmd.to_string(), line);
        assert_eq!(parse_line(&cmd.to_string()).unwrap(), Some(cmd));
    }
}
