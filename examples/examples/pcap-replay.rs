//! Replays a packet capture through lb-core and writes the rewritten packets to another
//! capture that Wireshark and tcpdump read: what a live balancer with this configuration would
//! have sent, with the original timestamps.
//!
//! ```text
//! cargo run -p lb-examples --example pcap-replay -- \
//!     [--config FILE]... [--line 'IPVSADM LINE']... [--capacity N] [--seed N] IN.pcap OUT.pcap
//! ```
//!
//! * `--config FILE`: `ipvsadm-save -n` format, one command per line (blank lines and `#`
//!   comments skipped); `--line`: one command, e.g. `--line '-A -t 10.0.0.100:80 -s rr'`.
//!   Files are applied first, then the `--line`s, each in the order given; a bad line is an
//!   error naming `FILE:LINE` (or `--line N`).
//! * IN.pcap: raw IP (link types 101, 228, 229), Ethernet (1) or Linux cooked (113, 276);
//!   pcapng is not read (`editcap -F pcap in.pcapng in.pcap` converts).
//! * OUT.pcap: every packet whose verdict transmits (to server, to client, pass, reply), with
//!   the input's timestamp and link header; dropped packets are left out.
//!
//! A summary goes to stderr: packets read and written, each verdict, the drop reasons and the
//! connections left in the table. The logic lives in `lb_examples::pcap_replay`.
//!
//! Example: a client's SYN to 10.0.0.100:80 comes out addressed to the real server, the
//! server's SYN-ACK comes out from 10.0.0.100:80:
//!
//! ```text
//! cargo run -p lb-examples --example pcap-replay -- \
//!     --line '-A -t 10.0.0.100:80 -s rr' --line '-a -t 10.0.0.100:80 -r 10.1.0.1:8080 -m' \
//!     in.pcap out.pcap && tcpdump -nr out.pcap
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use lb_examples::pcap_replay::{build_balancer, configure, read_config, replay_files, ConfigLine};

#[derive(Parser)]
#[command(about = "Replay a pcap through lb-core; write the rewritten packets to another pcap")]
struct Args {
    /// An ipvsadm-save file (one command per line); repeatable, applied first.
    #[arg(long, value_name = "FILE")]
    config: Vec<PathBuf>,
    /// One ipvsadm command line, e.g. '-A -t 10.0.0.100:80 -s rr'; repeatable.
    #[arg(long, value_name = "LINE", allow_hyphen_values = true)]
    line: Vec<String>,
    /// Connection table capacity.
    #[arg(long, default_value_t = 65536)]
    capacity: usize,
    /// Seed of the director and the table's hash key (a replay is deterministic).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The capture to replay.
    input: PathBuf,
    /// Where to write the rewritten packets.
    output: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pcap-replay: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), lb_examples::pcap_replay::Error> {
    let mut lines = Vec::new();
    for path in &args.config {
        lines.extend(read_config(path)?);
    }
    lines.extend(args.line.iter().enumerate().map(|(i, l)| ConfigLine {
        origin: format!("--line {}", i + 1),
        text: l.clone(),
    }));
    let mut balancer = build_balancer(args.capacity, args.seed);
    configure(&mut balancer, &lines)?;
    let summary = replay_files(&mut balancer, &args.input, &args.output)?;
    eprint!("{summary}");
    Ok(())
}
