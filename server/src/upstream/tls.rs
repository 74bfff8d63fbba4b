//! rustls client configuration for one cluster: its CA bundle (or the web PKI
//! roots), optional verification skip, optional client certificate (mTLS).
//!
//! A cluster's `caData` is trusted as Go's crypto/x509 (kubectl, client-go)
//! trusts a kubeconfig's `certificate-authority-data`; see [`CaDataVerifier`].

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_name, WebPkiServerVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use secrecy::{ExposeSecret, SecretString};

use crate::certificates::{allows_server_auth, may_sign, path_length, validity};
use crate::clusters::ClusterRecord;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The TLS configuration for a cluster record, ALPN left for the connector.
pub fn client_config(
    record: &ClusterRecord,
    client_key: Option<&SecretString>,
) -> Result<ClientConfig, TlsConfigError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsConfigError::Protocols)?;
    let builder = if record.skip_tls_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SkipVerification(provider())))
    } else {
        match &record.ca_data {
            Some(pem) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(CaDataVerifier::from_pem(
                    pem,
                    provider(),
                )?)),
            None => {
                let mut roots = RootCertStore::empty();
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                builder.with_root_certificates(roots)
            }
        }
    };
    let mut config = match (&record.client_cert_data, client_key) {
        (Some(cert_pem), Some(key_pem)) => {
            let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| TlsConfigError::ClientCertificatePem)?;
            let key = PrivateKeyDer::from_pem_slice(key_pem.expose_secret().as_bytes())
                .map_err(|_| TlsConfigError::ClientKeyPem)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(TlsConfigError::ClientCertificate)?
        }
        _ => builder.with_no_client_auth(),
    };
    // Every new connection verifies the server's certificate in full, as
    // client-go (which keeps no session cache) does: a resumed session
    // would skip verification, and with it a certificate that has expired
    // or a trust anchor that has. Connections are pooled, so handshakes
    // stay rare.
    config.resumption = rustls::client::Resumption::disabled();
    Ok(config)
}

/// Why a cluster's TLS settings cannot be used; registration refuses all of
/// these, so they are seen only for records written around it.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("TLS protocol versions: {0}")]
    Protocols(rustls::Error),
    #[error("caData is not valid PEM")]
    CaPem,
    #[error("caData holds no certificate")]
    CaEmpty,
    #[error("caData: {0}")]
    CaAnchor(rustls::client::VerifierBuilderError),
    #[error("clientCertData is not valid PEM")]
    ClientCertificatePem,
    #[error("clientKeyData is not a PEM private key")]
    ClientKeyPem,
    #[error("client certificate: {0}")]
    ClientCertificate(rustls::Error),
}

/// Verifies a server against a cluster's `caData` as Go's crypto/x509 does.
///
/// First, always, rustls' own [`WebPkiServerVerifier`] over each certificate
/// of `caData` that Go would let sign (a CA, or a version 1 certificate, as
/// `CheckSignatureFrom` requires) and that is valid at the time of the
/// handshake (Go checks the root's period too; webpki does not): a chain to
/// one of them, validity periods, the serverAuth purpose and the server name.
/// Whatever it accepts is accepted.
///
/// When it refuses, one more rule, Go's (`Certificate.Verify`: a leaf that
/// is itself in the roots pool is a chain of its own): the presented
/// end-entity certificate is accepted if it is byte for byte (DER) one of the
/// certificates of `caData`, and only if, as Go still checks on that path,
///
/// - webpki parses it as an end-entity certificate (malformed DER and
///   unknown critical extensions are refused, as Go refuses them),
/// - it is valid for the server name (DNS or IP subject alternative names,
///   by webpki's `EndEntityCert::verify_is_valid_for_subject_name`),
/// - `now` lies within its notBefore..=notAfter, and
/// - its extended key usage, if it has one, allows serverAuth (or any
///   purpose); no extension at all allows every purpose, as in Go.
///
/// Its own signature, CA flag and key usage are not looked at (it is
/// trusted as given, as Go trusts it), and nothing else webpki refused is
/// accepted. This is how a self-signed `CA:TRUE` serving certificate (which
/// webpki refuses as an end entity) and a cluster's own leaf certificate
/// given as `caData` (not an issuer of anything) verify, as they do for
/// kubectl. Handshake signatures are checked with the provider's algorithms
/// either way, so the server must hold the certificate's private key.
#[derive(Debug)]
struct CaDataVerifier {
    /// One verifier per certificate of `caData` that may be a trust anchor,
    /// with its validity period; none: only an exact match is accepted.
    anchors: Vec<Anchor>,
    /// Every certificate of `caData`, anchors included (a self-signed CA is
    /// both).
    exact: Vec<CertificateDer<'static>>,
    provider: Arc<CryptoProvider>,
}

