//! TLS for the AMQP connection, with rustls and the `ring` provider only (no aws-lc).
//!
//! - Client: Mozilla's roots (webpki-roots) plus an optional extra CA PEM file (`ca_file`), used for
//!   the fake endpoint in tests and the demo. Port 5671 is pure TLS: the caller runs the handshake on
//!   the TCP stream and hands the TLS stream to fe2o3 as plain AMQP.
//!
//! The server side (the fake endpoint's throw-away CA) is the test kit's (`receiver_testkit::pki`).

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The extra CA file could not be read.
    #[error("cannot read CA file {path}: {source}")]
    ReadCa {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The CA PEM holds no usable certificate.
    #[error("no usable certificate in CA PEM{}", path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    NoCertificate {
        /// The file, when it came from one.
        path: Option<PathBuf>,
    },
    /// The endpoint host is not a valid TLS server name.
    #[error("invalid TLS server name {0:?}")]
    ServerName(String),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn add_pem(roots: &mut RootCertStore, pem: &[u8], path: Option<&Path>) -> Result<(), TlsError> {
    let mut added = 0usize;
    for cert in rustls_pemfile::certs(&mut BufReader::new(pem)) {
        let cert = cert.map_err(|source| match path {
            Some(p) => TlsError::ReadCa {
                path: p.to_path_buf(),
                source,
            },
            None => TlsError::NoCertificate { path: None },
        })?;
        roots.add(cert)?;
        added += 1;
    }
    if added == 0 {
        return Err(TlsError::NoCertificate {
            path: path.map(Path::to_path_buf),
        });
    }
    Ok(())
}

/// A client config trusting webpki-roots plus, if given, the certificates in `extra_ca_pem`.
pub fn client_config_from_pem(extra_ca_pem: Option<&[u8]>) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = extra_ca_pem {
        add_pem(&mut roots, pem, None)?;
    }
    build_client(roots)
}

/// A client config trusting webpki-roots plus, if given, the certificates in the PEM file `ca_file`.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|source| TlsError::ReadCa {
            path: path.to_path_buf(),
            source,
        })?;
        add_pem(&mut roots, &pem, Some(path))?;
    }
    build_client(roots)
}

fn build_client(roots: RootCertStore) -> Result<Arc<ClientConfig>, TlsError> {
    let cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// The TLS server name (SNI and certificate check) for `host` (a DNS name or an IP literal).
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(host.to_string()).map_err(|_| TlsError::ServerName(host.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use receiver_testkit::pki::generate_test_pki;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn generated_ca_is_trusted_and_handshake_works() {
        let pki = generate_test_pki(&[]).unwrap();
        let client = client_config_from_pem(Some(pki.ca_pem.as_bytes())).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(pki.server_config.clone());
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut tls = acceptor.accept(tcp).await.unwrap();
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf).await.unwrap();
            tls.write_all(&buf).await.unwrap();
            tls.shutdown().await.unwrap();
        });
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let connector = tokio_rustls::TlsConnector::from(client);
        let mut tls = connector
            .connect(server_name("127.0.0.1").unwrap(), tcp)
            .await
            .unwrap();
        tls.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn unknown_ca_is_refused() {
        let pki = generate_test_pki(&[]).unwrap();
        let client = client_config(None).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(pki.server_config.clone());
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let _ = acceptor.accept(tcp).await;
        });
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let err = tokio_rustls::TlsConnector::from(client)
            .connect(server_name("localhost").unwrap(), tcp)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("UnknownIssuer"), "{err}");
    }

    #[test]
    fn bad_ca_file_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        assert!(matches!(
            client_config(Some(&missing)),
            Err(TlsError::ReadCa { .. })
        ));
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a pem").unwrap();
        assert!(matches!(
            client_config(Some(&empty)),
            Err(TlsError::NoCertificate { .. })
        ));
        assert!(server_name("bad host name!").is_err());
    }
}
