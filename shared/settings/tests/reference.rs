//! `docs/configuration.md` is the settings' key table, written out: this test fails when they differ, and
//! with `BB2SNYK_WRITE_DOCS=1` writes the file anew.

#[test]
fn the_configuration_reference_is_the_key_table() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/configuration.md");
    let written = bb2snyk_settings::reference();
    if std::env::var_os("BB2SNYK_WRITE_DOCS").is_some() {
        std::fs::write(path, &written).expect("docs/configuration.md written");
    }
    let on_disk = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        on_disk == written,
        "docs/configuration.md differs from the settings' key table: run \
         BB2SNYK_WRITE_DOCS=1 cargo test -p bb2snyk-settings --test reference"
    );
}
