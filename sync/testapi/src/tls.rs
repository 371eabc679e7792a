//! The server's TLS: a CA and a server certificate for 127.0.0.1 (and ::1, localhost), made
//! with rcgen when a world first starts, so no key lives in the repository, and kept in the
//! world (`ca.crt`, `server.der`, `server.key.der`) so that a restart ("API back") serves the
//! same certificate, as a real API server does; rustls with ring serves them.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::ServerConfig;

/// A rustls config serving the world's certificate, made (with `ca.crt`) if it has none.
pub fn load_or_make(dir: &Path) -> Result<Arc<ServerConfig>> {
    let (cert, key) = match (
        fs::read(dir.join("server.der")),
        fs::read(dir.join("server.key.der")),
    ) {
        (Ok(c), Ok(k)) => (c, k),
        _ => {
            let (ca, cert, key) = make()?;
            fs::write(dir.join("server.der"), &cert)?;
            fs::write(dir.join("server.key.der"), &key)?;
            fs::write(dir.join("ca.crt"), ca)?;
            (cert, key)
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.into()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
        )
        .context("server certificate")?;
    Ok(Arc::new(config))
}

/// The CA's PEM, and the server's certificate and PKCS#8 key (DER).
fn make() -> Result<(String, Vec<u8>, Vec<u8>)> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "calico-bpf-guard test API CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

    let mut params = CertificateParams::new(vec![
        "127.0.0.1".to_string(),
        "::1".to_string(),
        "localhost".to_string(),
    ])?;
    params
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca)?;
    Ok((ca.pem(), cert.der().to_vec(), key.serialize_der()))
}
