//! The control plane's own PKI: one CA, the API server's serving certificate, client
//! certificates, and the service-account signing key. Everything is written as PEM files into
//! the control plane's directory, where the binaries read them.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

use super::Error;

/// A certificate and its private key, as PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The certificate.
    pub cert: PathBuf,
    /// The private key (PKCS#8).
    pub key: PathBuf,
}

/// The CA and what it signed for one control plane.
pub struct Pki {
    dir: PathBuf,
    ca: CertifiedIssuer<'static, KeyPair>,
    /// The CA certificate (every client trusts it; the API server checks client certs with it).
    pub ca_cert: PathBuf,
    /// The API server's serving certificate, for `127.0.0.1` and `localhost`.
    pub apiserver: CertFiles,
    /// A client certificate in group `system:masters` (RBAC's superuser group).
    pub admin: CertFiles,
    /// The key pair that signs service-account tokens (private and public halves).
    pub service_account: CertFiles,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn pki_error(what: &str) -> impl FnOnce(rcgen::Error) -> Error + '_ {
    move |source| Error::Pki(format!("{what}: {source}"))
}

impl Pki {
    /// Generates a fresh CA and the certificates a control plane needs into `dir`.
    pub fn generate(dir: &Path) -> Result<Self, Error> {
        std::fs::create_dir_all(dir).map_err(|source| Error::io(dir, source))?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(pki_error("CA"))?;
        params
            .distinguished_name
            .push(DnType::CommonName, "lameduck-test-ca");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().map_err(pki_error("CA key"))?;
        let ca = CertifiedIssuer::self_signed(params, ca_key).map_err(pki_error("CA"))?;
        let ca_cert = write(dir, "ca.crt", &ca.pem())?;

        let mut pki = Self {
            dir: dir.to_owned(),
            ca,
            ca_cert,
            apiserver: CertFiles {
                cert: PathBuf::new(),
                key: PathBuf::new(),
            },
            admin: CertFiles {
                cert: PathBuf::new(),
                key: PathBuf::new(),
            },
            service_account: CertFiles {
                cert: PathBuf::new(),
                key: PathBuf::new(),
            },
        };
        pki.apiserver = pki.server_cert(
            "apiserver",
            &["localhost".into(), "kubernetes.default.svc".into()],
            &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
        )?;
        pki.admin = pki.client_cert("admin", "lameduck-test-admin", &["system:masters"])?;
        let sa_key = KeyPair::generate().map_err(pki_error("service-account key"))?;
        pki.service_account = CertFiles {
            cert: write(dir, "sa.pub", &sa_key.public_key_pem())?,
            key: write(dir, "sa.key", &sa_key.serialize_pem())?,
        };
        Ok(pki)
    }

    /// The CA certificate as PEM (for a webhook's `caBundle`, base64-encoded by the caller).
    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// A serving certificate signed by the CA, for the given DNS names and IP addresses
    /// (e.g. an admission webhook on `127.0.0.1`), written as `<name>.crt` and `<name>.key`.
    pub fn server_cert(
        &self,
        name: &str,
        dns: &[String],
        ips: &[IpAddr],
    ) -> Result<CertFiles, Error> {
        let mut params = CertificateParams::new(dns.to_vec()).map_err(pki_error(name))?;
        params.distinguished_name.push(DnType::CommonName, name);
        params
            .subject_alt_names
            .extend(ips.iter().copied().map(SanType::IpAddress));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        self.sign(name, params)
    }

    /// A client certificate for user `user` in `groups` (the API server takes the user from
    /// the common name and groups from the organization).
    pub fn client_cert(&self, name: &str, user: &str, groups: &[&str]) -> Result<CertFiles, Error> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(pki_error(name))?;
        params.distinguished_name.push(DnType::CommonName, user);
        for group in groups {
            params
                .distinguished_name
                .push(DnType::OrganizationName, *group);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        self.sign(name, params)
    }

    fn sign(&self, name: &str, params: CertificateParams) -> Result<CertFiles, Error> {
        let key = KeyPair::generate().map_err(pki_error(name))?;
        let cert = params.signed_by(&key, &self.ca).map_err(pki_error(name))?;
        Ok(CertFiles {
            cert: write(&self.dir, &format!("{name}.crt"), &cert.pem())?,
            key: write(&self.dir, &format!("{name}.key"), &key.serialize_pem())?,
        })
    }
}

fn write(dir: &Path, name: &str, pem: &str) -> Result<PathBuf, Error> {
    let path = dir.join(name);
    std::fs::write(&path, pem).map_err(|source| Error::io(&path, source))?;
    Ok(path)
}
