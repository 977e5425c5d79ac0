//! A registry behind TLS with a certificate from a test CA: --ca-file, --insecure.

use crate::support::registry::{Registry, RegistryAuth};
use crate::support::{Cli, openssl, require_tool, self_signed, small_module};

#[test]
fn tls_registries_with_a_ca_file_or_insecure() {
    require_tool("openssl", "apt-get install openssl");
    let certs = tempfile::tempdir().unwrap();
    let dir = certs.path();
    self_signed(dir, "test-ca");
    self_signed(dir, "other-ca");
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
        ],
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "test-ca.pem",
            "-CAkey",
            "test-ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "leaf.pem",
        ],
    );
    let registry = Registry::start_with(
        RegistryAuth::None,
        Some((&dir.join("leaf.pem"), &dir.join("leaf.key"))),
    );
    let cli = Cli::new();
    let module = cli.file("filter.wasm", small_module());
    let reference = format!("{}/tls/f:v1", registry.host());
    let ca = dir.join("test-ca.pem");
    let ca = ca.to_str().unwrap();

    cli.push(&module, &reference, &["--ca-file", ca]);
    let out = cli.home.path().join("out.wasm");
    cli.pull(&reference, &out, &["--ca-file", ca, "--no-cache"]);
    assert_eq!(std::fs::read(&out).unwrap(), small_module());
    cli.pull(&reference, &out, &["--insecure", "--no-cache"]);

    let other = dir.join("other-ca.pem");
    let refused = cli.run(&[
        "pull",
        &reference,
        "-o",
        out.to_str().unwrap(),
        "--ca-file",
        other.to_str().unwrap(),
        "--no-cache",
    ]);
    assert!(!refused.ok());
    assert!(
        refused.stderr().contains("TLS handshake failed")
            && refused.stderr().to_lowercase().contains("certificate"),
        "{}",
        refused.stderr()
    );
    // Retrying cannot fix a certificate: no retry, whatever --retries says.
    assert!(!refused.stderr().contains("retry "), "{}", refused.stderr());
}
