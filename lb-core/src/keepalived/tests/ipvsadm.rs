//! A keepalived configuration gives the same lb-core configuration as the equivalent
//! `ipvsadm-save -n` lines.

use std::vec::Vec;

use super::*;
use crate::ipvsadm::parse_line;

#[test]
fn the_same_commands_as_the_equivalent_ipvsadm_save_lines() {
    let keepalived = r#"
virtual_server 192.0.2.10 80 {
    lb_algo wrr
    lb_kind NAT
    protocol TCP
    real_server 10.0.1.11 8080 {
        weight 3
        uthreshold 1000
        lthreshold 800
        TCP_CHECK {
        }
    }
    real_server 10.0.1.12 8080 {
        weight 0
    }
}
virtual_server 192.0.2.10 443 {
    lb_algo sh
    sh-port
    persistence_timeout 600
    persistence_granularity 255.255.255.0
    real_server 10.0.1.11 443 {
    }
}
virtual_server 2001:db8::53 53 {
    protocol UDP
    lb_algo mh
    mh-fallback
    ops
    persistence_timeout
    persistence_granularity 64
    real_server 2001:db8:1::a 5353 {
        weight 2
    }
}
virtual_server 192.0.2.20 {
    lb_algo lc
    persistence_timeout 300
    real_server 10.0.1.30 {
    }
}
virtual_server 192.0.2.30 80 {
    real_server 10.0.1.41 80 {
    }
    lb_kind DR
    real_server 10.0.1.42 8080 {
        lvs_method NAT
    }
}
virtual_server 192.0.2.40 80 {
    lb_kind TUN type gue port 6080 csum
    real_server 10.0.1.51 80 {
    }
    real_server 10.0.1.52 80 {
        lvs_method TUN type gre csum
    }
    real_server 10.0.1.53 80 {
        lvs_method TUN
    }
    real_server 10.0.1.54 80 {
        lvs_method TUN type gue port 7000 remcsum
    }
}
"#;
    let ipvsadm_save = "\
-A -t 192.0.2.10:80 -s wrr
-a -t 192.0.2.10:80 -r 10.0.1.11:8080 -m -w 3 -x 1000 -y 800
-a -t 192.0.2.10:80 -r 10.0.1.12:8080 -m -w 0
-A -t 192.0.2.10:443 -s sh -b sh-port -p 600 -M 255.255.255.0
-a -t 192.0.2.10:443 -r 10.0.1.11:443 -m -w 1
-A -u [2001:db8::53]:53 -s mh -b mh-fallback -p 360 -M 64 -o
-a -u [2001:db8::53]:53 -r [2001:db8:1::a]:5353 -m -w 2
-A -t 192.0.2.20:0 -s lc -p 300
-a -t 192.0.2.20:0 -r 10.0.1.30:0 -m -w 1
-A -t 192.0.2.30:80 -s wlc
-a -t 192.0.2.30:80 -r 10.0.1.41:80 -g -w 1
-a -t 192.0.2.30:80 -r 10.0.1.42:8080 -m -w 1
-A -t 192.0.2.40:80 -s wlc
-a -t 192.0.2.40:80 -r 10.0.1.51:80 -i -w 1 --tun-type gue --tun-port 6080 --tun-csum
-a -t 192.0.2.40:80 -r 10.0.1.52:80 -i -w 1 --tun-type gre --tun-csum
-a -t 192.0.2.40:80 -r 10.0.1.53:80 -i -w 1
-a -t 192.0.2.40:80 -r 10.0.1.54:80 -i -w 1 --tun-type gue --tun-port 7000 --tun-remcsum
";
    let want: Vec<_> = ipvsadm_save
        .lines()
        .map(|l| parse_line(l).unwrap().unwrap())
        .collect();
    let (got, _) = parse(keepalived, |c| {
        c.commands().map(|(_, cmd)| cmd).collect::<Vec<_>>()
    })
    .unwrap();
    assert_eq!(got, want);
}
