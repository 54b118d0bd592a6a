//! The library's README shows `examples/embed.rs` as its first code block (and rustdoc compiles
//! and runs that block as a doc test of lb-core): this keeps the two the same text.

#[test]
fn lb_core_readme_first_code_block_is_the_embed_example() {
    let readme = include_str!("../../lb-core/README.md");
    let embed = include_str!("../examples/embed.rs");
    let start = readme.find("```").expect("a code block");
    let body = &readme[start..];
    let body = &body[body.find('\n').expect("fence line") + 1..];
    let end = body.find("```").expect("closing fence");
    assert_eq!(
        &body[..end],
        embed,
        "lb-core/README.md's first code block is not examples/embed.rs"
    );
    assert!(
        readme[..start].ends_with("```rust\n") || readme[start..].starts_with("```rust\n"),
        "the block is marked rust, so rustdoc compiles it"
    );
    assert!(
        embed.lines().count() <= 80,
        "examples/embed.rs stays within 80 lines"
    );
}

#[test]
fn the_repository_readme_points_to_the_embed_example() {
    let readme = include_str!("../../README.md");
    assert!(readme.contains("cargo run -p lb-examples --example embed"));
}
