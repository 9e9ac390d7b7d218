//! rustls configurations from PEM files, with the `ring` provider this project builds (rustls's
//! default would pull in aws-lc, which needs cmake). Every error names the config field and
//! the file, so an installer knows which line of which config to fix.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A PEM file named by a config: the field that names it (`tls.ca_file`) and its path.
#[derive(Debug, Clone, Copy)]
pub struct PemFile<'a> {
    pub field: &'static str,
    pub path: &'a Path,
}

impl<'a> PemFile<'a> {
    pub fn new(field: &'static str, path: &'a Path) -> Self {
        Self { field, path }
    }

    fn error(&self, detail: impl std::fmt::Display) -> TlsError {
        TlsError {
            field: self.field,
            path: Some(self.path.to_path_buf()),
            detail: detail.to_string(),
        }
    }

    fn read(&self) -> Result<Vec<u8>, TlsError> {
        std::fs::read(self.path).map_err(|e| self.error(e))
    }
}

/// A TLS file or setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {}{detail}", path.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default())]
pub struct TlsError {
    /// The config field (`tls.ca_file`, `tls.cert_file`, …; `tls` for the settings as a whole).
    pub field: &'static str,
    /// The file, when the problem is one.
    pub path: Option<PathBuf>,
    /// What is wrong.
    pub detail: String,
}

/// The process-wide rustls provider for libraries that build their own configs (reqwest):
/// ring's, unless one is set. Idempotent.
pub fn install_default_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Err only if another thread installed one in between: there is one either way, and
        // this project builds no provider but ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate in `file`; at least one.
pub fn certificates(file: PemFile<'_>) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = file.read()?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file.error(e))?;
    if chain.is_empty() {
        return Err(file.error("no PEM certificate in it"));
    }
    Ok(chain)
}

/// The private key in `file`.
pub fn private_key(file: PemFile<'_>) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(&file.read()?).map_err(|e| file.error(e))
}

/// The certificates of `file` as trust roots; at least one.
pub fn roots(file: PemFile<'_>) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(file)? {
        roots.add(cert).map_err(|e| file.error(e))?;
    }
    Ok(roots)
}

/// A client trusting the CAs of `ca`, presenting `identity` (certificate chain, key) if given.
pub fn client_config(
    ca: PemFile<'_>,
    identity: Option<(PemFile<'_>, PemFile<'_>)>,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(settings)?
        .with_root_certificates(roots(ca)?);
    let config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(certificates(cert)?, private_key(key)?)
            .map_err(|e| key.error(e))?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// A server presenting `cert` with `key`; with `client_ca`, clients must present a
/// certificate that CA signed.
pub fn server_config(
    cert: PemFile<'_>,
    key: PemFile<'_>,
    client_ca: Option<PemFile<'_>>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = certificates(cert)?;
    let key_der = private_key(key)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(settings)?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots(ca)?),
                provider(),
            )
            .build()
            .map_err(|e| ca.error(e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(chain, key_der)
        .map_err(|e| key.error(e))?;
    Ok(Arc::new(config))
}

fn settings(e: rustls::Error) -> TlsError {
    TlsError {
        field: "tls",
        path: None,
        detail: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
    use testkit::certs::{make_ca, make_leaf};

    struct Files {
        _dir: tempfile::TempDir,
        ca: PathBuf,
        server: (PathBuf, PathBuf),
        client: (PathBuf, PathBuf),
        empty: PathBuf,
    }

    fn files() -> Files {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let (ca, issuer) = make_ca("infra test CA");
        let (sc, sk) = make_leaf(&issuer, &["127.0.0.1"], ServerAuth);
        let (cc, ck) = make_leaf(&issuer, &["site-1"], ClientAuth);
        Files {
            ca: write("ca.pem", &ca.pem()),
            server: (write("server.pem", &sc), write("server.key", &sk)),
            client: (write("client.pem", &cc), write("client.key", &ck)),
            empty: write("empty.pem", "not a certificate\n"),
            _dir: dir,
        }
    }

    #[test]
    fn good_files_make_client_and_server_configs() {
        let f = files();
        let ca = PemFile::new("tls.ca_file", &f.ca);
        client_config(ca, None).unwrap();
        client_config(
            ca,
            Some((
                PemFile::new("tls.cert_file", &f.client.0),
                PemFile::new("tls.key_file", &f.client.1),
            )),
        )
        .unwrap();
        let server = server_config(
            PemFile::new("tls.cert_file", &f.server.0),
            PemFile::new("tls.key_file", &f.server.1),
            Some(ca),
        )
        .unwrap();
        assert!(server.alpn_protocols.is_empty());
    }

    #[test]
    fn each_bad_file_is_named_with_its_field() {
        let f = files();
        let missing = f.ca.with_file_name("missing.pem");
        let err = client_config(PemFile::new("tls.ca_file", &missing), None).unwrap_err();
        assert_eq!(err.field, "tls.ca_file");
        assert!(
            err.to_string().contains(&missing.display().to_string()),
            "{err}"
        );

        let err = client_config(PemFile::new("tls.ca_file", &f.empty), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "tls.ca_file: {}: no PEM certificate in it",
                f.empty.display()
            )
        );

        // A certificate where the key should be.
        let err = server_config(
            PemFile::new("tls.cert_file", &f.server.0),
            PemFile::new("tls.key_file", &f.server.0),
            None,
        )
        .unwrap_err();
        assert_eq!(err.field, "tls.key_file");
        assert_eq!(err.path.as_deref(), Some(f.server.0.as_path()));
    }
}