impl CaDataVerifier {
    fn from_pem(pem: &str, provider: Arc<CryptoProvider>) -> Result<Self, TlsConfigError> {
        let certificates = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| TlsConfigError::CaPem)?;
        if certificates.is_empty() {
            return Err(TlsConfigError::CaEmpty);
        }
        Self::new(certificates, provider)
    }

    fn new(
        certificates: Vec<CertificateDer<'static>>,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, TlsConfigError> {
        let mut anchors = Vec::new();
        // A certificate that cannot be an anchor may still be matched
        // exactly; registration has refused certificates neither can use.
        for certificate in &certificates {
            let (Some(true), Some((not_before, not_after))) =
                (may_sign(certificate), validity(certificate))
            else {
                continue;
            };
            let mut roots = RootCertStore::empty();
            if roots.add(certificate.clone()).is_err() {
                continue;
            }
            let verifier =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(TlsConfigError::CaAnchor)?;
            anchors.push(Anchor {
                verifier,
                not_before,
                not_after,
                max_intermediates: path_length(certificate),
            });
        }
        Ok(CaDataVerifier {
            anchors,
            exact: certificates,
            provider,
        })
    }
}

impl ServerCertVerifier for CaDataVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut refused = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        let usable = |anchor: &&Anchor| {
            anchor.not_before.as_secs() <= now.as_secs()
                && now.as_secs() <= anchor.not_after.as_secs()
                && anchor.max_intermediates.is_none_or(|most| {
                    u32::try_from(intermediates.len()).is_ok_and(|count| count <= most)
                })
        };
        for anchor in self.anchors.iter().filter(usable) {
            match anchor.verifier.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            ) {
                Ok(verified) => return Ok(verified),
                Err(error) => refused = error,
            }
        }
        if !self
            .exact
            .iter()
            .any(|trusted| trusted.as_ref() == end_entity.as_ref())
        {
            return Err(refused);
        }
        verify_exact_match(end_entity, server_name, now)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// What Go still checks of a leaf found in its roots pool (see
/// [`CaDataVerifier`]): parsing, the server name, the validity period and
/// the extended key usage.
fn verify_exact_match(
    end_entity: &CertificateDer<'_>,
    server_name: &ServerName<'_>,
    now: UnixTime,
) -> Result<(), rustls::Error> {
    let invalid = rustls::Error::InvalidCertificate;
    let parsed = ParsedCertificate::try_from(end_entity)?;
    verify_server_name(&parsed, server_name)?;
    let (not_before, not_after) =
        validity(end_entity).ok_or(invalid(CertificateError::BadEncoding))?;
    let time = now.as_secs();
    if time < not_before.as_secs() {
        return Err(invalid(CertificateError::NotValidYetContext {
            time: now,
            not_before,
        }));
    }
    if time > not_after.as_secs() {
        return Err(invalid(CertificateError::ExpiredContext {
            time: now,
            not_after,
        }));
    }
    if !allows_server_auth(end_entity).ok_or(invalid(CertificateError::BadEncoding))? {
        return Err(invalid(CertificateError::InvalidPurpose));
    }
    Ok(())
}

/// One trust anchor of `caData` and the period in which it may be used.
#[derive(Debug)]
struct Anchor {
    verifier: Arc<WebPkiServerVerifier>,
    not_before: UnixTime,
    not_after: UnixTime,
    /// Its path length constraint, which webpki does not apply to anchors:
    /// a server that sends more intermediates is not verified through it
    /// (stricter than Go, which counts only the chain it builds).
    max_intermediates: Option<u32>,
}

/// `skipTLSVerify: true`: any server certificate is accepted (handshake
/// signatures are still checked). For development clusters only.
#[derive(Debug)]
struct SkipVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for SkipVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
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
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
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

#[cfg(test)]
mod tests {
    use rcgen::{
        BasicConstraints, Certificate, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    };

    use super::*;
    use crate::certificates::check_ca_certificates;

