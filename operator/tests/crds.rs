//! The CRDs committed under `crds/` are what the Rust types generate: a change to the
//! types without `strom-operator crd > crds/streamjob.yaml` fails here.

#[test]
fn the_committed_crd_is_what_the_types_generate() {
    let generated = strom_operator::crd::crd_yaml().expect("the CRD serialises");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds/streamjob.yaml");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "crds/streamjob.yaml is out of date: run `cargo run -p strom-operator -- crd > crds/streamjob.yaml`"
    );
}
