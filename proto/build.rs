//! Generates the Rust types and tonic services from `strom/v1/*.proto` with `protox` (a
//! protobuf compiler in Rust), so building needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["strom/v1/control.proto", "strom/v1/data.proto"];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let descriptors = protox::compile(protos, ["."])?;
    tonic_prost_build::configure()
        // Record batches stay `Bytes`: a received frame is decoded without a copy.
        .bytes(".strom.data.v1.DataFrame.records")
        .compile_fds(descriptors)?;
    Ok(())
}
