//! The route ids `pike send` keeps between runs, like an installed app's
//! saved session: the next run resumes the same route (the same uplink
//! backend, sticky routing), and says so when the gateway moved it.
//!
//! Kept in `<data dir>/cli-routes.json` (mode 0600, written atomically):
//! one entry per app, business and alias, at most [`MAX_ROUTES`], the
//! least recently used dropped first. A file that does not parse is
//! replaced (it holds nothing but these hints).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::data_dir::DataDir;

/// The file in the data dir.
pub(crate) const ROUTES_FILE: &str = "cli-routes.json";

/// Most entries kept.
pub(crate) const MAX_ROUTES: usize = 256;

/// Largest file read, bytes (256 entries of the longest ids fit).
const MAX_FILE_LEN: u64 = 1 << 20;

#[derive(Clone, Debug, Default, Deserialize, Eq, PartialEq, Serialize)]
struct Routes {
    /// Least recently used first.
    routes: Vec<Entry>,
}

#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
struct Entry {
    app: String,
    biz: String,
    alias: String,
    route_id: String,
}

/// The saved routes of one data dir.
#[derive(Debug)]
pub(crate) struct SavedRoutes<'a> {
    data: &'a DataDir,
}

impl<'a> SavedRoutes<'a> {
    /// The routes kept in `data`.
    pub(crate) fn new(data: &'a DataDir) -> Self {
        Self { data }
    }

    fn path(&self) -> PathBuf {
        self.data.root().join(ROUTES_FILE)
    }

    fn read(&self) -> Routes {
        let path = self.path();
        let too_long = std::fs::metadata(&path).is_ok_and(|m| m.len() > MAX_FILE_LEN);
        if too_long {
            return Routes::default();
        }
        std::fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// The route saved for `app`, `biz`, `alias` (empty: none).
    pub(crate) fn get(&self, app: &str, biz: &str, alias: &str) -> String {
        self.read()
            .routes
            .into_iter()
            .find(|e| e.app == app && e.biz == biz && e.alias == alias)
            .map(|e| e.route_id)
            .unwrap_or_default()
    }

    /// Saves `route_id` for `app`, `biz`, `alias` (an empty one is not
    /// saved: the gateway gave none).
    pub(crate) fn put(
        &self,
        app: &str,
        biz: &str,
        alias: &str,
        route_id: &str,
    ) -> Result<(), crate::data_dir::DataDirError> {
        if route_id.is_empty() {
            return Ok(());
        }
        let mut routes = self.read();
        routes
            .routes
            .retain(|e| !(e.app == app && e.biz == biz && e.alias == alias));
        routes.routes.push(Entry {
            app: app.to_owned(),
            biz: biz.to_owned(),
            alias: alias.to_owned(),
            route_id: route_id.to_owned(),
        });
        let excess = routes.routes.len().saturating_sub(MAX_ROUTES);
        routes.routes.drain(..excess);
        let json = serde_json::to_vec_pretty(&routes).unwrap_or_default();
        self.data.write_private(ROUTES_FILE, &json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_survive_and_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::existing(dir.path());
        let routes = SavedRoutes::new(&data);
        assert_eq!(routes.get("demo", "chat", "u1"), "");
        routes.put("demo", "chat", "u1", "r1").unwrap();
        routes.put("demo", "chat", "u2", "r0").unwrap();
        routes.put("demo", "chat", "u1", "r2").unwrap();
        routes.put("demo", "chat", "u3", "").unwrap();
        assert_eq!(routes.get("demo", "chat", "u1"), "r2");
        assert_eq!(routes.get("demo", "chat", "u2"), "r0");
        assert_eq!(routes.get("demo", "chat", "u3"), "");
        assert_eq!(routes.get("other", "chat", "u1"), "");
        for i in 0..MAX_ROUTES {
            routes.put("demo", "chat", &format!("n{i}"), "r0").unwrap();
        }
        assert_eq!(routes.read().routes.len(), MAX_ROUTES);
        assert_eq!(routes.get("demo", "chat", "u1"), "", "the oldest went");
        assert_eq!(routes.get("demo", "chat", "n0"), "r0");
    }

    #[test]
    fn a_corrupt_file_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(ROUTES_FILE), b"{not json").unwrap();
        let data = DataDir::existing(dir.path());
        let routes = SavedRoutes::new(&data);
        assert_eq!(routes.get("demo", "chat", "u1"), "");
        routes.put("demo", "chat", "u1", "r1").unwrap();
        assert_eq!(routes.get("demo", "chat", "u1"), "r1");
    }
}
