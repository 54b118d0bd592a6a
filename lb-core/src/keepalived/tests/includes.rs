//! `include`: nesting in blocks, order, errors naming the included file, cycles, depth.

use core::ops::ControlFlow;
use std::string::ToString;
use std::vec::Vec;
use std::{format, vec};

use super::*;

fn tree() -> MemFiles {
    MemFiles(vec![
        (
            "conf.d/a.conf",
            "virtual_server 192.0.2.1 80 {\n include ../reals/*.conf\n}\n",
        ),
        (
            "conf.d/b.conf",
            "virtual_server 192.0.2.2 80 {\n real_server 10.0.2.1 80 {\n }\n}\n",
        ),
        ("reals/1.conf", "real_server 10.0.1.1 80 {\n weight 5\n}\n"),
        ("reals/2.conf", "\n\nreal_server 10.0.1.2 80 {\n}\n"),
        ("loop.conf", "include loop.conf\n"),
        ("open.conf", "virtual_server 192.0.2.3 80 {\n"),
        ("close.conf", "}\n"),
        (
            "bad.conf",
            "\n\nvirtual_server 192.0.2.4 80 {\n lb_kind FOO\n}\n",
        ),
        ("deep.conf", "include deep2.conf\n"),
        ("deep2.conf", "include deep.conf\n"),
    ])
}

#[test]
fn includes_nest_in_blocks_in_order_and_name_their_file() {
    let files = tree();
    let text = "include conf.d/*.conf\ninclude empty/*.conf\n";
    let (lines, notices) = parse_files(&files, text, |c| {
        c.commands()
            .map(|(at, cmd)| format!("{}:{} {cmd}", at.file.0, at.line))
            .collect::<Vec<_>>()
    })
    .unwrap();
    assert_eq!(
        lines,
        [
            "0:1 -A -t 192.0.2.1:80 -s wlc",
            "2:1 -a -t 192.0.2.1:80 -r 10.0.1.1:80 -m -w 5",
            "3:3 -a -t 192.0.2.1:80 -r 10.0.1.2:80 -m -w 1",
            "1:1 -A -t 192.0.2.2:80 -s wlc",
            "1:2 -a -t 192.0.2.2:80 -r 10.0.2.1:80 -m -w 1",
        ]
    );
    assert_eq!(
        notices,
        ["keepalived.conf:2: include \"empty/*.conf\" matched no file"]
    );
}

#[test]
fn include_errors_name_the_included_file() {
    let files = tree();
    let e = |text: &str| parse_files(&files, text, |_| ()).unwrap_err();
    assert_eq!(
        e("include bad.conf\n"),
        "bad.conf:4: \"FOO\": expected NAT, DR or TUN"
    );
    assert_eq!(
        e("include loop.conf\n"),
        "loop.conf:1: include \"loop.conf\": the file is already being read (an include cycle)"
    );
    assert_eq!(
        e("\ninclude deep.conf\n"),
        "deep2.conf:1: include \"deep.conf\": the file is already being read (an include cycle)"
    );
    assert_eq!(
        e("include missing.conf\n"),
        "keepalived.conf:1: include: missing.conf: no such file"
    );
    assert_eq!(
        e("include open.conf\n}\n"),
        "open.conf:1: the file ends inside the \"virtual_server\" block opened at line 1 (a missing \"}\")"
    );
    assert_eq!(
        e("virtual_server 192.0.2.3 80 {\ninclude close.conf\n"),
        "close.conf:1: unexpected \"}\""
    );
}

/// Files that include the next one forever, each a new file: the depth limit stops them.
struct Chain;

impl Files for Chain {
    fn include(
        &self,
        from: FileId,
        _pattern: &str,
        each: &mut dyn FnMut(FileId, &str, &str) -> ControlFlow<()>,
    ) -> Result<usize, IncludeError> {
        let next = from.0.wrapping_add(1);
        let _ = each(FileId(next), &format!("f{next}"), "include next\n");
        Ok(1)
    }
}

#[test]
fn include_depth_is_bounded() {
    let mut store = Store::new(1, 1, 1, 1);
    let e = store
        .config()
        .parse(&Chain, FileId(0), "f0", "include next\n", &mut |_| {})
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("f{MAX_INCLUDE_DEPTH}:1: include \"next\" nests deeper than {MAX_INCLUDE_DEPTH} files (an include cycle?)")
    );
}

#[test]
fn a_reader_s_error_is_reported_at_the_include() {
    struct Failing;
    impl Files for Failing {
        fn include(
            &self,
            _: FileId,
            pattern: &str,
            _: &mut dyn FnMut(FileId, &str, &str) -> ControlFlow<()>,
        ) -> Result<usize, IncludeError> {
            Err(IncludeError::new(&format_args!(
                "cannot read {pattern}: permission denied"
            )))
        }
    }
    let mut store = Store::new(1, 1, 1, 1);
    let e = store
        .config()
        .parse(
            &Failing,
            MAIN,
            "main.conf",
            "\n\ninclude x.conf\n",
            &mut |_| {},
        )
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "main.conf:3: include: cannot read x.conf: permission denied"
    );
}
