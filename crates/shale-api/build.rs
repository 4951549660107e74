//! Compiles `proto/` (repository root) with `protox` (pure Rust, no system
//! `protoc`) and generates Rust code with `tonic-prost-build`.
//!
//! * All protobuf `bytes` fields become `bytes::Bytes`.
//! * Service stubs (server and client) are generated only when the `grpc`
//!   feature is enabled, so crates below the gRPC layer do not pull in tonic.
//! * The encoded `FileDescriptorSet` is written to `$OUT_DIR` for reflection.

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
    tonic_prost_build::configure()
        .build_server(grpc)
        .build_client(grpc)
        .build_transport(grpc)
        .bytes(".")
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