    fn name(text: &str) -> ServerName<'static> {
        ServerName::try_from(text.to_owned()).unwrap()
    }

    fn ca(common_name: &str) -> (Certificate, KeyPair) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        (params.self_signed(&key).unwrap(), key)
    }

    fn serving(names: &[&str]) -> CertificateParams {
        let mut params = CertificateParams::new(
            names
                .iter()
                .map(|name| name.to_string())
                .collect::<Vec<_>>(),
        )
        .unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params
    }

    fn signed(params: CertificateParams, issuer: &(Certificate, KeyPair)) -> Certificate {
        params
            .signed_by(&KeyPair::generate().unwrap(), &issuer.0, &issuer.1)
            .unwrap()
    }

    fn expired(mut params: CertificateParams) -> CertificateParams {
        params.not_before = rcgen::date_time_ymd(2019, 1, 1);
        params.not_after = rcgen::date_time_ymd(2020, 1, 1);
        params
    }

    fn verifier(ca_data: &[&Certificate]) -> CaDataVerifier {
        let pem: String = ca_data
            .iter()
            .map(|certificate| certificate.pem())
            .collect();
        CaDataVerifier::from_pem(&pem, provider()).unwrap()
    }

    fn verify(
        verifier: &CaDataVerifier,
        presented: &Certificate,
        server: &str,
    ) -> Result<ServerCertVerified, rustls::Error> {
        verifier.verify_server_cert(presented.der(), &[], &name(server), &[], UnixTime::now())
    }

    fn refusal(result: Result<ServerCertVerified, rustls::Error>) -> CertificateError {
        match result {
            Err(rustls::Error::InvalidCertificate(error)) => error,
            other => panic!("expected a certificate error, got {other:?}"),
        }
    }

    #[test]
    fn a_self_signed_ca_serving_certificate_verifies_as_its_own_ca_data() {
        let key = KeyPair::generate().unwrap();
        let mut params = serving(&["kube.example", "127.0.0.1"]);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let certificate = params.self_signed(&key).unwrap();
        let verifier = verifier(&[&certificate]);
        // webpki alone refuses a CA certificate as an end entity.
        assert!(verifier.anchors[0]
            .verifier
            .verify_server_cert(
                certificate.der(),
                &[],
                &name("kube.example"),
                &[],
                UnixTime::now()
            )
            .is_err());
        verify(&verifier, &certificate, "kube.example").unwrap();
        verify(&verifier, &certificate, "127.0.0.1").unwrap();
        assert!(matches!(
            refusal(verify(&verifier, &certificate, "other.example")),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
        ));
    }

    #[test]
    fn a_leaf_given_as_ca_data_verifies_for_its_names_its_period_and_server_use_only() {
        let unknown_ca = ca("unknown CA");
        let leaf = signed(serving(&["kube.example"]), &unknown_ca);
        verify(&verifier(&[&leaf]), &leaf, "kube.example").unwrap();
        assert!(matches!(
            refusal(verify(&verifier(&[&leaf]), &leaf, "10.0.0.1")),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
        ));

        let old = signed(expired(serving(&["kube.example"])), &unknown_ca);
        assert!(matches!(
            refusal(verify(&verifier(&[&old]), &old, "kube.example")),
            CertificateError::ExpiredContext { .. }
        ));

        let mut client_only = serving(&["kube.example"]);
        client_only.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_only = signed(client_only, &unknown_ca);
        assert_eq!(
            refusal(verify(
                &verifier(&[&client_only]),
                &client_only,
                "kube.example"
            )),
            CertificateError::InvalidPurpose
        );

        let mut no_usage = serving(&["kube.example"]);
        no_usage.extended_key_usages = vec![];
        let no_usage = signed(no_usage, &unknown_ca);
        verify(&verifier(&[&no_usage]), &no_usage, "kube.example").unwrap();

        // Only that very certificate: another one of the same CA, for the
        // same name, is not trusted.
        let sibling = signed(serving(&["kube.example"]), &unknown_ca);
        assert!(verify(&verifier(&[&leaf]), &sibling, "kube.example").is_err());
    }

    #[test]
    fn chains_to_a_ca_data_issuer_verify_as_before_and_nothing_else_does() {
        let issuer = ca("cluster CA");
        let verifier = verifier(&[&issuer.0]);
        let leaf = signed(serving(&["kube.example"]), &issuer);
        verify(&verifier, &leaf, "kube.example").unwrap();
        assert!(verify(&verifier, &leaf, "other.example").is_err());
        let old = signed(expired(serving(&["kube.example"])), &issuer);
        assert!(verify(&verifier, &old, "kube.example").is_err());
        let stranger = signed(serving(&["kube.example"]), &ca("stranger CA"));
        assert_eq!(
            refusal(verify(&verifier, &stranger, "kube.example")),
            CertificateError::UnknownIssuer
        );
    }

    #[test]
    fn a_leaf_given_as_ca_data_signs_nothing() {
        // A server certificate made with the leaf's key and subject: Go
        // refuses it ("parent certificate cannot sign this kind of
        // certificate"), since the leaf is not a CA.
        let unknown_ca = ca("unknown CA");
        let leaf_key = KeyPair::generate().unwrap();
        let mut leaf_params = serving(&["kube.example"]);
        leaf_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "leaf");
        let leaf = leaf_params
            .signed_by(&leaf_key, &unknown_ca.0, &unknown_ca.1)
            .unwrap();
        let mut forged_params = serving(&["kube.example"]);
        forged_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "forged");
        let forged = forged_params
            .signed_by(&KeyPair::generate().unwrap(), &leaf, &leaf_key)
            .unwrap();
        let verifier = verifier(&[&leaf]);
        assert!(verifier.anchors.is_empty(), "a leaf is no trust anchor");
        verify(&verifier, &leaf, "kube.example").unwrap();
        assert!(verify(&verifier, &forged, "kube.example").is_err());
    }

    #[test]
    fn a_ca_signs_only_within_its_key_usage_and_path_length() {
        // CA:TRUE but a key usage without keyCertSign (a common self-signed
        // serving certificate): Go will not let it sign.
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["kube.example".to_owned()]).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        let no_sign = (params.self_signed(&key).unwrap(), key);
        let minted = signed(serving(&["other.example"]), &no_sign);
        let verifier_no_sign = verifier(&[&no_sign.0]);
        assert!(verifier_no_sign.anchors.is_empty());
        assert!(verify(&verifier_no_sign, &minted, "other.example").is_err());
        verify(&verifier_no_sign, &no_sign.0, "kube.example").unwrap();

        // pathlen:0 allows no intermediate below the root.
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        let root = (params.self_signed(&key).unwrap(), key);
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let intermediate = (params.signed_by(&key, &root.0, &root.1).unwrap(), key);
        let leaf = signed(serving(&["kube.example"]), &intermediate);
        let verifier = verifier(&[&root.0]);
        let through_intermediate = verifier.verify_server_cert(
            leaf.der(),
            &[intermediate.0.der().clone()],
            &name("kube.example"),
            &[],
            UnixTime::now(),
        );
        assert!(through_intermediate.is_err());
        verify(
            &verifier,
            &signed(serving(&["kube.example"]), &root),
            "kube.example",
        )
        .unwrap();
    }

    #[test]
    fn an_expired_ca_in_a_bundle_vouches_for_nothing() {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let old_ca = (expired(params).self_signed(&key).unwrap(), key);
        let current_ca = ca("current CA");
        let under_old = signed(serving(&["kube.example"]), &old_ca);
        let under_current = signed(serving(&["kube.example"]), &current_ca);
        let verifier = verifier(&[&old_ca.0, &current_ca.0]);
        verify(&verifier, &under_current, "kube.example").unwrap();
        assert!(verify(&verifier, &under_old, "kube.example").is_err());
    }

    #[test]
    fn without_any_trust_anchor_only_exact_matches_verify() {
        let unknown_ca = ca("unknown CA");
        let leaf = signed(serving(&["kube.example"]), &unknown_ca);
        let verifier = CaDataVerifier {
            anchors: Vec::new(),
            exact: vec![leaf.der().clone()],
            provider: provider(),
        };
        verify(&verifier, &leaf, "kube.example").unwrap();
        let sibling = signed(serving(&["kube.example"]), &unknown_ca);
        assert_eq!(
            refusal(verify(&verifier, &sibling, "kube.example")),
            CertificateError::UnknownIssuer
        );
    }

    #[test]
    fn ca_data_without_a_certificate_valid_now_is_refused() {
        let now = UnixTime::now();
        let issuer = ca("cluster CA");
        let old = expired(CertificateParams::new(Vec::<String>::new()).unwrap())
            .self_signed(&KeyPair::generate().unwrap())
            .unwrap();
        let mut future = CertificateParams::new(Vec::<String>::new()).unwrap();
        future.not_before = rcgen::date_time_ymd(2999, 1, 1);
        future.not_after = rcgen::date_time_ymd(3000, 1, 1);
        let future = future.self_signed(&KeyPair::generate().unwrap()).unwrap();

        check_ca_certificates(&[issuer.0.der().clone()], now).unwrap();
        // A bundle keeping a retired CA beside the current one is fine.
        check_ca_certificates(&[old.der().clone(), issuer.0.der().clone()], now).unwrap();

        let error = check_ca_certificates(&[old.der().clone()], now)
            .unwrap_err()
            .to_string();
        assert_eq!(error, "the certificate expired on 2020-01-01T00:00:00Z");
        let error = check_ca_certificates(&[future.der().clone()], now)
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "the certificate is not valid before 2999-01-01T00:00:00Z"
        );
        let error = check_ca_certificates(&[old.der().clone(), future.der().clone()], now)
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("no certificate is valid now"), "{error}");
        let error = check_ca_certificates(&[CertificateDer::from(b"not der".to_vec())], now)
            .unwrap_err()
            .to_string();
        assert!(error.contains("not a usable X.509 certificate"), "{error}");
    }
}
