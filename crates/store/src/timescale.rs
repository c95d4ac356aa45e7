//! Connecting to PostgreSQL/TimescaleDB, shared by consumer-high (writes)
//! and the aggregator (reads). The Go version's variable names keep working.

use std::time::Duration;

use clap::Args;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use sqlx::PgPool;

#[derive(Debug, Clone, Args)]
pub struct PostgresArgs {
    /// Connection URL (postgres://user:password@host:port/db?sslmode=…).
    /// Overrides the POSTGRES_HOST/PORT/USER/PASSWORD/DB/USE_SSL variables.
    #[arg(long, env = "POSTGRES_URL", hide_env_values = true)]
    pub postgres_url: Option<String>,

    #[arg(long, env = "POSTGRES_HOST", default_value = "127.0.0.1")]
    pub postgres_host: String,

    #[arg(long, env = "POSTGRES_PORT", default_value_t = 5432)]
    pub postgres_port: u16,

    #[arg(long, env = "POSTGRES_USER", default_value = "postgres")]
    pub postgres_user: String,

    #[arg(
        long,
        env = "POSTGRES_PASSWORD",
        default_value = "",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub postgres_password: String,

    #[arg(long, env = "POSTGRES_DB", default_value = "streamproc")]
    pub postgres_db: String,

    /// Require TLS (certificates checked against the web PKI roots).
    #[arg(long, env = "POSTGRES_USE_SSL")]
    pub postgres_use_ssl: bool,

    /// Most connections in the pool.
    #[arg(long, env = "POSTGRES_POOL_SIZE", default_value_t = 4)]
    pub postgres_pool_size: u32,
}

impl PostgresArgs {
    pub fn connect_options(&self) -> anyhow::Result<PgConnectOptions> {
        if let Some(url) = &self.postgres_url {
            return url
                .parse()
                .map_err(|e| anyhow::anyhow!("POSTGRES_URL is not a valid connection URL: {e}"));
        }
        let mut options = PgConnectOptions::new()
            .host(&self.postgres_host)
            .port(self.postgres_port)
            .username(&self.postgres_user)
            .database(&self.postgres_db)
            .ssl_mode(if self.postgres_use_ssl {
                PgSslMode::Require
            } else {
                PgSslMode::Disable
            })
            .application_name("streamproc");
        if !self.postgres_password.is_empty() {
            options = options.password(&self.postgres_password);
        }
        Ok(options)
    }

    /// A pool that connects on first use, so a service starts (and answers
    /// its probes) while PostgreSQL is still down.
    pub fn lazy_pool(&self) -> anyhow::Result<PgPool> {
        Ok(PgPoolOptions::new()
            .max_connections(self.postgres_pool_size.max(1))
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy_with(self.connect_options()?))
    }

    /// Where the pool points, without the password, for logs.
    pub fn describe(&self) -> String {
        match &self.postgres_url {
            Some(_) => "POSTGRES_URL".to_owned(),
            None => format!(
                "postgres://{}@{}:{}/{}",
                self.postgres_user, self.postgres_host, self.postgres_port, self.postgres_db
            ),
        }
    }
}
