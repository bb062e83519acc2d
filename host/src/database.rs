//! A PostgreSQL database as the config names it (`state`): a URL checked
//! once, holding no password, and shown without secrets wherever it is
//! named.

use std::time::Duration;

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection's URL with what may be shown of it: never a password.
#[derive(Clone)]
pub struct Database {
    config: postgres::Config,
    shown: String,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl Database {
    /// A `postgres://user@host:port/database` URL. A password in it is
    /// refused (it would be a secret in a config file): it comes from the
    /// `PGPASSWORD` environment variable, as for libpq's tools.
    pub fn parse(url: &str) -> Result<Database, String> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err("must be a postgres:// URL".into());
        }
        let mut config: postgres::Config = url
            .parse()
            .map_err(|err| format!("is not a PostgreSQL URL: {err}"))?;
        if config.get_password().is_some() {
            return Err(
                "holds a password: leave it out of the config and set PGPASSWORD for the host"
                    .into(),
            );
        }
        if config.get_user().is_none() {
            return Err("names no user (postgres://USER@HOST/DATABASE)".into());
        }
        if config.get_dbname().is_none() {
            return Err("names no database (postgres://USER@HOST/DATABASE)".into());
        }
        let hosts: Vec<String> = config
            .get_hosts()
            .iter()
            .map(|host| match host {
                postgres::config::Host::Tcp(name) => name.clone(),
                postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
        let shown = format!(
            "postgres://{}@{}{}/{}",
            config.get_user().unwrap_or_default(),
            hosts.join(","),
            if ports.is_empty() {
                String::new()
            } else {
                format!(":{}", ports.join(","))
            },
            config.get_dbname().unwrap_or_default()
        );
        config.connect_timeout(CONNECT_TIMEOUT);
        config.keepalives(true);
        config.application_name("wasmonkey");
        Ok(Database { config, shown })
    }

    /// The URL, without secrets.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// The connection settings (the password is added from the
    /// environment when connecting).
    pub(crate) fn config(&self) -> &postgres::Config {
        &self.config
    }
}
