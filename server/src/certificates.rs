//! What Go's crypto/x509 reads of a certificate, for the two places that
//! judge `caData`: registration (is it usable at all?) and the TLS verifier
//! (may it vouch for this server now?).

use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::RootCertStore;
use std::time::Duration;

/// Whether the TLS verifier can use these `caData` certificates at `now`,
/// or why not (for registration): every certificate must be a trust anchor
/// webpki takes or an end-entity certificate it parses (for an exact match),
/// and at least one must be within its validity period, since an expired
/// (or not yet valid) issuer or exact match is refused at every handshake.
pub fn check_ca_certificates(
    certificates: &[CertificateDer<'_>],
    now: UnixTime,
) -> Result<(), CaCertificatesError> {
    let numbered = |index: usize| {
        if certificates.len() == 1 {
            "the certificate".to_owned()
        } else {
            format!("certificate {} of {}", index + 1, certificates.len())
        }
    };
    let mut periods = Vec::with_capacity(certificates.len());
    for (index, certificate) in certificates.iter().enumerate() {
        let anchor = RootCertStore::empty().add(certificate.clone().into_owned());
        if let (Err(error), Err(_)) = (anchor, ParsedCertificate::try_from(certificate)) {
            return Err(CaCertificatesError::Unusable {
                which: numbered(index),
                reason: error,
            });
        }
        let period = validity(certificate).ok_or_else(|| CaCertificatesError::Invalid {
            which: numbered(index),
        })?;
        periods.push(period);
    }
    let current = |(not_before, not_after): &(UnixTime, UnixTime)| {
        not_before.as_secs() <= now.as_secs() && now.as_secs() <= not_after.as_secs()
    };
    if periods.iter().any(current) {
        return Ok(());
    }
    let reasons: Vec<String> = periods
        .iter()
        .enumerate()
        .map(|(index, (not_before, not_after))| {
            if now.as_secs() > not_after.as_secs() {
                format!("{} expired on {}", numbered(index), timestamp(*not_after))
            } else {
                format!(
                    "{} is not valid before {}",
                    numbered(index),
                    timestamp(*not_before)
                )
            }
        })
        .collect();
    let reasons = reasons.join("; ");
    Err(CaCertificatesError::NotValidNow(
        if certificates.len() == 1 {
            reasons
        } else {
            format!("no certificate is valid now: {reasons}")
        },
    ))
}

/// Why `caData` cannot be used (see [`check_ca_certificates`]).
#[derive(Debug, thiserror::Error)]
pub enum CaCertificatesError {
    #[error("{which} is not a usable X.509 certificate: {reason}")]
    Unusable {
        which: String,
        reason: rustls::Error,
    },
    #[error("{which} is not a valid X.509 certificate")]
    Invalid { which: String },
    /// Every certificate is outside its validity period; says which and when.
    #[error("{0}")]
    NotValidNow(String),
}

fn timestamp(time: UnixTime) -> String {
    i64::try_from(time.as_secs())
        .ok()
        .and_then(|seconds| chrono::DateTime::from_timestamp(seconds, 0))
        .map_or_else(
            || format!("{} seconds after 1970", time.as_secs()),
            |time| time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        )
}

/// Whether Go would let the certificate sign another (`CheckSignatureFrom`):
/// a version 3 certificate must carry basic constraints with CA set, and a
/// key usage extension, where there is one, must allow certificate signing;
/// older versions may sign. None when it does not parse.
pub fn may_sign(certificate: &CertificateDer<'_>) -> Option<bool> {
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate).ok()?;
    if parsed.version() != x509_parser::x509::X509Version::V3 {
        return Some(true);
    }
    let ca = parsed
        .basic_constraints()
        .ok()
        .flatten()
        .is_some_and(|constraints| constraints.value.ca);
    let signs_certificates = match parsed.key_usage() {
        Ok(Some(usage)) => usage.value.key_cert_sign(),
        Ok(None) => true,
        Err(_) => false,
    };
    Some(ca && signs_certificates)
}

/// The anchor's path length constraint: how many intermediates may stand
/// between it and the server's certificate (None: no limit).
pub fn path_length(certificate: &CertificateDer<'_>) -> Option<u32> {
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate).ok()?;
    parsed
        .basic_constraints()
        .ok()
        .flatten()
        .and_then(|constraints| constraints.value.path_len_constraint)
}

/// A certificate's notBefore and notAfter (times before 1970 as 1970), or
/// None when it does not parse.
pub fn validity(certificate: &CertificateDer<'_>) -> Option<(UnixTime, UnixTime)> {
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate).ok()?;
    let time = |seconds: i64| {
        UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(seconds).unwrap_or(0)))
    };
    let validity = parsed.validity();
    Some((
        time(validity.not_before.timestamp()),
        time(validity.not_after.timestamp()),
    ))
}

/// Whether the extended key usage allows serverAuth as Go reads it: no
/// extension (or an empty one) allows every purpose, otherwise it must name
/// serverAuth or anyExtendedKeyUsage. None when it does not parse.
pub fn allows_server_auth(certificate: &CertificateDer<'_>) -> Option<bool> {
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate).ok()?;
    let Some(usage) = parsed.extended_key_usage().ok()? else {
        return Some(true);
    };
    let usage = usage.value;
    let names_none = !(usage.client_auth
        || usage.code_signing
        || usage.email_protection
        || usage.time_stamping
        || usage.ocsp_signing)
        && usage.other.is_empty();
    Some(usage.any || usage.server_auth || names_none)
}
