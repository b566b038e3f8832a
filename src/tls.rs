//! rustls configuration for both sides: server configs for TLS listeners
//! (ALPN `h2`, `http/1.1`) and client configs for TLS upstreams. One crypto
//! provider (aws-lc-rs) for the whole process. The TLS settings types live
//! here (config re-exports them), so this leaf depends on nothing of ours.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

/// Certificate chain and key, read at validation time so a reload that
/// points at an unreadable or malformed file is refused up front.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerTls {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamTls {
    pub sni: Option<String>,
    pub verify: bool,
    pub ca_pem: Option<Vec<u8>>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: no certificate found in PEM")]
    NoCertificate { path: String },
    #[error("{path}: no private key found in PEM ({detail})")]
    NoKey { path: String, detail: String },
    #[error("certificate and key do not form a valid server config: {0}")]
    Server(rustls::Error),
    #[error("upstream CA: {0}")]
    Ca(String),
    #[error("invalid SNI name {0:?}")]
    BadSni(String),
    #[error("TLS setup: {0}")]
    Setup(rustls::Error),
}

pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Installs the process-wide provider (for libraries that use the default).
pub fn install_default_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// A server config from PEM bytes; certificate rotation builds a new one.
pub(crate) fn server_config(tls: &ServerTls) -> Result<ServerConfig, TlsError> {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&tls.cert_pem).filter_map(Result::ok).collect();
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { path: tls.cert_path.display().to_string() });
    }
    let key = PrivateKeyDer::from_pem_slice(&tls.key_pem)
        .map_err(|e| TlsError::NoKey { path: tls.key_path.display().to_string(), detail: e.to_string() })?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Setup)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(TlsError::Server)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The SNI name an upstream TLS config asks for, checked.
pub(crate) fn upstream_sni(tls: &UpstreamTls) -> Result<Option<ServerName<'static>>, TlsError> {
    tls.sni
        .as_ref()
        .map(|name| ServerName::try_from(name.clone()).map_err(|_| TlsError::BadSni(name.clone())))
        .transpose()
}

/// Checks an upstream TLS config the way a connector would build it.
pub(crate) fn check_upstream(tls: &UpstreamTls) -> Result<(), TlsError> {
    client_config(tls)?;
    upstream_sni(tls)?;
    Ok(())
}

/// A client config for an upstream pool: HTTP/1.1 only.
pub(crate) fn client_config(tls: &UpstreamTls) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Setup)?;
    let mut config = if tls.verify {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(pem) = &tls.ca_pem {
            let mut added = 0;
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| TlsError::Ca(e.to_string()))?;
                roots.add(cert).map_err(|e| TlsError::Ca(e.to_string()))?;
                added += 1;
            }
            if added == 0 {
                return Err(TlsError::Ca("no certificate in the CA file".into()));
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(NoVerify(provider()))).with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// `verify = false`: accepts any certificate (signatures are still checked
/// so the handshake is well-formed). For lab setups only; logged at startup.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
