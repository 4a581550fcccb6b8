//! The data directory (`./pike-data` by default): the store, the dev TLS
//! identity, the dev app's credentials and the CLI's device id. The gateway
//! and the `pike` CLI both find it, which is how `pike listen` and `pike
//! push` work with no flags next to a zero-config gateway.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

/// File holding the dev app's credentials.
pub const DEV_APP_FILE: &str = "dev-app.json";
/// File holding the CLI's stable device id.
pub const CLI_DEVICE_FILE: &str = "cli-device-id";
/// The store file.
pub const STORE_FILE: &str = "store.redb";
/// The id of the app the zero-config gateway serves.
pub const DEV_APP_ID: &str = "demo";

/// A problem with the data directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataDirError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A file exists but does not hold what it should.
    #[error("{path} is corrupt: {message}; remove it to regenerate")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The operating system's random source failed.
    #[error("the system random source failed")]
    Random,
}

/// Credentials of the dev app, generated on first start.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct DevApp {
    /// App id (`demo`).
    pub app: String,
    /// HTTP API bearer key.
    pub api_key: String,
    /// HS256 secret for client credentials.
    pub token_secret: String,
}

/// A data directory.
#[derive(Clone, Debug)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// Opens `root`, creating it (mode 0700 on unix) when missing.
    pub fn create(root: impl Into<PathBuf>) -> Result<Self, DataDirError> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(|source| DataDirError::Io {
            path: root.clone(),
            source,
        })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let _ = std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700));
        }
        Ok(Self { root })
    }

    /// Refers to `root` without creating anything (for the CLI).
    pub fn existing(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Path of the store file.
    pub fn store_path(&self) -> PathBuf {
        self.root.join(STORE_FILE)
    }

    /// The dev app's credentials, generated and saved on first use.
    pub fn dev_app(&self) -> Result<DevApp, DataDirError> {
        if let Some(app) = self.read_dev_app()? {
            return Ok(app);
        }
        let app = DevApp {
            app: DEV_APP_ID.to_owned(),
            api_key: format!("pk_{}", random_hex(24)?),
            token_secret: random_hex(32)?,
        };
        let json = serde_json::to_vec_pretty(&app).map_err(|e| DataDirError::Corrupt {
            path: self.root.join(DEV_APP_FILE),
            message: e.to_string(),
        })?;
        self.write_private(DEV_APP_FILE, &json)?;
        Ok(app)
    }

    /// The dev app's credentials if the gateway has generated them.
    pub fn read_dev_app(&self) -> Result<Option<DevApp>, DataDirError> {
        let path = self.root.join(DEV_APP_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(DataDirError::Io { path, source }),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| DataDirError::Corrupt {
                path,
                message: e.to_string(),
            })
    }

    /// A stable device id for the CLI, like an installed app's: generated
    /// once, then reused.
    pub fn cli_device_id(&self) -> Result<String, DataDirError> {
        let path = self.root.join(CLI_DEVICE_FILE);
        match std::fs::read_to_string(&path) {
            Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_owned()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(DataDirError::Io { path, source }),
        }
        std::fs::create_dir_all(&self.root).map_err(|source| DataDirError::Io {
            path: self.root.clone(),
            source,
        })?;
        let id = format!("cli-{}", random_hex(8)?);
        self.write_private(CLI_DEVICE_FILE, id.as_bytes())?;
        Ok(id)
    }

    /// Writes `name` atomically (temp file, fsync, rename), mode 0600.
    pub(crate) fn write_private(&self, name: &str, bytes: &[u8]) -> Result<(), DataDirError> {
        let path = self.root.join(name);
        let tmp = self.root.join(format!(".{name}.tmp"));
        let io = |source| DataDirError::Io {
            path: path.clone(),
            source,
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp).map_err(io)?;
        file.write_all(bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        Ok(())
    }
}

/// `n` random bytes as lowercase hex.
fn random_hex(n: usize) -> Result<String, DataDirError> {
    let mut bytes = vec![0u8; n];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| DataDirError::Random)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_app_is_generated_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::create(dir.path().join("pike-data")).unwrap();
        assert_eq!(data.read_dev_app().unwrap(), None);
        let first = data.dev_app().unwrap();
        assert_eq!(first.app, "demo");
        assert_eq!(first.token_secret.len(), 64);
        assert!(first.api_key.starts_with("pk_"));
        let again = DataDir::existing(data.root()).dev_app().unwrap();
        assert_eq!(first, again);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(data.root().join(DEV_APP_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn cli_device_id_is_stable() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::existing(dir.path().join("d"));
        let id = data.cli_device_id().unwrap();
        assert!(id.starts_with("cli-") && id.len() == 20, "{id}");
        assert_eq!(data.cli_device_id().unwrap(), id);
    }

    #[test]
    fn corrupt_dev_app_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(DEV_APP_FILE), b"{not json").unwrap();
        let err = DataDir::existing(dir.path()).dev_app().unwrap_err();
        assert!(matches!(err, DataDirError::Corrupt { .. }));
        assert!(err.to_string().contains("remove it to regenerate"), "{err}");
    }
}
