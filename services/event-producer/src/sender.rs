//! POSTs batches to event-api and classifies what comes back: sent, worth
//! retrying (connection trouble, 429, 5xx, and 401, which is about the
//! token, not the batch), or rejected for good (other 4xx).

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;
use streamproc_event::Event;
use streamproc_kit::auth::Token;

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("{reason}")]
    Retry {
        reason: String,
        /// The server's Retry-After, when it gave one.
        after: Option<Duration>,
    },
    #[error("event-api rejected the batch with {status}: {body}")]
    Rejected { status: StatusCode, body: String },
}

pub struct Sender {
    client: reqwest::Client,
    url: String,
    plain_text: bool,
    /// event-api's ingest token (API_TOKEN), when it requires one.
    token: Option<Token>,
}

impl Sender {
    pub fn new(
        url: String,
        plain_text: bool,
        timeout: Duration,
        token: Option<Token>,
    ) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder().timeout(timeout).build()?;
        Ok(Self {
            client,
            url,
            plain_text,
            token,
        })
    }

    pub async fn send(&self, events: &[Event]) -> Result<(), SendError> {
        let (content_type, body) = encode(events, self.plain_text);
        let mut request = self
            .client
            .post(&self.url)
            .header(CONTENT_TYPE, content_type);
        if let Some(token) = &self.token {
            request = request.header(AUTHORIZATION, token.authorization());
        }
        // With debug logging on, event-api is asked where it stored each
        // event, and the receipts go to the log: a run can then be traced
        // event by event. Off, the answer stays as short as the Go one.
        let with_receipts = tracing::enabled!(tracing::Level::DEBUG);
        if with_receipts {
            request = request.header("prefer", "return=representation");
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| SendError::Retry {
                reason: format!("cannot reach {}: {e}", self.url),
                after: None,
            })?;
        let status = response.status();
        if status.is_success() {
            if with_receipts {
                log_receipts(response).await;
            }
            return Ok(());
        }
        let after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
            .map(Duration::from_secs);
        let body = response.text().await.unwrap_or_default();
        if status == StatusCode::UNAUTHORIZED {
            // The token is wrong or missing, not the batch: keep the events
            // (within MAX_BUFFERED_EVENTS) until event-api takes the token.
            Err(SendError::Retry {
                reason: format!(
                    "event-api refused the token ({status}): set API_TOKEN to event-api's; {body}"
                ),
                after,
            })
        } else if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            Err(SendError::Retry {
                reason: format!("event-api answered {status}: {body}"),
                after,
            })
        } else {
            Err(SendError::Rejected { status, body })
        }
    }
}

/// One debug line per receipt in event-api's answer.
async fn log_receipts(response: reqwest::Response) {
    #[derive(serde::Deserialize)]
    struct Answer {
        #[serde(default)]
        receipts: Vec<Receipt>,
    }
    #[derive(serde::Deserialize)]
    struct Receipt {
        id: String,
        time: i64,
        partition: i32,
        offset: i64,
    }
    match response.json::<Answer>().await {
        Ok(answer) => {
            for r in answer.receipts {
                tracing::debug!(
                    id = %r.id,
                    time = r.time,
                    partition = r.partition,
                    offset = r.offset,
                    "event stored"
                );
            }
        }
        Err(error) => tracing::debug!(%error, "no receipts in event-api's answer"),
    }
}

/// A JSON array, or (PLAIN_TEXT) one event per line as the Go producer sent.
fn encode(events: &[Event], plain_text: bool) -> (&'static str, Vec<u8>) {
    let separator: &[u8] = if plain_text { b"\n" } else { b"," };
    let mut body = Vec::with_capacity(events.len() * 80 + 2);
    if !plain_text {
        body.push(b'[');
    }
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            body.extend_from_slice(separator);
        }
        body.extend_from_slice(&event.to_json_bytes());
    }
    if plain_text {
        body.push(b'\n');
        ("application/text", body)
    } else {
        body.push(b']');
        ("application/json", body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamproc_event::{Amount, EventId, EventTime};

    fn events() -> Vec<Event> {
        (0..2)
            .map(|n| {
                Event::new(
                    EventId::parse(&format!("e{n}")).unwrap(),
                    EventTime::from_millis(n).unwrap(),
                    Amount::new(n as f64 + 0.5).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn encodes_a_json_array() {
        let (content_type, body) = encode(&events(), false);
        assert_eq!(content_type, "application/json");
        let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(parsed[1]["id"], "e1");
        assert_eq!(parsed[1]["amount"], 1.5);
    }

    #[test]
    fn encodes_one_event_per_line() {
        let (content_type, body) = encode(&events(), true);
        assert_eq!(content_type, "application/text");
        let text = String::from_utf8(body).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text
            .lines()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()));
    }
}
