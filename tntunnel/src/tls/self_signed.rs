//! The development certificate kept in a data directory.
//!
//! Layout: `<dir>/tls/cert.pem` and `<dir>/tls/key.pem`. The certificate is the commit
//! point: files are written to a temporary name and renamed, key first, certificate last,
//! so an existing `cert.pem` always has its key next to it, and an interrupted first start
//! leaves at most an orphan key that the next start overwrites.

use std::io;
use std::path::{Path, PathBuf};

use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::{TlsConfigError, parse_certificates, parse_private_key, read_file};

/// Loads the certificate and key from `dir/tls/`, generating them first if needed.
pub(super) async fn load_or_generate(
    dir: &Path,
    subject_alt_names: Vec<String>,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsConfigError> {
    let tls_dir = dir.join("tls");
    let cert_path = tls_dir.join("cert.pem");
    let key_path = tls_dir.join("key.pem");

    if exists(&cert_path).await? {
        if !exists(&key_path).await? {
            return Err(TlsConfigError::SelfSignedKeyMissing {
                cert_path,
                key_path,
            });
        }
        warn_if_key_readable_by_others(&key_path).await;
        let certs = parse_certificates(
            &read_file(&cert_path).await?,
            &cert_path.display().to_string(),
        )?;
        let key = parse_private_key(
            &read_file(&key_path).await?,
            &key_path.display().to_string(),
        )?;
        tracing::debug!(tls.cert = %cert_path.display(), "reusing self-signed TLS certificate");
        return Ok((certs, key));
    }

    let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::new(subject_alt_names)?;
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        "Pike development gateway (self-signed)",
    );
    let cert = params.self_signed(&key_pair)?;

    create_private_dir(&tls_dir).await?;
    write_atomically(&key_path, key_pair.serialize_pem().as_bytes(), true).await?;
    write_atomically(&cert_path, cert.pem().as_bytes(), false).await?;
    tracing::info!(
        tls.cert = %cert_path.display(),
        tls.key = %key_path.display(),
        "generated a self-signed TLS certificate"
    );

    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));
    Ok((vec![cert.der().clone()], key))
}

async fn exists(path: &Path) -> Result<bool, TlsConfigError> {
    tokio::fs::try_exists(path)
        .await
        .map_err(|source| TlsConfigError::Read {
            path: path.to_owned(),
            source,
        })
}

/// Creates `dir` and its parents; `dir` itself is `0700` on Unix when newly created.
async fn create_private_dir(dir: &Path) -> Result<(), TlsConfigError> {
    let mut builder = tokio::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    builder.mode(0o700);
    builder
        .create(dir)
        .await
        .map_err(|source| TlsConfigError::Write {
            path: dir.to_owned(),
            source,
        })
}

/// Writes `contents` to `path.tmp`, syncs it and renames it over `path`. With `private`, the
/// file is created with mode `0600` on Unix (before any byte is written).
async fn write_atomically(
    path: &Path,
    contents: &[u8],
    private: bool,
) -> Result<(), TlsConfigError> {
    let tmp = tmp_path(path);
    let write_error = |source: io::Error| TlsConfigError::Write {
        path: path.to_owned(),
        source,
    };
    // A stale temporary file from an interrupted run may have other permissions.
    match tokio::fs::remove_file(&tmp).await {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(write_error(error)),
    }
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(if private { 0o600 } else { 0o644 });
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(&tmp).await.map_err(write_error)?;
    tokio::io::AsyncWriteExt::write_all(&mut file, contents)
        .await
        .map_err(write_error)?;
    file.sync_all().await.map_err(write_error)?;
    drop(file);
    tokio::fs::rename(&tmp, path).await.map_err(write_error)
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Logs a warning if the private key can be read by group or others.
async fn warn_if_key_readable_by_others(key_path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;

        if let Ok(metadata) = tokio::fs::metadata(key_path).await {
            let mode = metadata.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(
                    tls.key = %key_path.display(),
                    mode = format_args!("{:o}", mode & 0o777),
                    "TLS private key is accessible by other users; chmod 600 it"
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = key_path;
}
