//! The double's certificates: a server CA and the server certificate it signs, an
//! impostor CA for [`Fault::WrongCertificate`](crate::Fault::WrongCertificate), and
//! the client CA whose certificates authenticate callers. All are generated in memory
//! at start-up; private keys leave the process only through `issue_client_cert`,
//! which hands a fresh client key to the test that asked for it.

use std::net::IpAddr;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::{ClientAuth, ServerCertificate};

/// A certificate authority that can sign leaf certificates.
struct CertificateAuthority {
    certificate: Certificate,
    key: KeyPair,
}

impl CertificateAuthority {
    fn generate(common_name: &str) -> anyhow::Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate()?;
        let certificate = params.self_signed(&key)?;
        Ok(CertificateAuthority { certificate, key })
    }

    fn sign(&self, params: CertificateParams) -> anyhow::Result<(Certificate, KeyPair)> {
        let key = KeyPair::generate()?;
        let certificate = params.signed_by(&key, &self.certificate, &self.key)?;
        Ok((certificate, key))
    }

    fn server_certificate(&self, ip: IpAddr) -> anyhow::Result<(Certificate, KeyPair)> {
        let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        if !ip.is_unspecified() && !ip.is_loopback() {
            names.push(ip.to_string());
        }
        let mut params = CertificateParams::new(names)?;
        params
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params)
    }
}

/// Certificates and the rustls configurations built from them.
pub(crate) struct TlsMaterial {
    server_ca: CertificateAuthority,
    client_ca: CertificateAuthority,
    server_config: Arc<ServerConfig>,
    impostor_config: Arc<ServerConfig>,
}

impl TlsMaterial {
    /// Generates every certificate for a server listening on `ip`; it
    /// presents `served` instead of its own server certificate when given.
    pub(crate) fn generate(
        client_auth: ClientAuth,
        ip: IpAddr,
        served: Option<&ServerCertificate>,
    ) -> anyhow::Result<Self> {
        let server_ca = CertificateAuthority::generate("kube-double server CA")?;
        let client_ca = CertificateAuthority::generate("kube-double client CA")?;
        let impostor_ca = CertificateAuthority::generate("kube-double impostor CA")?;
        let (chain, key) = match served {
            Some(served) => (
                CertificateDer::pem_slice_iter(served.chain_pem.as_bytes())
                    .collect::<Result<Vec<_>, _>>()?,
                PrivateKeyDer::from_pem_slice(served.key_pem.as_bytes())?,
            ),
            None => {
                let (certificate, key) = server_ca.server_certificate(ip)?;
                (vec![certificate.der().clone()], pkcs8(&key))
            }
        };
        let server_config = build_server_config(chain, key, &client_ca, client_auth)?;
        let (certificate, key) = impostor_ca.server_certificate(ip)?;
        let impostor_config = build_server_config(
            vec![certificate.der().clone()],
            pkcs8(&key),
            &client_ca,
            client_auth,
        )?;
        Ok(TlsMaterial {
            server_ca,
            client_ca,
            server_config,
            impostor_config,
        })
    }

    pub(crate) fn ca_pem(&self) -> String {
        self.server_ca.certificate.pem()
    }

    /// The configuration to serve: the real one, or the impostor's certificate.
    pub(crate) fn server_config(&self, wrong_certificate: bool) -> Arc<ServerConfig> {
        if wrong_certificate {
            self.impostor_config.clone()
        } else {
            self.server_config.clone()
        }
    }

    /// A client certificate (PEM) for `common_name` and its PKCS#8 key (PEM).
    pub(crate) fn issue_client_cert(&self, common_name: &str) -> anyhow::Result<(String, String)> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let (certificate, key) = self.client_ca.sign(params)?;
        Ok((certificate.pem(), key.serialize_pem()))
    }
}

fn pkcs8(key: &KeyPair) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()))
}

fn build_server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_ca: &CertificateAuthority,
    client_auth: ClientAuth,
) -> anyhow::Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        ClientAuth::Optional | ClientAuth::Required => {
            let mut roots = RootCertStore::empty();
            roots.add(client_ca.certificate.der().clone())?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if client_auth == ClientAuth::Optional {
                verifier.allow_unauthenticated().build()?
            } else {
                verifier.build()?
            };
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The common name of a verified client certificate: the Kubernetes user name.
pub(crate) fn common_name(certificate: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate).ok()?;
    let common_name = parsed.subject().iter_common_name().next()?;
    common_name.as_str().ok().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_client_certificate_carries_its_common_name() {
        let material =
            TlsMaterial::generate(ClientAuth::Optional, IpAddr::from([127, 0, 0, 1]), None)
                .unwrap();
        let (certificate_pem, key_pem) = material.issue_client_cert("alice").unwrap();
        assert!(key_pem.contains("BEGIN PRIVATE KEY"));
        let der = pem_to_der(&certificate_pem);
        assert_eq!(common_name(&der).as_deref(), Some("alice"));
    }

    fn pem_to_der(pem: &str) -> CertificateDer<'static> {
        use base64::Engine as _;
        let body: String = pem
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap();
        CertificateDer::from(der)
    }
}
