//! The lb-embedded gateway between smoltcp TCP clients and smoltcp TCP servers, on a virtual
//! clock: the simulation of `lb-embedded/tests/userspace_tcp.rs`, printed like the TUN demo.
//!
//! ```text
//! cargo run -p lb-examples --example embedded-sim --release [-- --ethernet] [--connections N] [--seed N]
//! ```

#[path = "../../lb-embedded/tests/sim/mod.rs"]
mod sim;

use std::sync::Mutex;
use std::time::Instant;

use lb_embedded::smoltcp::phy::Medium;

static RES: Mutex<sim::Res> = Mutex::new(sim::Res::new());

fn main() {
    let mut medium = Medium::Ip;
    let mut p = sim::Params::scenario(Medium::Ip);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--ethernet" => medium = Medium::Ethernet,
            "--ip" => medium = Medium::Ip,
            "--connections" => match args.next().and_then(|v| v.parse().ok()) {
                Some(n) => p.connections = n,
                None => usage(),
            },
            "--seed" => match args.next().and_then(|v| v.parse().ok()) {
                Some(n) => p.seed = n,
                None => usage(),
            },
            _ => usage(),
        }
    }
    p.medium = medium;
    if p.connections < 3 {
        usage();
    }
    // Drain and removal at a third and two thirds of the run.
    p.drain = Some((p.connections / 3, 2));
    p.remove = Some((2 * p.connections / 3, 3));
    println!(
        "mode: lb-embedded gateway, {:?} medium, smoltcp clients and servers, virtual clock",
        medium
    );
    println!(
        "--- load: {} connections to {}:{}, servers s1..s4 wrr 3:2:1:1, client ports {}-{} reused {:.1}-{:.1} s later",
        p.connections,
        sim::VIP,
        sim::VPORT,
        p.first_port,
        p.first_port + p.ports - 1,
        p.reuse_ms.0 as f64 / 1000.0,
        p.reuse_ms.1 as f64 / 1000.0
    );
    println!(
        "    s3 set to weight 0 after {} connections, s4 removed after {}",
        p.connections / 3,
        2 * p.connections / 3
    );
    let wall = Instant::now();
    let r = sim::run(&p, &mut RES.lock().unwrap_or_else(|e| e.into_inner()));
    println!("--- summary");
    print!("{}", r.summary());
    println!("wall {:.2} s", wall.elapsed().as_secs_f64());
}

fn usage() -> ! {
    eprintln!("usage: embedded-sim [--ethernet|--ip] [--connections N (>= 3)] [--seed N]");
    std::process::exit(2);
}
