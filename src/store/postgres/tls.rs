//! TLS to the server through rustls, with libpq's `sslmode` meanings.
//!
//! rustls rather than native-tls: it is already in the build (the S3 client uses it), needs no
//! OpenSSL headers on the build machine, and lets the certificate check follow libpq exactly:
//! `prefer` and `require` encrypt without checking the certificate (they guard against
//! eavesdropping only, and a server with Debian's default self-signed certificate must work),
//! `verify-ca` checks the chain, `verify-full` the chain and the host name.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{WebPkiServerVerifier, verify_server_cert_signed_by_trust_anchor};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::url::{SslMode, Target};
use crate::error::{Error, Result};

/// The connector for `target`'s TLS policy.
pub(crate) fn connector(target: &Target) -> Result<MakeRustlsConnect> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = match target.ssl_mode {
        // Never used for a handshake (the client does not ask for TLS), but the client's
        // type wants a connector.
        SslMode::Disable | SslMode::Prefer | SslMode::Require => {
            Arc::new(EncryptOnly(provider.clone()))
        }
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let roots = Arc::new(roots(target)?);
            let full = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .map_err(|e| {
                    Error::Invalid(format!(
                        "cannot check the server's certificate ({e}); give trusted roots with sslrootcert= or PGSSLROOTCERT"
                    ))
                })?;
            if target.ssl_mode == SslMode::VerifyFull {
                full
            } else {
                Arc::new(ChainOnly {
                    roots,
                    signatures: EncryptOnly(provider.clone()),
                })
            }
        }
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Invalid(format!("cannot set up TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// The trusted roots: the `sslrootcert` file when given, else the system's.
fn roots(target: &Target) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    match &target.root_cert {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| Error::io("reading the root certificate", path, e))?;
            let mut found = 0;
            for cert in rustls_native_certs_pem(&pem) {
                if roots.add(cert).is_ok() {
                    found += 1;
                }
            }
            if found == 0 {
                return Err(Error::Invalid(format!(
                    "{} holds no PEM certificate; give the CA certificate that signed the server's",
                    path.display()
                )));
            }
        }
        None => {
            let loaded = rustls_native_certs::load_native_certs();
            for cert in loaded.certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(Error::Invalid(
                    "no trusted root certificates found on this system; give one with sslrootcert= or PGSSLROOTCERT".to_owned(),
                ));
            }
        }
    }
    Ok(roots)
}

/// The certificates in a PEM file.
fn rustls_native_certs_pem(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem)
        .filter_map(std::result::Result::ok)
        .collect()
}

/// `prefer` / `require`: the handshake's signatures are checked (the session is really
/// encrypted to whoever holds the key), the certificate is not, as libpq does.
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted root; the host name is not compared. The
/// handshake's signatures are checked as [`EncryptOnly`] checks them.
#[derive(Debug)]
struct ChainOnly {
    roots: Arc<RootCertStore>,
    signatures: EncryptOnly,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.signatures.0.signature_verification_algorithms.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.signatures.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.signatures.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.signatures.supported_verify_schemes()
    }
}
