//! TLS for SSL and SASL_SSL listeners, with rustls.
//!
//! The certificate and key are PEM files (by default Postgres's own `ssl_cert_file` and
//! `ssl_key_file`, resolved by the glue). With `pg_kafka.ssl_client_auth` = requested or
//! required, clients present certificates chaining to `pg_kafka.ssl_ca_file`; on SSL
//! listeners the certificate's subject CN is the client's role.

use std::fs::File;
use std::io::BufReader;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use tokio_rustls::TlsAcceptor;

use crate::config::{ClientAuth, Config};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} \"{path}\": {source}")]
    Read { what: &'static str, path: String, source: std::io::Error },
    #[error("{what} \"{path}\" holds no {expected}")]
    Empty { what: &'static str, path: String, expected: &'static str },
    #[error("pg_kafka.ssl_client_auth = {0} needs pg_kafka.ssl_ca_file")]
    NoCa(&'static str),
    #[error("invalid TLS setup: {0}")]
    Rustls(String),
}

fn open(what: &'static str, path: &str) -> Result<BufReader<File>, TlsError> {
    File::open(path).map(BufReader::new).map_err(|source| TlsError::Read { what, path: path.to_owned(), source })
}

fn certificates(what: &'static str, path: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut open(what, path)?).collect::<Result<_, _>>().map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })?;
    if certs.is_empty() {
        return Err(TlsError::Empty { what, path: path.to_owned(), expected: "PEM certificate" });
    }
    Ok(certs)
}

fn private_key(path: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    let what = "pg_kafka.ssl_key_file";
    rustls_pemfile::private_key(&mut open(what, path)?)
        .map_err(|source| TlsError::Read { what, path: path.to_owned(), source })?
        .ok_or_else(|| TlsError::Empty { what, path: path.to_owned(), expected: "PEM private key" })
}

/// The acceptor for TLS listeners, from the configured files.
pub fn acceptor(config: &Config) -> Result<TlsAcceptor, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let builder = match config.ssl_client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        mode => {
            let name = if mode == ClientAuth::Required { "required" } else { "requested" };
            if config.ssl_ca_file.is_empty() {
                return Err(TlsError::NoCa(name));
            }
            let mut roots = RootCertStore::empty();
            for ca in certificates("pg_kafka.ssl_ca_file", &config.ssl_ca_file)? {
                roots.add(ca).map_err(|e| TlsError::Rustls(e.to_string()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if mode == ClientAuth::Required { verifier } else { verifier.allow_unauthenticated() };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| TlsError::Rustls(e.to_string()))?)
        }
    };
    let server = builder
        .with_single_cert(certificates("pg_kafka.ssl_cert_file", &config.ssl_cert_file)?, private_key(&config.ssl_key_file)?)
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(server)))
}

/// The subject common name of a (verified) client certificate.
pub fn common_name(certificate: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate.as_ref()).ok()?;
    let cn = parsed.subject().iter_common_name().next()?.as_str().ok()?.to_owned();
    (!cn.is_empty()).then_some(cn)
}
