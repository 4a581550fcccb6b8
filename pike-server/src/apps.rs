//! The apps a gateway serves: ids, HTTP API keys, token secrets and
//! businesses, from `pike.toml` or the dev app in the data dir.

use std::collections::HashMap;

use ring::digest::{SHA256, digest};

use crate::config::{App, Biz, Config};
use crate::data_dir::DevApp;

/// The apps, indexed for the HTTP API and the authenticator.
#[derive(Clone, Debug, Default)]
pub struct AppDirectory {
    apps: HashMap<String, App>,
}

impl AppDirectory {
    /// The apps of `config`, or the dev app when the config lists none.
    /// [`Config::validate`] refuses two apps with one API key; should a
    /// config skip it, such a key authenticates neither app.
    pub fn from_config(config: &Config, dev: Option<&DevApp>) -> Self {
        let mut apps: Vec<App> = config.apps.clone();
        if apps.is_empty()
            && let Some(dev) = dev
        {
            apps.push(App {
                id: dev.app.clone(),
                api_key: dev.api_key.clone(),
                token_secret: dev.token_secret.clone(),
                biz: Vec::new(),
                require_device_claim: false,
                // The dev app is for trying the gateway on loopback: any
                // web page may open a device WebSocket to it.
                allowed_origins: vec!["*".to_owned()],
            });
        }
        Self {
            apps: apps.into_iter().map(|a| (a.id.clone(), a)).collect(),
        }
    }

    /// The app whose API key is `key` (none when several apps have it).
    /// Keys are compared by their SHA-256 digests, so comparison time says
    /// nothing useful about a key.
    pub fn app_for_api_key(&self, key: &str) -> Option<&App> {
        let candidate = digest(&SHA256, key.as_bytes());
        let mut matching = self
            .apps
            .values()
            .filter(|app| digest(&SHA256, app.api_key.as_bytes()).as_ref() == candidate.as_ref());
        let app = matching.next()?;
        matching.next().is_none().then_some(app)
    }

    /// The app `id`.
    pub fn app(&self, id: &str) -> Option<&App> {
        self.apps.get(id)
    }

    /// The business `biz` of app `app`, if configured.
    pub fn biz(&self, app: &str, biz: &str) -> Option<&Biz> {
        self.apps.get(app)?.biz.iter().find(|b| b.id == biz)
    }

    /// The ids of the apps whose `allowed_origins` let a page of `origin`
    /// (a request's `Origin` header) open a device WebSocket.
    pub fn apps_allowing_origin<'a>(&'a self, origin: &'a str) -> impl Iterator<Item = &'a str> {
        self.apps
            .values()
            .filter(move |app| crate::origin::origin_allowed(&app.allowed_origins, origin))
            .map(|app| app.id.as_str())
    }

    /// How many apps there are.
    pub fn len(&self) -> usize {
        self.apps.len()
    }

    /// Whether there is no app.
    pub fn is_empty(&self) -> bool {
        self.apps.is_empty()
    }

    /// Every app id.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.apps.keys().map(String::as_str)
    }

    /// Every app.
    pub fn iter(&self) -> impl Iterator<Item = &App> {
        self.apps.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_app_stands_in_when_none_is_configured() {
        let dev = DevApp {
            app: "demo".into(),
            api_key: "pk_0123456789abcdef".into(),
            token_secret: "s".repeat(32),
        };
        let dir = AppDirectory::from_config(&Config::default(), Some(&dev));
        assert_eq!(
            dir.app_for_api_key("pk_0123456789abcdef")
                .map(|a| a.id.as_str()),
            Some("demo")
        );
        assert!(dir.app_for_api_key("pk_0123456789abcdeX").is_none());
        assert!(dir.app_for_api_key("").is_none());
        assert_eq!(dir.ids().collect::<Vec<_>>(), ["demo"]);
    }

    #[test]
    fn a_key_two_apps_share_authenticates_neither() {
        let app = |id: &str, key: &str| App {
            id: id.into(),
            api_key: key.into(),
            token_secret: "s".repeat(32),
            biz: Vec::new(),
            require_device_claim: false,
            allowed_origins: Vec::new(),
        };
        // A config that skipped validation.
        let config = Config {
            apps: vec![
                app("shop", "pk_0123456789abcdef"),
                app("chat", "pk_0123456789abcdef"),
                app("news", "pk_fedcba9876543210"),
            ],
            ..Config::default()
        };
        assert!(config.validate().is_err());
        let dir = AppDirectory::from_config(&config, None);
        for _ in 0..8 {
            assert!(dir.app_for_api_key("pk_0123456789abcdef").is_none());
        }
        assert_eq!(
            dir.app_for_api_key("pk_fedcba9876543210")
                .map(|a| a.id.as_str()),
            Some("news")
        );
    }
}
