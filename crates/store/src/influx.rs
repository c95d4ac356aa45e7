//! A small InfluxDB HTTP client shared by consumer-low (writes) and the
//! aggregator (reads). Writes use the v1 `/write` endpoint or the v2
//! `/api/v2/write` endpoint; reads use InfluxQL at `/query`, which InfluxDB
//! 1.x, 2.x (compatibility API) and 3.x all serve.

use std::time::Duration;

use clap::{Args, ValueEnum};
use reqwest::{RequestBuilder, StatusCode};

/// The measurement consumer-low writes and the aggregator reads: the Go
/// version's name, with the field `amount`.
pub const MEASUREMENT: &str = streamproc_event::names::EVENT_MEASUREMENT;

/// Per-second totals of `event` (fields `count`, `sum`, `min`, `max`),
/// maintained by consumer-low and read by the aggregator.
pub const ROLLUP_MEASUREMENT: &str = streamproc_event::names::EVENT_PER_SECOND_MEASUREMENT;

/// The value rows of an InfluxQL answer's first statement and first series;
/// none when nothing matched.
pub fn rows(answer: &serde_json::Value) -> impl Iterator<Item = &Vec<serde_json::Value>> {
    answer["results"][0]["series"][0]["values"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(serde_json::Value::as_array)
}

/// The answer to statement `index` of a request that sent several (`;`
/// between them), shaped as a whole answer so that [`rows`] reads it.
pub fn statement(answer: &serde_json::Value, index: usize) -> serde_json::Value {
    serde_json::json!({ "results": [answer["results"][index]] })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InfluxApi {
    /// `/write?db=&rp=` with optional user and password (InfluxDB 1.x).
    V1,
    /// `/api/v2/write?org=&bucket=` with a token (InfluxDB 2.x and 3.x).
    V2,
}

#[derive(Debug, Clone, Args)]
pub struct InfluxArgs {
    /// InfluxDB base URL; a bare host name gets http:// and port 8086.
    #[arg(long, env = "INFLUXDB_HOST", default_value = "http://127.0.0.1:8086")]
    pub influxdb_host: String,

    /// Which write API to use.
    #[arg(long, env = "INFLUXDB_API", value_enum, default_value = "v1")]
    pub influxdb_api: InfluxApi,

    /// Database (v1; created when missing).
    #[arg(long, env = "INFLUXDB_DB", default_value = "streamproc")]
    pub influxdb_db: String,

    /// Retention policy (v1); the database's default when unset.
    #[arg(long, env = "INFLUXDB_RP")]
    pub influxdb_rp: Option<String>,

    /// User (v1).
    #[arg(long, env = "INFLUXDB_USER")]
    pub influxdb_user: Option<String>,

    /// Password (v1).
    #[arg(long, env = "INFLUXDB_PASSWORD", hide_env_values = true)]
    pub influxdb_password: Option<String>,

    /// API token (v2; also sent to v1 when set).
    #[arg(long, env = "INFLUXDB_TOKEN", hide_env_values = true)]
    pub influxdb_token: Option<String>,

    /// Organization (v2).
    #[arg(long, env = "INFLUXDB_ORG")]
    pub influxdb_org: Option<String>,

    /// Bucket (v2; must exist).
    #[arg(long, env = "INFLUXDB_BUCKET", default_value = "streamproc")]
    pub influxdb_bucket: String,

    /// Limit for one request to InfluxDB.
    #[arg(long, env = "INFLUXDB_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub influxdb_timeout: Duration,
}

impl InfluxArgs {
    pub fn base_url(&self) -> String {
        let host = self.influxdb_host.trim().trim_end_matches('/');
        if host.contains("://") {
            host.to_owned()
        } else if host
            .rsplit_once(':')
            .is_some_and(|(_, port)| port.parse::<u16>().is_ok())
        {
            format!("http://{host}")
        } else {
            format!("http://{host}:8086")
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InfluxError {
    /// Could not connect, timed out, or the answer broke off: worth retrying.
    #[error("InfluxDB is unavailable")]
    Unreachable(#[source] reqwest::Error),
    /// An answer that is not JSON (a proxy's error page, say): worth
    /// retrying.
    #[error("InfluxDB's answer is not JSON")]
    UnreadableAnswer(#[source] serde_json::Error),
    /// A 5xx: worth retrying.
    #[error("InfluxDB is unavailable ({status}): {body}")]
    Failing { status: StatusCode, body: String },
    /// The database or bucket does not exist.
    #[error("InfluxDB has no database {0:?}")]
    NoDatabase(String),
    /// Credentials were refused.
    #[error("InfluxDB refused the credentials ({status}): {body}")]
    Unauthorized { status: StatusCode, body: String },
    /// The request itself was refused (bad line protocol, type conflict).
    #[error("InfluxDB refused the request ({status}): {body}")]
    Rejected { status: StatusCode, body: String },
}

#[derive(Clone)]
pub struct Influx {
    http: reqwest::Client,
    args: InfluxArgs,
    base: String,
}

impl Influx {
    pub fn new(args: InfluxArgs) -> anyhow::Result<Self> {
        if args.influxdb_api == InfluxApi::V2 {
            anyhow::ensure!(
                args.influxdb_token.is_some() && args.influxdb_org.is_some(),
                "INFLUXDB_API=v2 needs INFLUXDB_TOKEN and INFLUXDB_ORG"
            );
        }
        let http = reqwest::Client::builder()
            .timeout(args.influxdb_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()?;
        let base = args.base_url();
        Ok(Self { http, args, base })
    }

    pub fn describe(&self) -> String {
        match self.args.influxdb_api {
            InfluxApi::V1 => format!("{} database {:?}", self.base, self.args.influxdb_db),
            InfluxApi::V2 => format!("{} bucket {:?}", self.base, self.args.influxdb_bucket),
        }
    }

    fn authorize(&self, request: RequestBuilder) -> RequestBuilder {
        if let Some(token) = &self.args.influxdb_token {
            request.header("Authorization", format!("Token {token}"))
        } else if let Some(user) = &self.args.influxdb_user {
            request.basic_auth(user, self.args.influxdb_password.as_deref())
        } else {
            request
        }
    }

    /// `GET /ping`: InfluxDB answers 204 when it is up.
    pub async fn ping(&self) -> Result<(), InfluxError> {
        let response = self
            .http
            .get(format!("{}/ping", self.base))
            .send()
            .await
            .map_err(InfluxError::Unreachable)?;
        check(response, &self.database()).await.map(drop)
    }

    fn database(&self) -> String {
        match self.args.influxdb_api {
            InfluxApi::V1 => self.args.influxdb_db.clone(),
            InfluxApi::V2 => self.args.influxdb_bucket.clone(),
        }
    }

    /// Creates the v1 database unless it exists (InfluxQL's CREATE DATABASE
    /// is idempotent). v2 buckets are created by their owner, not here.
    pub async fn create_database(&self) -> Result<(), InfluxError> {
        if self.args.influxdb_api == InfluxApi::V2 {
            return Ok(());
        }
        let statement = format!(
            "CREATE DATABASE \"{}\"",
            self.args.influxdb_db.replace('"', "\\\"")
        );
        let request = self
            .http
            .post(format!("{}/query", self.base))
            .form(&[("q", statement)]);
        let response = self
            .authorize(request)
            .send()
            .await
            .map_err(InfluxError::Unreachable)?;
        check(response, &self.database()).await.map(drop)
    }

    /// Writes line protocol with nanosecond timestamps.
    pub async fn write(&self, lines: String) -> Result<(), InfluxError> {
        let request = match self.args.influxdb_api {
            InfluxApi::V1 => {
                let mut query = vec![("db", self.args.influxdb_db.as_str()), ("precision", "ns")];
                if let Some(rp) = &self.args.influxdb_rp {
                    query.push(("rp", rp));
                }
                self.http.post(format!("{}/write", self.base)).query(&query)
            }
            InfluxApi::V2 => self
                .http
                .post(format!("{}/api/v2/write", self.base))
                .query(&[
                    ("org", self.args.influxdb_org.as_deref().unwrap_or_default()),
                    ("bucket", self.args.influxdb_bucket.as_str()),
                    ("precision", "ns"),
                ]),
        };
        let response = self
            .authorize(request.body(lines))
            .send()
            .await
            .map_err(InfluxError::Unreachable)?;
        check(response, &self.database()).await.map(drop)
    }

    /// Runs an InfluxQL query against the database (v1) or the bucket's
    /// compatibility mapping (v2) and returns the JSON answer.
    pub async fn query(&self, influxql: &str) -> Result<serde_json::Value, InfluxError> {
        let request = self.http.post(format!("{}/query", self.base)).form(&[
            ("db", self.database().as_str()),
            ("q", influxql),
            ("epoch", "ms"),
        ]);
        let response = self
            .authorize(request)
            .send()
            .await
            .map_err(InfluxError::Unreachable)?;
        let body = check(response, &self.database()).await?;
        let value: serde_json::Value =
            serde_json::from_str(&body).map_err(InfluxError::UnreadableAnswer)?;
        answer_error(&value, &self.database()).map_or(Ok(value), Err)
    }
}

/// The error an InfluxQL answer carries despite its 200 status: a top-level
/// `error` (the server failed to encode the result, for example a sum that
/// overflowed to infinity), a statement's `error`, or a `partial` result
/// cut short by a row limit. Read as success, each would show a series
/// with events missing.
fn answer_error(answer: &serde_json::Value, database: &str) -> Option<InfluxError> {
    let refused = |body: &str| InfluxError::Rejected {
        status: StatusCode::OK,
        body: body.to_owned(),
    };
    if let Some(error) = answer["error"].as_str() {
        return Some(refused(error));
    }
    let results = answer["results"].as_array()?;
    for result in results {
        if let Some(error) = result["error"].as_str() {
            if error.contains("database not found") {
                return Some(InfluxError::NoDatabase(database.to_owned()));
            }
            return Some(refused(error));
        }
        let partial_series = result["series"]
            .as_array()
            .is_some_and(|series| series.iter().any(|s| s["partial"] == true));
        if result["partial"] == true || partial_series {
            return Some(refused(
                "the answer is partial (a row or series limit of the server cut it short)",
            ));
        }
    }
    None
}

async fn check(response: reqwest::Response, database: &str) -> Result<String, InfluxError> {
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    match status {
        s if s.is_success() => Ok(body),
        StatusCode::NOT_FOUND if body.contains("not found") => {
            Err(InfluxError::NoDatabase(database.to_owned()))
        }
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            Err(InfluxError::Unauthorized { status, body })
        }
        s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
            Err(InfluxError::Failing { status, body })
        }
        _ => Err(InfluxError::Rejected { status, body }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        influx: InfluxArgs,
    }

    #[test]
    fn errors_inside_a_200_answer_are_errors() {
        let error = |answer: serde_json::Value| answer_error(&answer, "db").map(|e| e.to_string());
        let overflowed = error(serde_json::json!({"error": "json: unsupported value: +Inf"}));
        assert!(overflowed.unwrap().contains("+Inf"));
        let statement =
            error(serde_json::json!({"results": [{"statement_id": 0, "error": "bad"}]}));
        assert!(statement.unwrap().contains("bad"));
        let missing = answer_error(
            &serde_json::json!({"results": [{"error": "database not found: db"}]}),
            "db",
        );
        assert!(matches!(missing, Some(InfluxError::NoDatabase(_))));
        let partial = error(serde_json::json!({"results": [{"partial": true, "series": []}]}));
        assert!(partial.unwrap().contains("partial"));
        let cut = error(serde_json::json!({"results": [{"series": [{"partial": true}]}]}));
        assert!(cut.is_some());
        assert!(error(serde_json::json!({"results": [{"statement_id": 0}]})).is_none());
    }

    #[test]
    fn base_urls() {
        let url = |host: &str| {
            Cli::parse_from(["t", "--influxdb-host", host])
                .influx
                .base_url()
        };
        assert_eq!(url("http://db:9999/"), "http://db:9999");
        assert_eq!(url("influxdb"), "http://influxdb:8086");
        assert_eq!(url("influxdb:8087"), "http://influxdb:8087");
    }
}
