//! Compiles `proto/` (repository root) with `protox` (pure Rust, no system
//! `protoc`) and generates Rust code with `tonic-prost-build`.
//!
//! * All protobuf `bytes` fields become `bytes::Bytes`.
//! * Service stubs (server and client) are generated only when the `grpc`
//!   feature is enabled, so crates below the gRPC layer do not pull in tonic.
//! * The encoded `FileDescriptorSet` is written to `$OUT_DIR` for reflection.
//!
//! Two generation passes, joined into one `$OUT_DIR/<package>.rs` per package:
//!
//! 1. messages and clients (`$OUT_DIR/messages/`), exactly as `.proto` says;
//! 2. with `grpc`, servers only (`$OUT_DIR/servers/`): every package is an
//!    extern path to the messages of pass 1, so no message is generated twice,
//!    and `etcdserverpb.WatchResponse` maps to
//!    [`watch_wire::WireWatchResponse`](src/watch_wire.rs), whose events are
//!    pre-encoded bytes shared by every watcher they go to. Clients keep the
//!    ordinary `WatchResponse`; the bytes on the wire are the same. Likewise
//!    `RangeResponse` and `RangeStreamResponse` map to
//!    [`range_wire`](src/range_wire.rs)'s types, whose key-values are stored bytes.
//!    Servers encode with [`wire_codec::WireCodec`](src/wire_codec.rs) (prost's bytes,
//!    into a buffer reserved to the message's length).

use std::env;
use std::error::Error;
use std::fs;
use std::path::PathBuf;

const PROTO_FILES: &[&str] = &[
    "mvccpb/kv.proto",
    "authpb/auth.proto",
    "etcdserverpb/rpc.proto",
    "shale/internal.proto",
    "shale/peer.proto",
];

fn main() -> Result<(), Box<dyn Error>> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let proto_root = manifest_dir.join("../../proto").canonicalize()?;

    println!("cargo:rerun-if-changed={}", proto_root.display());
    for file in PROTO_FILES {
        println!("cargo:rerun-if-changed={}", proto_root.join(file).display());
    }
    println!("cargo:rerun-if-changed=build.rs");

    let mut compiler = protox::Compiler::new([&proto_root])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(PROTO_FILES.iter().copied())?;

    fs::write(
        out_dir.join("shale_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;

    let grpc = env::var_os("CARGO_FEATURE_GRPC").is_some();
    let fds = compiler.file_descriptor_set();
    let messages_dir = out_dir.join("messages");
    let servers_dir = out_dir.join("servers");
    for dir in [&messages_dir, &servers_dir] {
        if dir.exists() {
            fs::remove_dir_all(dir)?;
        }
        fs::create_dir_all(dir)?;
    }

    tonic_prost_build::configure()
        .build_server(false)
        .build_client(grpc)
        .build_transport(grpc)
        .bytes(".")
        .out_dir(&messages_dir)
        .compile_fds(fds.clone())?;

    if grpc {
        let mut servers = tonic_prost_build::configure()
            .build_server(true)
            .build_client(false)
            .build_transport(false)
            .codec_path("crate::wire_codec::WireCodec")
            .out_dir(&servers_dir);
        let mut packages: Vec<&str> = fds.file.iter().map(|f| f.package()).collect();
        packages.sort_unstable();
        packages.dedup();
        for pkg in packages {
            servers = servers.extern_path(
                format!(".{pkg}"),
                format!("crate::{}", pkg.replace('.', "::")),
            );
        }
        servers
            .extern_path(
                ".etcdserverpb.WatchResponse",
                "crate::watch_wire::WireWatchResponse",
            )
            .extern_path(
                ".etcdserverpb.RangeResponse",
                "crate::range_wire::WireRangeResponse",
            )
            .extern_path(
                ".etcdserverpb.RangeStreamResponse",
                "crate::range_wire::WireRangeStreamResponse",
            )
            .compile_fds(fds)?;
    }

    // One file per package: its messages (and clients), then its servers.
    for entry in fs::read_dir(&messages_dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let mut code = fs::read_to_string(entry.path())?;
        let servers = servers_dir.join(&name);
        if servers.exists() {
            code.push('\n');
            code.push_str(&fs::read_to_string(servers)?);
        }
        write_if_changed(&out_dir.join(&name), &code)?;
    }
    for entry in fs::read_dir(&servers_dir)? {
        let name = entry?.file_name();
        if !messages_dir.join(&name).exists() {
            return Err(format!("servers for {name:?} but no messages").into());
        }
    }
    Ok(())
}

/// Rewrites `path` only when its content changes, so dependents are not rebuilt needlessly.
fn write_if_changed(path: &std::path::Path, code: &str) -> std::io::Result<()> {
    if fs::read_to_string(path).is_ok_and(|old| old == code) {
        return Ok(());
    }
    fs::write(path, code)
}
